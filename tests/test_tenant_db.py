"""weiyu.asgi_tenancy.tenant_db: the events a database call publishes leave even when the
consumer awaiting it is cancelled (daphne cancels a consumer 10 s after its socket closed; the
worker thread commits regardless, so the recipients must still hear of it)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer
from django.db import connection

from tests.conftest import unique
from tests.waits import WAIT_S
from weiyu.asgi_tenancy import tenant_db
from weiyu.realtime import member_group, publish_event_now


@pytest.mark.asyncio
async def test_a_cancelled_caller_still_publishes_what_its_call_committed(acme):
    # given: a socket of member u:<n> listening on its group
    layer = get_channel_layer()
    member = f"u:{unique('9')}"
    channel = await layer.new_channel()
    await layer.group_add(member_group("acme", member), channel)
    release = threading.Event()

    def slow_call() -> None:  # what a service does: work, then publish
        release.wait(WAIT_S)
        publish_event_now({"type": "ping.test", "schema": connection.schema_name}, [member])

    # when: the caller is cancelled while the call is still running in the database thread
    caller = asyncio.ensure_future(tenant_db(acme, slow_call))
    await asyncio.sleep(0.2)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()

    # then: the event still reaches the member's socket
    message = await asyncio.wait_for(layer.receive(channel), WAIT_S)
    assert message["event"] == {"type": "ping.test", "schema": "acme"}
    await layer.group_discard(member_group("acme", member), channel)


@pytest.mark.asyncio
async def test_an_expired_tenant_entry_is_answered_while_one_lookup_refreshes_it(acme, monkeypatch):
    # given: the host's cache entry has expired, and the database is slow to answer its lookup
    from weiyu import asgi_tenancy

    lookups: list[str] = []
    release = threading.Event()
    real_lookup = asgi_tenancy._lookup_tenant

    def slow_lookup(host: str):
        lookups.append(host)
        release.wait(WAIT_S)
        return real_lookup(host)

    monkeypatch.setattr(asgi_tenancy, "_lookup_tenant", slow_lookup)
    monkeypatch.setitem(asgi_tenancy._tenant_cache, "acme.localhost", (0.0, acme))
    # when: fifty handshakes arrive at once
    answers = await asyncio.wait_for(
        asyncio.gather(*(asgi_tenancy.resolve_tenant("acme.localhost") for _ in range(50))),
        WAIT_S / 2,  # the lookup is held for WAIT_S: only answers that did not wait for it arrive
    )
    # then: each is answered from the stale entry while one lookup refreshes it
    assert not release.is_set()
    assert [a.schema_name for a in answers] == ["acme"] * 50
    release.set()
    refresh = asgi_tenancy._refreshing["acme.localhost"]
    assert (await asyncio.wait_for(refresh, WAIT_S)).schema_name == "acme"
    assert lookups == ["acme.localhost"]
    assert asgi_tenancy._tenant_cache["acme.localhost"][0] > 0.0
