"""Delivery under faults (IM-12, DESIGN.md §7), against real server processes: two daphne
processes sharing Redis and PostgreSQL, a Redis outage (sends are still stored and acked, the
other side catches up when Redis returns), and PostgreSQL refusing connections (an error frame,
never an ack for a message that was not stored)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect as ws_connect

from im.models import Message
from im.services import groups
from org.models import User
from tests.conftest import PASSWORD, session_cookie, unique
from tests.servers import PrivateRedis, daphne_start, free_port
from tests.waits import WAIT_S, wait_until_async

HOST = "acme.localhost"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pair(acme) -> tuple[User, User, int, str, str]:
    with schema_context("acme"):
        ann = User.objects.create_user(
            username=unique("ann"), password=PASSWORD, display_name="Ann"
        )
        ben = User.objects.create_user(
            username=unique("ben"), password=PASSWORD, display_name="Ben"
        )
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
    return (
        ann,
        ben,
        chat.pk,
        session_cookie(acme, ann).decode(),
        session_cookie(acme, ben).decode(),
    )


class Client:
    """One browser tab's socket, reading frames in the background."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookie = cookie
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> dict[str, Any]:
        self.ws = await ws_connect(
            f"ws://{HOST}:{self.port}/ws/agent/",
            host="127.0.0.1",
            port=self.port,
            origin=f"http://{HOST}:{self.port}",
            additional_headers={"Cookie": self.cookie},
            proxy=None,
            open_timeout=WAIT_S,
        )
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
        assert hello["type"] == "hello"
        self.closed_with = None
        self._reader = asyncio.create_task(self._read())
        return hello

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.closed_with = self.ws.close_code

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        try:
            return await wait_until_async(
                lambda: next((f for f in self.frames if predicate(f)), None), timeout=timeout
            )
        except AssertionError:
            raise AssertionError(
                f"no matching frame in {timeout}s; got {[f['type'] for f in self.frames]}"
            ) from None

    async def wait_closed(self, timeout: float = WAIT_S) -> int | None:
        with contextlib.suppress(AssertionError):
            await wait_until_async(lambda: self.closed_with is not None, timeout=timeout)
        return self.closed_with

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


def _text(cid: int, cmid: str, content: str) -> dict[str, Any]:
    return {
        "type": "message.send",
        "conversation_id": cid,
        "client_msg_id": cmid,
        "content": content,
    }


def _new(cid: int, content: str):
    return lambda f: (
        f["type"] == "message.new"
        and f["message"]["conversation_id"] == cid
        and f["message"]["content"] == content
    )


@pytest.fixture
def two_servers() -> Iterator[tuple[Any, Any]]:
    first = daphne_start(name="faults-daphne-1")
    second = daphne_start(name="faults-daphne-2")
    yield first, second
    first.stop()
    second.stop()


async def test_two_daphne_processes_carry_one_chat(acme, two_servers):
    # given: Ann on one process, Ben on the other
    first, second = two_servers
    _ann, _ben, cid, ann_cookie, ben_cookie = await database_sync_to_async(_pair)(acme)
    ann, ben = Client(first.port, ann_cookie), Client(second.port, ben_cookie)
    await ann.open()
    await ben.open()
    try:
        # when they talk
        await ann.send(_text(cid, "p1", "你好，我在一号进程"))
        await ben.wait_for(_new(cid, "你好，我在一号进程"))
        await ben.send(_text(cid, "p2", "I am on process two"))
        # then each side has the other's message, once
        await ann.wait_for(_new(cid, "I am on process two"))
        await asyncio.sleep(0.3)
        assert sum(1 for f in ben.frames if _new(cid, "你好，我在一号进程")(f)) == 1
        assert sum(1 for f in ann.frames if _new(cid, "I am on process two")(f)) == 1
    finally:
        await ann.close()
        await ben.close()


