"""Closing the last inbox tab sets the agent offline after the grace period; a reload does not.

The grace is read at each scan, so "the grace has passed" is set (``AGENT_OFFLINE_GRACE_S=0``)
rather than slept through, and "still within it" is a grace no slow machine outlasts.
"""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kefu import presence
from kefu.models import AgentState
from kefu.services import agents as kefu_agents
from tests.conftest import make_agent, session_cookie
from tests.ws import connect

LONG_GRACE = "600"  # s: "within the grace", however slow the machine


def _status(user) -> str:
    with schema_context("acme"):
        return AgentState.objects.get(user=user).status


def _scan() -> int:
    with schema_context("acme"):
        return kefu_agents.offline_scan()


@pytest.mark.asyncio
async def test_the_last_tab_closing_sets_the_agent_offline_after_the_grace(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)

    def agent():
        with schema_context("acme"):
            return make_agent()

    user = await database_sync_to_async(agent)()
    cookie = await database_sync_to_async(session_cookie)(acme, user)
    first, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    second, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)

    # one of two tabs closes: still online, whatever the wait
    await first.disconnect()
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "0")
    await database_sync_to_async(_scan)()
    assert await database_sync_to_async(_status)(user) == "online"

    # the last one closes: online during the grace (a reload reconnects within it) …
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", LONG_GRACE)
    await second.disconnect()
    await database_sync_to_async(_scan)()
    assert await database_sync_to_async(_status)(user) == "online"
    # … offline after it
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "0")
    assert await database_sync_to_async(_scan)() >= 1
    assert await database_sync_to_async(_status)(user) == "offline"


@pytest.mark.asyncio
async def test_agents_without_an_inbox_record_or_with_a_fresh_reload_stay(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")

    def agents():
        with schema_context("acme"):
            return make_agent(), make_agent()

    set_by_admin, reloading = await database_sync_to_async(agents)()
    cookie = await database_sync_to_async(session_cookie)(acme, reloading)
    tab, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    await tab.disconnect()
    again, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)  # the reload
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "0")  # the grace of the closed tab is over
    await database_sync_to_async(_scan)()
    assert await database_sync_to_async(_status)(set_by_admin) == "online"
    assert await database_sync_to_async(_status)(reloading) == "online"
    await again.disconnect()


def test_a_tab_that_died_without_closing_counts_as_gone(acme, monkeypatch):
    monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
    with schema_context("acme"):
        user = make_agent()
    # a socket last heard of long ago (its process was killed: no close ever came)
    presence.socket_seen(schema="acme", user_id=user.pk, channel_name="specific.dead!1")
    presence._redis().zadd(
        presence._key("acme", user.pk), {"specific.dead!1": time.time() - presence.ALIVE_S - 5}
    )
    assert _scan() >= 1
    assert _status(user) == "offline"
