"""Every socket of a desk dropped at once and resumed at once (docs/protocol.md §3, "sync").

Sixty visitors and their agent's tab talk to a real daphne process. All of them close their
sockets together; replies are stored while they are away and while they come back; all of them
reconnect together and ``sync`` from the cursors they held. Each must then hold every message of
its conversations, none handed out twice by the same route (two ``message.new``, or twice in
``sync.result``) or again though it was held before. A message committed while its client resumes
may come both live and in ``sync.result``: the protocol allows that (clients key messages by
conversation and ``seq``), so it is not a duplicate here. tests/e2e/test_resume_churn.py drops
browser tabs a few at a time; this drops everyone at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect as ws_connect

from im.models import Conversation, Message
from im.services import messages as im_messages
from kefu.senders import agent_sender
from kefu.services import messages as kefu_messages
from tests.conftest import make_desk, make_visitor, session_cookie, unique
from tests.servers import LiveServer, daphne_start
from tests.waits import WAIT_S, wait_until_async

HOST = "acme.localhost"
VISITORS = 60
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Key = tuple[int, int]  # (conversation id, seq)


class Tab:
    """One socket that keeps what it holds per conversation, as static/weiyu/client.js does."""

    def __init__(self, path: str, cursors: dict[str, int], cookie: str | None = None) -> None:
        self.path = path
        self.cookie = cookie
        self.cursors = cursors
        self.live: Counter[Key] = Counter()
        self.in_sync: Counter[Key] = Counter()
        self.synced = False
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        """Connect, wait for ``hello``, ``sync`` from the held cursors and wait for the result."""
        self.synced = False
        self.live.clear()
        self.in_sync.clear()
        self.ws = await ws_connect(
            f"ws://{HOST}:{port}{self.path}",
            host="127.0.0.1",
            port=port,
            origin=f"http://{HOST}:{port}",  # a browser sends the port
            additional_headers={"Cookie": self.cookie} if self.cookie else {},
            proxy=None,
            open_timeout=WAIT_S,
        )
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
        assert hello["type"] == "hello", hello
        self._reader = asyncio.create_task(self._read())
        await self.ws.send(json.dumps({"type": "sync", "cursors": dict(self.cursors)}))
        await wait_until_async(lambda: self.synced, what=f"sync.result on {self.path[:20]}")

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "message.new":
                    self.live[frame["message"]["conversation_id"], frame["message"]["seq"]] += 1
                elif frame["type"] == "sync.result":
                    for message in frame["messages"]:
                        self.in_sync[message["conversation_id"], message["seq"]] += 1
                    self.synced = True

    def held(self) -> set[Key]:
        return set(self.live) | set(self.in_sync)

    def duplicates(self, before: dict[str, int]) -> list[Key]:
        """Messages handed out twice by one route, or again though held before the drop."""
        return sorted(
            key
            for key in self.held()
            if self.live[key] > 1 or self.in_sync[key] > 1 or key[1] <= before.get(str(key[0]), 0)
        )

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


def _desk_with_chats(acme) -> tuple[Any, list[tuple[str, int]], dict[str, int]]:
    """An agent serving ``VISITORS`` visitors, each with one open chat; returns the agent, each
    visitor's ``(token, conversation id)`` and the chats' ``last_seq`` by id (as a string)."""
    desk = make_desk(acme, agents=1, cap=VISITORS + 1)
    chats = []
    for _ in range(VISITORS):
        visitor, token = make_visitor(desk)
        with schema_context("acme"):
            message, _created = kefu_messages.visitor_message_send(
                visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
            )
        chats.append((token, message.conversation_id))
    with schema_context("acme"):
        last = dict(
            Conversation.objects.filter(pk__in=[cid for _token, cid in chats]).values_list(
                "pk", "last_seq"
            )
        )
    return desk.agents[0], chats, {str(cid): seq for cid, seq in last.items()}


def _reply(agent, conversation_ids: list[int], text: str) -> None:
    with schema_context("acme"):
        for cid in conversation_ids:
            im_messages.message_send(
                conversation_id=cid,
                sender=agent_sender(agent),
                content=text,
                client_msg_id=unique("r"),
            )


def _stored_after(cursors: dict[str, int]) -> set[Key]:
    with schema_context("acme"):
        return {
            (cid, seq)
            for cid, seq in Message.objects.filter(
                conversation_id__in=[int(c) for c in cursors]
            ).values_list("conversation_id", "seq")
            if seq > cursors[str(cid)]
        }


@pytest.fixture
def server() -> Iterator[LiveServer]:
    live = daphne_start(name="storm-daphne")
    yield live
    live.stop()


async def test_everyone_dropped_at_once_resumes_every_message_once(acme, server):
    # given sixty visitors and their agent's tab, connected and synced
    agent, chats, last = await database_sync_to_async(_desk_with_chats)(acme)
    cookie = (await database_sync_to_async(session_cookie)(acme, agent)).decode()
    tabs = [Tab(f"/ws/visitor/?token={token}", {str(cid): last[str(cid)]}) for token, cid in chats]
    tabs.append(Tab("/ws/agent/", dict(last), cookie))
    await asyncio.gather(*(tab.open(server.port) for tab in tabs))
    before = [dict(tab.cursors) for tab in tabs]
    conversation_ids = [cid for _token, cid in chats]
    try:
        # when every socket closes at once, replies are stored meanwhile and while they return
        await asyncio.gather(*(tab.close() for tab in tabs))
        await database_sync_to_async(_reply)(agent, conversation_ids[::3], "while you were away")
        await asyncio.gather(
            *(tab.open(server.port) for tab in tabs),
            database_sync_to_async(_reply)(agent, conversation_ids[::5], "while you come back"),
        )
        # then every socket holds every message of its conversations stored after its cursor
        wanted = [await database_sync_to_async(_stored_after)(b) for b in before]
        assert sum(len(w) for w in wanted[:-1]) == len(conversation_ids[::3]) + len(
            conversation_ids[::5]
        )

        def missing() -> list[Any]:
            return [w - tab.held() for tab, w in zip(tabs, wanted, strict=True) if w - tab.held()]

        try:
            await wait_until_async(lambda: not missing(), what="every socket to hold every reply")
        except AssertionError:
            pytest.fail(f"gaps after the storm: {missing()[:5]}")
        await asyncio.sleep(0.3)  # a late second copy would still arrive
        # and none was handed out twice
        duplicates = [d for tab, b in zip(tabs, before, strict=True) if (d := tab.duplicates(b))]
        assert duplicates == []
    finally:
        await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)
