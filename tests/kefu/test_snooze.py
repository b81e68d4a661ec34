"""Snoozing a customer conversation: until a time (the beat's scan brings it back) or until the
customer replies; the API's refusals (a time in the past, another tenant, a former participant)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message, Participant
from kefu.models import Session
from kefu.services import messages, snooze
from tests.conftest import agent_client, make_desk, make_visitor, unique
from weiyu.realtime import capture_events


def _open_session(desk) -> tuple[Session, object]:
    visitor, _ = make_visitor(desk)
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content="help", client_msg_id=unique("c")
    )
    return Session.objects.get(visitor=visitor), visitor


def _group(member_key: str) -> str:
    """The realtime group of a member of acme (weiyu.realtime.member_group)."""
    return "acme." + member_key.replace(":", ".")


def _lines(session: Session) -> list[tuple[str, bool]]:
    return list(
        Message.objects.filter(conversation_id=session.conversation_id, msg_type="system")
        .order_by("seq")
        .values_list("code", "internal")
    )


def test_snooze_until_a_time_comes_back_by_the_scan(acme):
    # given an agent serving a visitor
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session, visitor = _open_session(desk)
        until = (timezone.now() + timedelta(hours=2)).isoformat()
        # when the agent snoozes it for two hours
        response = agent_client(agent).post(
            f"/api/v1/kefu/conversations/{session.conversation_id}/snooze",
            {"until": until},
            content_type="application/json",
        )
        # then it is snoozed, the agents (not the visitor) are told and read an internal line
        assert response.status_code == 200, response.content
        assert response.json()["snoozed"] is True
        session.refresh_from_db()
        assert session.snoozed_until is not None
        assert ("kefu.snoozed", True) in _lines(session)
        # a scan before the time changes nothing
        assert snooze.snooze_wake_scan() == 0
        # when the time has passed, the scan brings it back, once
        with capture_events() as events:
            assert snooze.snooze_wake_scan(now=timezone.now() + timedelta(hours=3)) == 1
        assert snooze.snooze_wake_scan(now=timezone.now() + timedelta(hours=3)) == 0
        session.refresh_from_db()
        assert session.snoozed_at is None
        assert session.snoozed_until is None
        assert _lines(session)[-1] == ("kefu.snooze_ended", True)
        updated = [(e, keys) for e, keys in events if e["type"] == "conversation.snoozed"]
        assert len(updated) == 1
        assert updated[0][0]["snoozed"] is False
        assert updated[0][0]["snoozed_until"] is None
        assert updated[0][1] == [_group(agent.member_key)]
        # the visitor never received the internal lines
        new_lines = [(e, keys) for e, keys in events if e["type"] == "message.new"]
        assert new_lines
        assert all(_group(visitor.member_key) not in keys for _, keys in new_lines)


def test_snooze_until_the_customer_replies(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session, visitor = _open_session(desk)
        snooze.conversation_snooze(user=agent, conversation_id=session.conversation_id, until=None)
        session.refresh_from_db()
        assert session.snoozed_at is not None
        assert session.snoozed_until is None
        # the scan does not touch a snooze without a time
        assert snooze.snooze_wake_scan(now=timezone.now() + timedelta(days=30)) == 0
        # when the customer writes, it is back
        with capture_events() as events:
            messages.visitor_message_send(
                visitor=visitor,
                conversation_id=session.conversation_id,
                content="any news?",
                client_msg_id=unique("c"),
            )
        session.refresh_from_db()
        assert session.snoozed_at is None
        assert session.last_visitor_at is not None
        assert _lines(session)[-1] == ("kefu.snooze_ended_reply", True)
        assert [e["snoozed"] for e, _ in events if e["type"] == "conversation.snoozed"] == [False]


def test_unsnooze_brings_it_back_now(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session, _visitor = _open_session(desk)
        client = agent_client(agent)
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/snooze"
        client.post(url, {"until": None}, content_type="application/json")
        response = client.delete(url)
        assert response.status_code == 200
        assert response.json()["snoozed"] is False
        session.refresh_from_db()
        assert session.snoozed_at is None


def test_snooze_refuses_bad_input_other_tenants_and_former_participants(acme, globex):
    desk = make_desk(acme, agents=2)
    agent, colleague = desk.agents
    other = make_desk(globex)
    with schema_context("acme"):
        session, _visitor = _open_session(desk)
        if session.agent_id != agent.pk:
            agent, colleague = colleague, agent
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/snooze"
        client = agent_client(agent)
        past = (timezone.now() - timedelta(minutes=1)).isoformat()
        for body, field in (
            ({"until": past}, "until"),
            ({"until": "tomorrow"}, "until"),
            ({"until": "2030-01-01T10:00:00"}, "until"),  # no zone
            ({"until": (timezone.now() + timedelta(days=400)).isoformat()}, "until"),
        ):
            response = client.post(url, body, content_type="application/json")
            assert response.status_code == 400, body
            assert response.json()["field"] == field
        response = client.post(url, "[1]", content_type="application/json")
        assert response.status_code == 400
        # a colleague who is not in the conversation
        response = agent_client(colleague).post(
            url, {"until": None}, content_type="application/json"
        )
        assert response.status_code == 404
        # a former participant (the agent transferred it away: left_at set)
        Participant.objects.filter(
            conversation_id=session.conversation_id, member_key=agent.member_key
        ).update(left_at=timezone.now())
        response = client.post(url, {"until": None}, content_type="application/json")
        assert response.status_code == 404
    # another tenant's agent, with the same conversation id on their own domain
    with schema_context("globex"):
        response = agent_client(other.agents[0], tenant="globex").post(
            url, {"until": None}, content_type="application/json"
        )
        assert response.status_code == 404
    with schema_context("acme"):
        session.refresh_from_db()
        assert session.snoozed_at is None
