"""An agent is available only while an inbox of theirs is open (KF-3): the first socket makes
them available with the status they chose last; once the last one has been closed (or silent)
for the grace period, they are not, and their open conversations go back to the queue.

The grace is read at each scan: "the grace has passed" is a grace of one second waited for as a
condition (the scan is repeated until it acts), and "still within it" is a grace no slow
machine outlasts.
"""

from __future__ import annotations

import time
import uuid

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from im.models import Message
from im.services import groups as im_groups
from im.syslines import message_text
from kefu import monitor, presence, selectors
from kefu.models import AgentState, Session, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import messages
from org.models import User
from tests.conftest import (
    agent_client,
    inbox_open,
    make_agent,
    make_desk,
    make_visitor,
    session_cookie,
)
from tests.waits import wait_until, wait_until_async
from tests.ws import connect, receive_until
from weiyu.realtime import capture_events

LONG_GRACE = "600"  # s: "within the grace", however slow the machine


def _state(user) -> AgentState:
    with schema_context("acme"):
        return AgentState.objects.get(user=user)


def _scan() -> int:
    with schema_context("acme"):
        return kefu_agents.offline_scan()


def _gone(user) -> bool:
    """Scan (as the service timers do), and say whether ``user`` is no longer connected."""
    _scan()
    return not _state(user).connected


def _has_online_agent(workgroup_id: int) -> bool:
    with schema_context("acme"):
        return selectors.workgroup_has_online_agent(workgroup_id=workgroup_id)


async def _status_frame(tab, **wanted) -> dict:
    """The first ``agent.status`` frame carrying ``wanted`` (earlier ones are dropped)."""
    while True:
        frame = await receive_until(tab, "agent.status")
        if all(frame.get(k) == v for k, v in wanted.items()):
            return frame


def _send(visitor, text: str) -> Session:
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content=text, client_msg_id=uuid.uuid4().hex
        )
        return Session.objects.get(visitor=visitor)


def _session(pk: int) -> Session:
    with schema_context("acme"):
        return Session.objects.get(pk=pk)


@pytest.mark.asyncio
async def test_an_agent_is_available_only_while_an_inbox_is_open(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)
    # given an agent who chose "online" but has no inbox open
    desk = await database_sync_to_async(make_desk)(acme, agents=1, inbox=False)
    agent = desk.agents[0]
    visitor, _token = await database_sync_to_async(make_visitor)(desk)
    # when a visitor writes, they wait: nobody is there
    session = await database_sync_to_async(_send)(visitor, "anyone there?")
    assert session.status == Session.Status.QUEUED
    assert session.agent_id is None
    assert not await database_sync_to_async(_has_online_agent)(desk.workgroup.pk)

    # when the agent opens the inbox, the visitor is theirs at once
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    tab, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["agent"]["status"] == "online"
    assert hello["agent"]["connected"] is True
    assigned = await receive_until(tab, "conversation.assigned")
    assert assigned["conversation"]["id"] == session.conversation_id
    assert (await database_sync_to_async(_session)(session.pk)).agent_id == agent.pk
    await tab.disconnect()


@pytest.mark.asyncio
async def test_one_tab_closing_or_a_reload_keeps_the_agent_the_last_one_ends_it(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)

    def agent():
        with schema_context("acme"):
            return make_agent(inbox=False)

    user = await database_sync_to_async(agent)()
    cookie = await database_sync_to_async(session_cookie)(acme, user)
    first, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    second, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert (await database_sync_to_async(_state)(user)).available

    # one of two tabs closes: still there, whatever the wait
    await first.disconnect()
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "0")
    await database_sync_to_async(_scan)()
    assert (await database_sync_to_async(_state)(user)).connected

    # the last one closes: there during the grace (a reload reconnects within it) …
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)
    await second.disconnect()
    await database_sync_to_async(_scan)()
    assert (await database_sync_to_async(_state)(user)).connected
    # … a reload within it keeps them …
    again, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "0")
    await database_sync_to_async(_scan)()
    assert (await database_sync_to_async(_state)(user)).connected
    # … and once that one is gone past the grace, they are not available; their choice stays
    await again.disconnect()
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    await wait_until_async(
        lambda: database_sync_to_async(_gone)(user), what="the scan to find the agent gone"
    )
    state = await database_sync_to_async(_state)(user)
    assert not state.connected
    assert not state.available
    assert state.status == "online"
    assert state.shown_status == "offline"


