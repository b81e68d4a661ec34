"""Splitting a message of a customer conversation off into a new ticket."""

from __future__ import annotations

from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message, Participant
from kefu.models import Session
from kefu.services import messages
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tickets.models import Ticket

URL = "/api/v1/tickets/from-message"


def _conversation(desk):
    visitor, _ = make_visitor(desk)
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
    )
    session = Session.objects.get(visitor=visitor)
    question, _ = messages.visitor_message_send(
        visitor=visitor,
        conversation_id=session.conversation_id,
        content="My invoice 2024-118 shows the wrong VAT number, please fix it",
        client_msg_id=unique("c"),
    )
    return session, question


def test_an_agent_splits_a_customer_message_into_a_ticket(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session, question = _conversation(desk)
        # when the agent splits the question off
        response = agent_client(agent).post(URL, {"message_id": question.pk}, "application/json")
        # then a ticket holds it, asked by the visitor, in the conversation's workgroup
        assert response.status_code == 201, response.content
        ticket = Ticket.objects.get(pk=response.json()["id"])
        assert ticket.subject.startswith("My invoice 2024-118")
        assert ticket.requester_visitor_id == session.visitor_id
        assert ticket.workgroup_id == session.workgroup_id
        assert ticket.conversation_id == session.conversation_id
        bodies = list(ticket.comments.order_by("pk").values_list("public", "body"))
        assert bodies[0] == (True, question.content)
        assert "Split off from a message" in bodies[1][1]
        # and the agents (not the visitor) read where it went
        line = Message.objects.filter(
            conversation_id=session.conversation_id, code="kefu.ticket_split"
        ).get()
        assert line.internal
        assert line.params["number"] == ticket.number


def test_split_refuses_notes_lines_former_participants_and_other_tenants(acme, globex):
    desk = make_desk(acme)
    agent = desk.agents[0]
    other = make_desk(globex)
    with schema_context("acme"):
        session, question = _conversation(desk)
        client = agent_client(agent)
        note, _ = messages.agent_message_send(
            user=agent,
            conversation_id=session.conversation_id,
            content="internal remark",
            internal=True,
            client_msg_id=unique("c"),
        )
        system = Message.objects.filter(
            conversation_id=session.conversation_id, msg_type="system"
        ).first()
        for bad, code in ((note.pk, 400), (system.pk, 400), ("x", 400), (10**9, 404)):
            response = client.post(URL, {"message_id": bad}, "application/json")
            assert response.status_code == code, bad
    with schema_context("globex"):
        response = agent_client(other.agents[0], tenant="globex").post(
            URL, {"message_id": question.pk}, "application/json"
        )
        assert response.status_code == 404
    with schema_context("acme"):
        Participant.objects.filter(
            conversation_id=session.conversation_id, member_key=agent.member_key
        ).update(left_at=timezone.now())
        assert client.post(URL, {"message_id": question.pk}, "application/json").status_code == 404
        assert not Ticket.objects.filter(conversation_id=session.conversation_id).exists()
