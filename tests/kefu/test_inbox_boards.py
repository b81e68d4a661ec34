"""The conversations' Kanban boards and the inbox's list export (issue 17): closing over HTTP,
snoozes ringing the workgroup's doorbell, a watching socket that does not make the agent
available, and an agent exporting the view their list shows (and nothing more)."""

from __future__ import annotations

import csv
import io

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django_tenants.utils import schema_context

from kefu import exports
from kefu.models import AgentState, Session
from kefu.services import messages
from tests.conftest import (
    agent_client,
    make_agent,
    make_desk,
    make_visitor,
    session_cookie,
    unique,
)
from tests.ws import connect
from weiyu.realtime import capture_events


def _chat(desk, text: str) -> Session:
    visitor, _ = make_visitor(desk)
    with schema_context(desk.tenant.schema_name):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
        )
        return Session.objects.get(visitor=visitor)


def test_an_agent_closes_a_conversation_over_http_strangers_cannot(acme, globex):
    # given a conversation served by an agent, and a colleague of another workgroup
    desk = make_desk(acme)
    session = _chat(desk, "where is my parcel?")
    with schema_context("acme"):
        stranger = make_agent(name="stranger")
    url = f"/api/v1/kefu/conversations/{session.conversation_id}/close"
    # when the stranger tries: nothing to find
    assert agent_client(stranger).post(url).status_code == 404
    # nor from another tenant
    other = make_desk(globex)
    assert agent_client(other.agents[0], "globex").post(url).status_code == 404
    # when the agent closes it
    response = agent_client(desk.agents[0]).post(url)
    # then it is closed, and the agent's load is released
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "closed"
    with schema_context("acme"):
        assert Session.objects.get(pk=session.pk).status == "closed"
        assert AgentState.objects.get(user=desk.agents[0]).open_count == 0
    # closing again changes nothing
    assert agent_client(desk.agents[0]).post(url).json()["status"] == "closed"
    # anonymous callers are refused
    assert Client(HTTP_HOST="acme.localhost").post(url).status_code in (401, 403)


def test_a_snooze_rings_the_workgroups_doorbell(acme):
    # given two agents of one workgroup, the first serving a conversation
    desk = make_desk(acme, agents=2)
    session = _chat(desk, "later please")
    with schema_context("acme"):
        server = Session.objects.get(pk=session.pk).agent
        # when the agent snoozes it
        with capture_events() as events:
            response = agent_client(server).post(
                f"/api/v1/kefu/conversations/{session.conversation_id}/snooze",
                {"until": None},
                "application/json",
            )
        assert response.status_code == 200, response.content
    # then every agent of the workgroup hears that their views changed (boards, counts)
    changed = [keys for e, keys in events if e["type"] == "views.changed"]
    assert changed, events
    assert sorted(changed[0]) == sorted(f"acme.u.{a.pk}" for a in desk.agents)


@pytest.mark.asyncio
async def test_a_watching_socket_does_not_make_the_agent_available(acme):
    def agent():
        with schema_context("acme"):
            return make_agent(inbox=False)

    def state(user) -> AgentState:
        with schema_context("acme"):
            return AgentState.objects.get(user=user)

    user = await database_sync_to_async(agent)()
    cookie = await database_sync_to_async(session_cookie)(acme, user)
    # when only a Kanban board (a watching socket) is open
    board, hello = await connect("/ws/agent/?watch=1", "acme.localhost", cookie=cookie)
    # then the agent gets the socket's frames but is not connected
    assert hello["type"] == "hello"
    assert "agent" not in hello
    assert not (await database_sync_to_async(state)(user)).connected
    # an inbox tab makes them available; closing the board leaves them so
    inbox, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert (await database_sync_to_async(state)(user)).available
    await board.disconnect()
    assert (await database_sync_to_async(state)(user)).available
    await inbox.disconnect()


def test_an_agent_exports_the_view_their_list_shows(acme):
    # given two agents of two workgroups, each serving a conversation, and a label on one
    mine_desk = make_desk(acme)
    other_desk = make_desk(acme)
    mine = _chat(mine_desk, "订单 1 还没到")
    theirs = _chat(other_desk, "not mine")
    agent = mine_desk.agents[0]
    client = agent_client(agent)
    # an agent may not export a list that is not their inbox's view
    response = client.post("/api/v1/kefu/exports", {"format": "csv"}, "application/json")
    assert response.status_code == 403
    response = client.post(
        "/api/v1/kefu/exports",
        {"format": "csv", "filters": {"view": "everything"}},
        "application/json",
    )
    assert response.status_code == 400
    assert response.json()["field"] == "view"
    # when the agent exports "All open" (their scope: their workgroup's conversations)
    response = client.post(
        "/api/v1/kefu/exports",
        {"format": "csv", "filters": {"view": "open"}},
        "application/json",
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["total"] == 1
    with schema_context("acme"):
        exports.export_job_run(job_id=job["id"])
    done = client.get(f"/api/v1/kefu/exports/{job['id']}").json()
    assert done["state"] == "done"
    rows = list(
        csv.reader(io.StringIO(client.get(done["download_url"]).content.decode("utf-8-sig")))
    )
    # then the file holds their conversation and not the colleague's
    assert [int(r[0]) for r in rows[1:]] == [mine.conversation_id]
    assert theirs.conversation_id not in [int(r[0]) for r in rows[1:]]
    # a view narrowed to a channel of the other desk holds nothing
    response = client.post(
        "/api/v1/kefu/exports",
        {"format": "json", "filters": {"view": "open", "channel": other_desk.channel.pk}},
        "application/json",
    )
    assert response.json()["total"] == 0