async def test_sends_are_stored_while_redis_is_down_and_the_peer_catches_up(acme, tmp_path):
    # given: a daphne whose channel layer uses a Redis we can stop; Ann and Ben connected
    redis = PrivateRedis(port=free_port(), workdir=tmp_path / "redis")
    redis.start()
    server = await database_sync_to_async(daphne_start)(name="faults-redis", redis_url=redis.url)
    _ann, _ben, cid, ann_cookie, ben_cookie = await database_sync_to_async(_pair)(acme)
    ann, ben = Client(server.port, ann_cookie), Client(server.port, ben_cookie)
    try:
        await ann.open()
        await ben.open()
        await ann.send(_text(cid, "r0", "before the outage"))
        await ben.wait_for(_new(cid, "before the outage"))
        # when Redis goes away and Ann sends
        redis.stop()
        await ann.send(_text(cid, "r1", "sent while redis is down"))
        # then the message is stored and acked (the database is the record)
        ack = await ann.wait_for(
            lambda f: f["type"] == "message.ack" and f["client_msg_id"] == "r1"
        )
        assert ack["duplicate"] is False
        stored = await database_sync_to_async(lambda: _stored(cid, "sent while redis is down"))()
        assert stored == 1
        # when Redis comes back, Ben's tab is asked to reconnect and its sync brings the message
        redis.start()
        assert await ben.wait_closed() == 4503
        await ben.close()
        ben.frames.clear()
        await ben.open()
        await ben.send({"type": "sync", "cursors": {str(cid): ack["seq"] - 1}})
        result = await ben.wait_for(lambda f: f["type"] == "sync.result")
        assert [m["content"] for m in result["messages"] if m["conversation_id"] == cid] == [
            "sent while redis is down"
        ]
        # and live delivery works again
        await ann.close()
        ann.frames.clear()
        await ann.open()
        await ann.send(_text(cid, "r2", "after the outage"))
        await ben.wait_for(_new(cid, "after the outage"))
    finally:
        await ann.close()
        await ben.close()
        server.stop()
        redis.stop()


async def _send_until_acked(client: Client, frame: dict[str, Any], timeout: float) -> dict:
    """Send ``frame`` and resend it after each error frame until its ack arrives."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    cmid = frame["client_msg_id"]
    while loop.time() < deadline:
        seen = len(client.frames)
        await client.send(frame)
        while loop.time() < deadline:
            replies = [
                f
                for f in client.frames[seen:]
                if f.get("client_msg_id") == cmid and f["type"] in ("message.ack", "error")
            ]
            if replies:
                break
            await asyncio.sleep(0.05)
        else:
            break
        if replies[0]["type"] == "message.ack":
            return replies[0]
        await asyncio.sleep(1)
    raise AssertionError(f"no ack in {timeout}s; got {[f['type'] for f in client.frames]}")


def _stored(cid: int, content: str) -> int:
    with schema_context("acme"):
        return Message.objects.filter(conversation_id=cid, content=content).count()


def _set_connections_allowed(allowed: bool) -> None:
    """Make PostgreSQL refuse (or accept again) connections to the test database, and drop the
    open ones — what a daphne process sees when its database goes away. Run from the server's
    maintenance database, since a database cannot lock itself out."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(
            f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [db["NAME"]],
            )
    if allowed:
        # This process's pooled connections were dropped too, and psycopg_pool reconnects with
        # an exponential back-off; start a fresh pool rather than wait for it.
        connection.close_pool()


async def test_no_ack_without_storage_when_postgresql_refuses_connections(acme):
    # given: Ann connected to a daphne whose database then refuses connections
    server = await database_sync_to_async(daphne_start)(name="faults-pg", DB_POOL_TIMEOUT="3")
    _ann, _ben, cid, ann_cookie, _ben_cookie = await database_sync_to_async(_pair)(acme)
    ann = Client(server.port, ann_cookie)
    try:
        await ann.open()
        await database_sync_to_async(_set_connections_allowed)(False)
        try:
            # when she sends
            await ann.send(_text(cid, "pg1", "is anyone there"))
            # then she gets an error frame and no ack
            error = await ann.wait_for(lambda f: f["type"] == "error")
            assert error["code"] == "unavailable"
            assert error["client_msg_id"] == "pg1"
            assert not [f for f in ann.frames if f["type"] == "message.ack"]
        finally:
            await database_sync_to_async(_set_connections_allowed)(True)
        assert await database_sync_to_async(lambda: _stored(cid, "is anyone there"))() == 0
        # when the database is back, the resend with the same client_msg_id is stored once
        # (the server's pool may still be in its reconnect back-off: resend on each error, as a
        # client does)
        ack = await _send_until_acked(ann, _text(cid, "pg1", "is anyone there"), timeout=60)
        assert ack["duplicate"] is False
        assert await database_sync_to_async(lambda: _stored(cid, "is anyone there"))() == 1
    finally:
        await ann.close()
        server.stop()
