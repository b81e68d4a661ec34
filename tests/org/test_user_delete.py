"""Disabling and deleting agents in the back office: the account goes, the history stays, and the
agent's live work goes to colleagues."""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import authenticate
from django.test import Client
from django_tenants.utils import schema_context

from im.models import Message, Participant
from im.services import groups
from im.syslines import message_text
from kefu.models import AgentState, DailyStat, Session
from kefu.services import agents as kefu_agents
from kefu.services import messages
from org import services as org_services
from org.models import User
from tests.conftest import (
    PASSWORD,
    agent_client,
    make_agent,
    make_desk,
    make_visitor,
    session_cookie,
    unique,
)
from tests.waits import WAIT_S
from tests.ws import connect, receive_until
from tickets.models import Comment
from tickets.services import comments as ticket_comments
from tickets.services import tickets as ticket_services


def _admin() -> User:
    return User.objects.create_user(
        username=unique("boss"),
        password=PASSWORD,
        role="admin",
        is_staff=True,
        is_superuser=True,
    )


def test_deleting_an_agent_keeps_their_history_and_hands_on_their_work(acme):
    # given an agent serving a visitor, with a reply, a ticket, a comment and a day of figures
    desk = make_desk(acme, agents=1)
    leaving = desk.agents[0]
    with schema_context("acme"):
        leaving.display_name = ""
        leaving.save()
        name = leaving.name
        username = leaving.username
        visitor, _ = make_visitor(desk)
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="where is my order?", client_msg_id="a"
        )
        session = Session.objects.get(visitor=visitor)
        assert session.agent_id == leaving.pk
        messages.agent_message_send(
            user=leaving,
            conversation_id=session.conversation_id,
            content="Let me look.",
            client_msg_id=unique("r"),
        )
        ticket = ticket_services.ticket_create(
            subject="Order 77 is late",
            body="please check",
            source="inbox",
            creator=leaving,
            assignee_id=leaving.pk,
            workgroup_id=desk.workgroup.pk,
        )
        ticket_comments.comment_add(ticket_id=ticket.pk, body="On it.", user=leaving)
        DailyStat.objects.create(
            day=dt.date(2026, 11, 2), workgroup=desk.workgroup, agent=leaving, conversations=4
        )
        # and a colleague who comes online later
        colleague = make_agent(status="offline")
        desk.workgroup.agents.add(colleague)
        kefu_agents.agent_status_set(user=colleague, status="online")
        boss = _admin()
    admin = agent_client(boss)

    # when an admin deletes the agent in the back office
    confirm = admin.get(f"/admin/org/user/{leaving.pk}/delete/")
    assert confirm.status_code == 200
    assert name in confirm.content.decode()
    assert "protected" not in confirm.content.decode().lower()
    done = admin.post(f"/admin/org/user/{leaving.pk}/delete/", {"post": "yes"}, follow=True)
    assert done.status_code == 200
    assert "statistics are kept" in done.content.decode()

    with schema_context("acme"):
        gone = User.objects.get(pk=leaving.pk)
        # then the account is gone: no sign-in, the username is free again
        assert not gone.is_active
        assert gone.deleted_at is not None
        assert authenticate(username=username, password=PASSWORD) is None
        assert User.objects.create_user(username=username, password=PASSWORD).pk != gone.pk
        assert not desk.workgroup.agents.filter(pk=gone.pk).exists()
        # the visitor is now served by the colleague and told so
        session.refresh_from_db()
        assert (session.status, session.agent_id, session.reassigned_from_id) == (
            "open",
            colleague.pk,
            gone.pk,
        )
        texts = [
            (m.sender_name, message_text(m, language="en"))
            for m in Message.objects.filter(conversation_id=session.conversation_id).order_by("seq")
        ]
        assert (name, "Let me look.") in texts
        assert any("another colleague" in c for _, c in texts)
        assert AgentState.objects.get(user=gone).status == "offline"
        # the ticket goes back to its workgroup; what the agent wrote stays under their name
        ticket.refresh_from_db()
        assert ticket.assignee_id is None
        assert ticket.workgroup_id == desk.workgroup.pk
        comments = list(Comment.objects.filter(ticket=ticket).order_by("id"))
        assert [c.body for c in comments if c.author_user_id == gone.pk] == [
            "please check",
            "On it.",
        ]
        assert gone.name == name
        assert any(f"{name} was deleted" in c.body for c in comments)
        # and the statistics of the past are untouched
        assert DailyStat.objects.get(agent=gone, day=dt.date(2026, 11, 2)).conversations == 4

    # the deleted user no longer appears among the colleagues one can transfer to
    team = agent_client(colleague).get("/api/v1/kefu/agents").json()
    assert gone.pk not in [a["id"] for a in team["agents"]]
    # and a second delete is refused: they are already gone
    assert admin.get(f"/admin/org/user/{leaving.pk}/delete/").status_code in (302, 403)