def test_a_tab_that_died_without_closing_counts_as_gone(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    with schema_context("acme"):
        user = make_agent(inbox=False)
        # a socket last heard of long ago (its process was killed: no close ever came)
        presence.socket_seen(schema="acme", user_id=user.pk, channel_name="specific.dead!1")
        kefu_agents.agent_connected(user_id=user.pk)
    presence._redis().zadd(
        presence._key("acme", user.pk), {"specific.dead!1": time.time() - presence.ALIVE_S - 5}
    )
    wait_until(lambda: _gone(user), what="the scan to find the agent gone")
    assert not _state(user).connected


def test_a_lost_record_starts_the_grace_rather_than_ending_it(acme, monkeypatch):
    # given a connected agent whose presence record Redis no longer has
    with schema_context("acme"):
        user = make_agent()
    presence.forget(schema="acme", user_id=user.pk)
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)
    # then the scan starts the grace now instead of judging them gone
    assert _scan() == 0
    assert _state(user).connected
    alive, seen = presence.last_seen(schema="acme", user_id=user.pk)
    assert not alive
    assert seen is not None
    assert time.time() - seen < 600


@pytest.mark.asyncio
async def test_opening_the_inbox_again_restores_the_status_chosen_last(acme, monkeypatch):
    def agent():
        with schema_context("acme"):
            return make_agent(inbox=False)

    user = await database_sync_to_async(agent)()
    cookie = await database_sync_to_async(session_cookie)(acme, user)
    tab, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["agent"]["status"] == "online"
    # the agent chooses "away", and leaves
    await tab.send_json_to({"type": "agent.status", "status": "away"})
    await _status_frame(tab, status="away")
    await tab.disconnect()
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    await wait_until_async(
        lambda: database_sync_to_async(_gone)(user), what="the scan to find the agent gone"
    )
    assert (await database_sync_to_async(_state)(user)).shown_status == "offline"
    # when they come back, they are "away" again (as chosen), not offline
    tab, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["agent"]["status"] == "away"
    assert hello["agent"]["connected"] is True
    assert (await database_sync_to_async(_state)(user)).shown_status == "away"
    await tab.disconnect()


@pytest.mark.asyncio
async def test_a_socket_pinging_after_its_agent_was_found_gone_brings_them_back(acme, monkeypatch):
    def agent():
        with schema_context("acme"):
            return make_agent(inbox=False)

    user = await database_sync_to_async(agent)()
    cookie = await database_sync_to_async(session_cookie)(acme, user)
    tab, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    # the laptop slept: the socket went silent and the scan found the agent gone
    key = presence._key("acme", user.pk)
    for member in presence._redis().zrange(key, 0, -1):
        presence._redis().zadd(key, {member: time.time() - 3600})
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    await wait_until_async(
        lambda: database_sync_to_async(_gone)(user), what="the scan to find the agent gone"
    )
    assert not (await database_sync_to_async(_state)(user)).connected
    await _status_frame(tab, connected=False)
    # when it wakes up and pings, the agent is available again
    await tab.send_json_to({"type": "ping", "ref": "p1"})
    frame = await _status_frame(tab, connected=True)
    assert frame["connected"] is True
    assert frame["status"] == "online"
    assert (await database_sync_to_async(_state)(user)).available
    await tab.disconnect()


def _leave(user: User, monkeypatch) -> None:
    """The agent's inbox record ends now, and the grace (1 s) is waited for by the scan."""
    with schema_context("acme"):
        presence.socket_closed(
            schema="acme", user_id=user.pk, channel_name=f"tests.inbox!{user.pk}"
        )
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    wait_until(lambda: _gone(user), what="the scan to find the agent gone")


def test_past_the_grace_open_conversations_go_back_to_the_queue(acme, monkeypatch):
    # given two agents, the first serving a visitor, the second away
    desk = make_desk(acme, agents=2)
    first, second = desk.agents
    with schema_context("acme"):
        kefu_agents.agent_status_set(user=second, status="away")
    visitor, _ = make_visitor(desk)
    session = _send(visitor, "my order?")
    assert session.agent_id in (first.pk, second.pk)
    serving = first if session.agent_id == first.pk else second
    other = second if serving is first else first
    with schema_context("acme"):
        kefu_agents.agent_status_set(user=other, status="away")
        kefu_agents.agent_status_set(user=serving, status="online")
    assert _session(session.pk).agent_id == serving.pk

    # when the serving agent's last inbox has been gone past the grace
    _leave(serving, monkeypatch)

    # then the visitor is back in the queue and reads why; the agent's load is released
    session = _session(session.pk)
    assert session.status == Session.Status.QUEUED
    assert session.agent_id is None
    with schema_context("acme"):
        line = (
            Message.objects.filter(conversation_id=session.conversation_id, sender_type="system")
            .order_by("-seq")
            .first()
        )
        assert (line.code, line.params) == ("kefu.agent_left", {"agent": serving.name})
        assert message_text(line, language="en") == (
            f"{serving.name} had to leave. You are back in the queue for the next colleague available."
        )
        state = AgentState.objects.get(user=serving)
        assert state.open_count == 0
        assert state.status == "online"
        assert not state.connected
        # when the colleague goes online, they get the visitor
        kefu_agents.agent_status_set(user=other, status="online")
    assert _session(session.pk).agent_id == other.pk


