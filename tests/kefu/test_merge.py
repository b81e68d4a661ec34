"""Merging two conversations of the same customer: one kept, the other closed and pointing to it,
the transcript of both in order; the refusals (another customer, former participant, tenant)."""

from __future__ import annotations

from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message, Participant
from kefu import exports
from kefu.models import Session, Visitor
from kefu.senders import agent_sender
from kefu.services import messages, sessions
from tests.conftest import agent_client, make_desk, make_visitor, unique


def _say(visitor, text: str, conversation_id=None) -> Session:
    messages.visitor_message_send(
        visitor=visitor, conversation_id=conversation_id, content=text, client_msg_id=unique("c")
    )
    return Session.objects.exclude(status="closed").get(visitor=visitor)


def test_an_earlier_conversation_is_merged_into_the_current_one(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        visitor, _ = make_visitor(desk)
        first = _say(visitor, "first question")
        sessions.session_close(session_id=first.pk, closed_by=agent_sender(agent))
        second = _say(visitor, "second question")
        client = agent_client(agent)
        url = f"/api/v1/kefu/conversations/{second.conversation_id}/merge"
        # the earlier conversation is offered
        candidates = client.get(url).json()["candidates"]
        assert [c["conversation_id"] for c in candidates] == [first.conversation_id]
        # when the agent merges it
        response = client.post(
            url, {"other_conversation_id": first.conversation_id}, "application/json"
        )
        assert response.status_code == 200, response.content
        # then it points to the kept one, and the kept one's transcript has both in order
        first.refresh_from_db()
        assert first.merged_into_id == second.pk
        data = exports.conversation_export(user=agent, conversation_id=second.conversation_id)
        texts = [m["text"] for m in data["messages"] if m["sender_type"] == "visitor"]
        assert texts == ["first question", "second question"]
        assert data["conversation"]["merged_from"] == [first.conversation_id]
        line = Message.objects.get(conversation_id=second.conversation_id, code="kefu.merged_in")
        assert line.internal
        # merging it again is refused
        again = client.post(
            url, {"other_conversation_id": first.conversation_id}, "application/json"
        )
        assert again.status_code == 409


def test_a_live_conversation_of_the_same_email_is_closed_when_merged(acme):
    desk = make_desk(acme, agents=2, cap=5)
    with schema_context("acme"):
        one, _ = make_visitor(desk)
        two, _ = make_visitor(desk)
        Visitor.objects.filter(pk__in=[one.pk, two.pk]).update(email="li@example.com")
        one.refresh_from_db()
        two.refresh_from_db()
        kept = _say(one, "from my laptop")
        other = _say(two, "from my phone")
        agent = kept.agent
        response = agent_client(agent).post(
            f"/api/v1/kefu/conversations/{kept.conversation_id}/merge",
            {"other_conversation_id": other.conversation_id},
            "application/json",
        )
        assert response.status_code == 200, response.content
        other.refresh_from_db()
        assert other.status == "closed"
        assert other.merged_into_id == kept.pk
        assert Message.objects.filter(
            conversation_id=other.conversation_id, code="kefu.merged_away", internal=True
        ).exists()


def test_merge_refuses_other_customers_former_participants_and_other_tenants(acme, globex):
    desk = make_desk(acme)
    agent = desk.agents[0]
    other_desk = make_desk(globex)
    with schema_context("acme"):
        visitor, _ = make_visitor(desk)
        stranger, _ = make_visitor(desk)
        theirs = _say(stranger, "someone else")
        sessions.session_close(session_id=theirs.pk, closed_by=agent_sender(agent))
        mine = _say(visitor, "mine")
        client = agent_client(agent)
        url = f"/api/v1/kefu/conversations/{mine.conversation_id}/merge"
        assert client.get(url).json()["candidates"] == []
        for body in (
            {"other_conversation_id": theirs.conversation_id},
            {"other_conversation_id": mine.conversation_id},
            {"other_conversation_id": "x"},
            {},
        ):
            response = client.post(url, body, "application/json")
            assert response.status_code == 400, body
        Participant.objects.filter(
            conversation_id=mine.conversation_id, member_key=agent.member_key
        ).update(left_at=timezone.now())
        assert client.get(url).status_code == 404
        response = client.post(
            url, {"other_conversation_id": theirs.conversation_id}, "application/json"
        )
        assert response.status_code == 404
    with schema_context("globex"):
        response = agent_client(other_desk.agents[0], tenant="globex").post(
            url, {"other_conversation_id": theirs.conversation_id}, "application/json"
        )
        assert response.status_code == 404
    with schema_context("acme"):
        theirs.refresh_from_db()
        assert theirs.merged_into_id is None