def test_an_admin_cannot_delete_themselves(acme):
    with schema_context("acme"):
        boss = _admin()
    admin = agent_client(boss)
    assert admin.post(f"/admin/org/user/{boss.pk}/delete/", {"post": "yes"}).status_code == 403
    with schema_context("acme"):
        assert User.objects.get(pk=boss.pk).is_active


@pytest.mark.asyncio
async def test_a_disabled_agent_is_signed_out_of_the_inbox(acme):
    # given an agent with the inbox open
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    ws, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["type"] == "hello"

    # when an admin disables them
    def disable() -> None:
        with schema_context("acme"):
            org_services.user_deactivate(user=User.objects.get(pk=agent.pk))

    await database_sync_to_async(disable)()

    # then the inbox is told and the socket closes as unauthorised
    frame = await receive_until(ws, "account.disabled")
    assert frame["deleted"] is False
    closed = await ws.receive_output(timeout=WAIT_S)
    assert closed == {"type": "websocket.close", "code": 4401}
    # and a new connection is refused
    again, first = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert first["type"] == "error"
    await again.disconnect()


def test_the_platform_admin_deletes_a_platform_user(acme):
    # given two platform admins (public schema, where no tenant tables exist)
    boss = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    other = User.objects.create_user(username=unique("ops"), password=PASSWORD, is_staff=True)
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    assert client.login(username=boss.username, password=PASSWORD)

    # when one deletes the other on http://localhost/admin/
    page = client.post(f"/admin/org/user/{other.pk}/delete/", {"post": "yes"}, follow=True)

    # then the account is gone and the page says so
    assert page.status_code == 200
    assert "1 user deleted" in page.content.decode()
    other.refresh_from_db()
    assert not other.is_active
    assert other.deleted_at is not None


def test_a_deleted_owner_hands_their_groups_on(acme):
    # given a group owned by an agent, with an admin and a member, and the agent's 1:1 chat
    with schema_context("acme"):
        owner, deputy, member = (make_agent(status="offline") for _ in range(3))
        group = groups.group_create(
            creator=owner, title=unique("Team"), member_ids=[deputy.pk, member.pk]
        )
        groups.group_member_update(
            actor=owner, conversation_id=group.pk, user_id=deputy.pk, role="admin"
        )
        solo = groups.group_create(creator=owner, title=unique("Notes"), member_ids=[])
        direct = groups.direct_get_or_create(user=owner, other_user_id=member.pk)

        # when the owner is deleted
        org_services.user_delete(user=owner)

        # then the admin owns the group, the owner is out of it and members are told
        roles = dict(
            Participant.objects.filter(conversation=group, left_at__isnull=True).values_list(
                "user_id", "role"
            )
        )
        assert roles == {deputy.pk: "owner", member.pk: "member"}
        last = Message.objects.filter(conversation=group).order_by("-seq").first()
        assert message_text(last, language="en").endswith("left the group")
        # a group with nobody else is closed; the 1:1 chat stays readable for the colleague
        solo.refresh_from_db()
        assert solo.closed_at is not None
        assert Participant.objects.filter(
            conversation=direct, user=member, left_at__isnull=True
        ).exists()
