"""Scheduled messages: written now, sent by the beat at their time through the agent send path,
once; edited or cancelled before; the API's refusals."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message, Participant
from kefu import privacy, selectors
from kefu.models import ScheduledMessage, Session, Visitor
from kefu.senders import agent_sender
from kefu.services import messages, scheduled, sessions
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tests.threads import in_threads
from weiyu.realtime import capture_events


def _open_session(desk, zone: str = "") -> Session:
    visitor, _ = make_visitor(desk)
    if zone:
        visitor.timezone = zone
        visitor.save(update_fields=["timezone"])
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content="help", client_msg_id=unique("c")
    )
    return Session.objects.select_related("visitor").get(visitor=visitor)


def _in(minutes: float) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).isoformat()


def test_a_scheduled_reply_is_sent_at_its_time_once(acme):
    # given an agent serving a visitor in Shanghai
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _open_session(desk, zone="Asia/Shanghai")
        client = agent_client(agent)
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/scheduled"
        # when the agent schedules a reply for in ten minutes
        response = client.post(
            url, {"content": "Your parcel left today.", "send_at": _in(10)}, "application/json"
        )
        # then it waits, in the visitor's time zone
        assert response.status_code == 201, response.content
        item = response.json()
        assert item["state"] == "pending"
        assert item["timezone"] == "Asia/Shanghai"
        assert client.get(url).json()["scheduled"][0]["id"] == item["id"]
        assert scheduled.scheduled_due_send() == 0
        # when its time comes, the beat sends it as the agent's reply, and the visitor gets it
        later = timezone.now() + timedelta(minutes=11)
        with capture_events() as events:
            assert scheduled.scheduled_due_send(now=later) == 1
        assert scheduled.scheduled_due_send(now=later) == 0
        sent = Message.objects.get(
            conversation_id=session.conversation_id, content="Your parcel left today."
        )
        assert sent.sender_key == agent.member_key
        assert sent.client_msg_id == f"scheduled-{item['id']}"
        row = ScheduledMessage.objects.get(pk=item["id"])
        assert row.state == "sent"
        assert row.message_id == sent.pk
        visitor_group = "acme." + session.visitor.member_key.replace(":", ".")
        new = [keys for e, keys in events if e["type"] == "message.new"]
        assert len(new) == 1
        assert visitor_group in new[0]
        updates = [e["scheduled"]["state"] for e, _ in events if e["type"] == "scheduled.updated"]
        assert updates == ["sent"]
        # the session's clock moved as for any reply
        session.refresh_from_db()
        assert session.first_response_at is not None


def test_edit_and_cancel_before_it_goes(acme):
    desk = make_desk(acme, agents=2)
    with schema_context("acme"):
        session = _open_session(desk)
        agent = next(a for a in desk.agents if a.pk == session.agent_id)
        other = next(a for a in desk.agents if a.pk != session.agent_id)
        client = agent_client(agent)
        item = client.post(
            f"/api/v1/kefu/conversations/{session.conversation_id}/scheduled",
            {"content": "draft", "send_at": _in(10)},
            "application/json",
        ).json()
        url = f"/api/v1/kefu/scheduled/{item['id']}"
        # the author edits the text and the time
        response = client.patch(url, {"content": "final", "send_at": _in(20)}, "application/json")
        assert response.status_code == 200
        assert response.json()["content"] == "final"
        # another agent cannot touch it
        assert (
            agent_client(other).patch(url, {"content": "x"}, "application/json").status_code == 404
        )
        assert agent_client(other).delete(url).status_code == 404
        # the author cancels it: nothing is sent, and it can no longer be changed
        assert client.delete(url).json()["state"] == "cancelled"
        assert scheduled.scheduled_due_send(now=timezone.now() + timedelta(hours=1)) == 0
        assert not Message.objects.filter(conversation_id=session.conversation_id, content="final")
        response = client.patch(url, {"content": "again"}, "application/json")
        assert response.status_code == 409
        assert response.json()["error"] == "conflict"


def test_bad_input_other_tenant_former_participant_and_closed(acme, globex):
    desk = make_desk(acme)
    agent = desk.agents[0]
    other = make_desk(globex)
    with schema_context("acme"):
        session = _open_session(desk)
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/scheduled"
        client = agent_client(agent)
        for body, field in (
            ({"content": "hi", "send_at": _in(-1)}, "send_at"),
            ({"content": "hi", "send_at": "soon"}, "send_at"),
            ({"content": "hi"}, "send_at"),
            ({"content": "hi", "send_at": _in(60 * 24 * 400)}, "send_at"),
            ({"content": "", "send_at": _in(5)}, "content"),
            ({"content": "x" * 5001, "send_at": _in(5)}, "content"),
            ({"content": 5, "send_at": _in(5)}, "content"),
            ({"content": "hi", "send_at": _in(5), "timezone": "Mars/Olympus"}, "timezone"),
        ):
            response = client.post(url, body, "application/json")
            assert response.status_code == 400, body
            assert response.json()["field"] == field, body
        assert client.post(
            "/api/v1/kefu/conversations/0/scheduled", {}, "application/json"
        ).status_code in (400, 404)
    # another tenant's agent
    with schema_context("globex"):
        response = agent_client(other.agents[0], tenant="globex").post(
            url, {"content": "hi", "send_at": _in(5)}, "application/json"
        )
        assert response.status_code == 404
    with schema_context("acme"):
        # a message already scheduled fails when its author is no longer in the conversation
        item = scheduled.scheduled_create(
            user=agent, conversation_id=session.conversation_id, content="later", send_at=_in(5)
        )
        Participant.objects.filter(
            conversation_id=session.conversation_id, member_key=agent.member_key
        ).update(left_at=timezone.now())
        # a former participant can neither schedule nor list
        response = client.post(url, {"content": "hi", "send_at": _in(5)}, "application/json")
        assert response.status_code == 404
        assert client.get(url).status_code == 404
        assert scheduled.scheduled_due_send(now=timezone.now() + timedelta(minutes=6)) == 1
        item.refresh_from_db()
        assert item.state == "failed"
        assert item.error
        assert not Message.objects.filter(conversation_id=session.conversation_id, content="later")


def test_closed_conversation_refuses(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _open_session(desk)
        sessions.session_close(session_id=session.pk, closed_by=agent_sender(agent))
        response = agent_client(agent).post(
            f"/api/v1/kefu/conversations/{session.conversation_id}/scheduled",
            {"content": "hi", "send_at": _in(5)},
            "application/json",
        )
        assert response.status_code == 409
        assert response.json()["error"] == "conversation_closed"


def test_scans_racing_each_other_send_each_message_once(acme):
    # given ten replies due now in one conversation
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _open_session(desk)
        items = [
            scheduled.scheduled_create(
                user=agent,
                conversation_id=session.conversation_id,
                content=f"reply {n}",
                send_at=_in(1),
            )
            for n in range(10)
        ]
    later = timezone.now() + timedelta(minutes=2)
    # when four workers scan at the same instant
    handled = in_threads("acme", lambda _: scheduled.scheduled_due_send(now=later), range(4), 4)
    # then every reply went out exactly once, whoever sent it
    assert sum(handled) == 10
    with schema_context("acme"):
        for item in items:
            assert (
                Message.objects.filter(
                    conversation_id=session.conversation_id, content=item.content
                ).count()
                == 1
            )
        assert set(
            ScheduledMessage.objects.filter(pk__in=[i.pk for i in items]).values_list(
                "state", flat=True
            )
        ) == {"sent"}


def test_the_list_costs_three_queries(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _open_session(desk)
        for n in range(5):
            scheduled.scheduled_create(
                user=agent, conversation_id=session.conversation_id, content=f"r{n}", send_at=_in(5)
            )
        with CaptureQueriesContext(connection) as queries:
            items = selectors.scheduled_list_for_member(
                member_key=agent.member_key, conversation_id=session.conversation_id
            )
            payloads = [scheduled.scheduled_payload(i) for i in items]
        assert len(payloads) == 5
        assert len(queries) == 3  # membership, pending, done (authors joined)


def test_erasing_the_visitor_withdraws_and_blanks_their_scheduled_replies(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _open_session(desk, zone="Asia/Shanghai")
        item = scheduled.scheduled_create(
            user=agent,
            conversation_id=session.conversation_id,
            content="Dear Ms Li, your address 5 Long Road",
            send_at=_in(30),
        )
        assert scheduled.visitor_scheduled_export(session.visitor)[0]["id"] == item.pk
        result = privacy.visitor_erase(user=None, visitor_id=session.visitor_id)
        assert result["scheduled_messages"] == 1
        item.refresh_from_db()
        assert item.state == "cancelled"
        assert item.content == ""
        assert Visitor.objects.get(pk=session.visitor_id).timezone == ""