def test_with_requeue_off_the_conversations_wait_for_the_agent(acme, monkeypatch):
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(requeue_on_leave=False)
    visitor, _ = make_visitor(desk)
    session = _send(visitor, "hello")
    assert session.agent_id == agent.pk
    _leave(agent, monkeypatch)
    session = _session(session.pk)
    assert session.status == Session.Status.OPEN
    assert session.agent_id == agent.pk
    assert _state(agent).open_count == 1
    assert not _state(agent).connected


def test_load_counts_customer_conversations_only_everywhere(acme):
    # given an agent serving two visitors, with a 1:1 team chat and a team group as well
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    with schema_context("acme"):
        colleague = make_agent()
        im_groups.direct_get_or_create(user=agent, other_user_id=colleague.pk)
        im_groups.group_create(creator=agent, title="Team", member_ids=[colleague.pk])
        admin = User.objects.get(username="bob")
        desk.workgroup.lead = agent
        desk.workgroup.save()
    for n in range(2):
        visitor, _ = make_visitor(desk)
        _send(visitor, f"question {n}")
    with schema_context("acme"):
        state = AgentState.objects.get(user=agent)
        # then the load is 2 of 5 wherever it is shown
        assert state.open_count == 2
        assert selectors.agent_state_payload(state)["open_count"] == 2  # the inbox header
        shown = next(
            a for a in selectors.team_overview()["agents"] if a["id"] == agent.pk
        )  # the agents API
        assert (shown["open_count"], shown["max_concurrent"]) == (2, 5)
        group = next(
            g for g in monitor.snapshot(user=admin)["workgroups"] if g["id"] == desk.workgroup.pk
        )
        assert [(a["open_count"], a["max_concurrent"]) for a in group["agents"]] == [(2, 5)]
        assert group["in_progress"] == 2


def test_administrators_turn_the_requeue_off_and_on_through_the_api(acme):
    desk = make_desk(acme, agents=1)
    url = f"/api/v1/kefu/workgroups/{desk.workgroup.pk}"
    with schema_context("acme"):
        admin = User.objects.get(username="bob")
    client = agent_client(admin)
    # on by default
    assert client.get(url).json()["requeue_on_leave"] is True
    r = client.patch(url, {"requeue_on_leave": False}, content_type="application/json")
    assert r.status_code == 200
    assert r.json()["requeue_on_leave"] is False
    with schema_context("acme"):
        assert not Workgroup.objects.get(pk=desk.workgroup.pk).requeue_on_leave
    # not a boolean, or not a setting: 400; an agent: 403
    r = client.patch(url, {"requeue_on_leave": "no"}, content_type="application/json")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid"
    r = client.patch(url, {"strategy": "sticky"}, content_type="application/json")
    assert r.status_code == 400
    r = agent_client(desk.agents[0]).patch(
        url, {"requeue_on_leave": True}, content_type="application/json"
    )
    assert r.status_code == 403


def test_a_waiting_visitor_is_told_whether_anyone_is_available(acme):
    # given a workgroup whose only agent chose "online" but has no inbox open
    desk = make_desk(acme, agents=1, cap=1, inbox=False)
    first, _ = make_visitor(desk)
    second, _ = make_visitor(desk)
    with capture_events() as events:
        _send(first, "hello?")

    def positions(visitor) -> list[tuple[int, bool]]:
        return [
            (event["position"], event["agents_online"])
            for event, groups in events
            if event["type"] == "queue.position" and groups == [f"acme.v.{visitor.pk}"]
        ]

    # then the visitor waits and is told nobody is there
    assert positions(first) == [(1, False)]
    # when the agent opens the inbox, they take the first visitor; the next one waits, told
    # that someone is there but busy
    with schema_context("acme"):
        inbox_open(desk.agents[0])
        assert Session.objects.get(visitor=first).agent_id == desk.agents[0].pk
    with capture_events() as events:
        _send(second, "me too")
    assert positions(second) == [(1, True)]


def test_an_agent_of_many_conversations_leaving_tells_each_visitor_its_place_once(
    acme, monkeypatch
):
    # given one agent serving thirty visitors
    desk = make_desk(acme, agents=1, cap=40)
    agent = desk.agents[0]
    visitors = [make_visitor(desk)[0] for _ in range(30)]
    sessions = [_send(visitor, f"question {n}") for n, visitor in enumerate(visitors)]
    assert {session.agent_id for session in sessions} == {agent.pk}

    # when their last inbox has been gone past the grace
    with capture_events() as events:
        _leave(agent, monkeypatch)

    # then all thirty wait in the queue, in the order they wrote, and each visitor is told their
    # place a bounded number of times (not once per conversation the agent had)
    places: dict[str, list[int]] = {}
    for event, groups in events:
        if event["type"] == "queue.position":
            for group in groups:
                places.setdefault(group, []).append(event["position"])
    assert set(places) == {f"acme.v.{visitor.pk}" for visitor in visitors}
    for n, visitor in enumerate(visitors, start=1):
        told = places[f"acme.v.{visitor.pk}"]
        assert told[-1] == n
        assert len(told) <= 2  # the requeue's dispatch, and the agent's workgroups' dispatch
