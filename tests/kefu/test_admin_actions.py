"""Back-office actions on conversations go through the services the inbox uses."""

from __future__ import annotations

from django.urls import reverse
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import AgentState, Session
from kefu.services import messages
from org.models import User
from tests.conftest import agent_client, make_desk, make_visitor, unique


def test_closing_sessions_from_the_back_office_frees_the_agent_and_tells_the_visitor(acme):
    # given a visitor served by an agent
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        first, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
        session = Session.objects.get(conversation_id=first.conversation_id)
        assert session.status == Session.Status.OPEN
        admin = User.objects.get(username="bob")

    # when the tenant admin closes it with the list's action
    response = agent_client(admin).post(
        reverse("admin:kefu_session_changelist"),
        {"action": "close_sessions", "_selected_action": [session.pk]},
        HTTP_HOST="acme.localhost",
    )

    # then it is closed like the inbox closes it: the agent's slot is free and the visitor reads
    # a closing line from the system
    assert response.status_code == 302
    with schema_context("acme"):
        session.refresh_from_db()
        assert session.status == Session.Status.CLOSED
        assert AgentState.objects.get(user=desk.agents[0]).open_count == 0
        last = Message.objects.filter(conversation_id=session.conversation_id).latest("seq")
        assert last.msg_type == Message.Type.SYSTEM
