"""Agents' inbox tabs dropped and resumed while visitors write (docs/protocol.md §3, "sync").

Visitors write over their own sockets (each message counted once acked); two agents hold three
tabs each, and every tab is a Python port of the cursor rules of ``static/weiyu/client.js``: a
conversation learned while the client lives starts at cursor 0, those of its first
``sync.result`` at their ``last_seq``, cursors move only over contiguous ``seq``s, a later
``sync.result`` listing a conversation the client did not know brings another ``sync`` at once,
and every ``(conversation, seq)`` is handed out once. Tabs are dropped a few at a time while
visitors write, and all of them while half the visitors open their chats (so those tabs learn of
the conversations on resuming, and the first message of each predates its agent). After a last
resume every tab must hold every acked message of its agent's conversations, exactly once.
tests/e2e/test_resume_churn.py runs the real client.js in Chromium; this runs in the fast suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect as ws_connect

from kefu.models import Session
from tests.conftest import make_desk, make_visitor, session_cookie, unique
from tests.servers import LiveServer, daphne_start
from tests.waits import WAIT_S, wait_until_async

HOST = "acme.localhost"
AGENTS = 2
TABS = 3  # per agent
VISITORS = 6
ROUNDS = 6  # messages per visitor after the opening one
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def _socket(port: int, path: str, cookie: str | None = None) -> Any:
    return await ws_connect(
        f"ws://{HOST}:{port}{path}",
        host="127.0.0.1",
        port=port,
        origin=f"http://{HOST}:{port}",
        additional_headers={"Cookie": cookie} if cookie else {},
        proxy=None,
        open_timeout=WAIT_S,
    )


class ClientTab:
    """One inbox tab: the cursor, dedupe and re-sync rules of ``static/weiyu/client.js``
    (``_learn``, ``_raise``, ``_advance``, ``sync``), kept across its reconnects."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookie = cookie
        self.cursors: dict[str, int] = {}
        self.held: dict[str, set[int]] = {}
        self.handed = 0  # messages handed to the page: each (conversation, seq) at most once
        self.synced = False  # a sync.result has arrived since this client was made
        self.syncs = 0
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    # -- client.js's rules -----------------------------------------------------------------
    def _remember(self, message: dict[str, Any]) -> bool:
        seqs = self.held.setdefault(str(message["conversation_id"]), set())
        if message["seq"] in seqs:
            return False
        seqs.add(message["seq"])
        self.handed += 1
        return True

    def _learn(self, conversation_id: int, seq: int) -> None:
        c = str(conversation_id)
        if c in self.cursors:
            return
        self.cursors[c] = seq
        self._advance(c)

    def _raise(self, conversation_id: int, seq: int) -> None:
        c = str(conversation_id)
        self.cursors[c] = max(self.cursors.get(c, 0), seq)
        self._advance(c)

    def _advance(self, c: str) -> None:
        seqs = self.held.get(c)
        if seqs is None:
            return
        cursor = self.cursors.get(c, 0)
        while cursor + 1 in seqs:
            cursor += 1
        self.cursors[c] = cursor

    async def sync(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps({"type": "sync", "cursors": dict(self.cursors)}))

    async def _on(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message.new":
            message = frame["message"]
            self._learn(message["conversation_id"], 0)
            if self._remember(message):
                self._advance(str(message["conversation_id"]))
        elif kind in ("conversation.added", "conversation.assigned"):
            self._learn(frame["conversation"]["id"], 0)
        elif kind == "sync.result":
            missed = False
            for conv in frame["conversations"]:
                if self.synced and str(conv["id"]) not in self.cursors and conv["last_seq"] > 0:
                    missed = True
                self._learn(conv["id"], 0 if self.synced else conv["last_seq"])
            self.synced = True
            for message in frame["messages"]:
                self._remember(message)
            for message in frame["messages"]:
                self._raise(message["conversation_id"], message["seq"])
            self.syncs += 1
            if missed:
                await self.sync()

    # -- the socket ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, wait for ``hello`` and send ``sync`` (the reply is handled by the reader)."""
        self.ws = await _socket(self.port, "/ws/agent/", self.cookie)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
        assert hello["type"] == "hello"
        self._reader = asyncio.create_task(self._read())
        await self.sync()

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self._on(json.loads(raw))

    async def drop(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
        self.ws = self._reader = None

    async def resume(self) -> None:
        """Drop (if open) and come back; returns once the new socket's first sync answered."""
        await self.drop()
        before = self.syncs
        await self.open()
        await wait_until_async(lambda: self.syncs > before, what="sync.result after a resume")


class VisitorSocket:
    """A visitor writing: each message waits for its ``message.ack``."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.conversation_id: int | None = None
        self.acked: list[tuple[int, int]] = []  # (conversation id, seq)
        self.ws: Any = None

    async def open(self) -> None:
        self.ws = await _socket(self.port, f"/ws/visitor/?token={self.token}")
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
        assert hello["type"] == "hello"

    async def say(self, text: str) -> None:
        client_msg_id = unique("c")
        frame: dict[str, Any] = {"type": "message.send", "client_msg_id": client_msg_id}
        frame["content"] = text
        if self.conversation_id is not None:
            frame["conversation_id"] = self.conversation_id
        await self.ws.send(json.dumps(frame))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT_S))
            assert reply["type"] != "error", reply
            if reply["type"] == "message.ack" and reply["client_msg_id"] == client_msg_id:
                break
        self.conversation_id = reply["conversation_id"]
        self.acked.append((reply["conversation_id"], reply["seq"]))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
def server() -> Iterator[LiveServer]:
    live = daphne_start(name="churn-daphne")
    yield live
    live.stop()


def _desk(acme) -> tuple[list[Any], list[str], list[str]]:
    """Agents (online, room for every visitor) with a session cookie each, and visitors' tokens."""
    desk = make_desk(acme, agents=AGENTS, cap=VISITORS + 1)
    cookies = [session_cookie(acme, agent).decode() for agent in desk.agents]
    tokens = [make_visitor(desk)[1] for _ in range(VISITORS)]
    return desk.agents, cookies, tokens


def _served(conversation_ids: list[int]) -> dict[int, int]:
    with schema_context("acme"):
        return dict(
            Session.objects.filter(conversation_id__in=conversation_ids).values_list(
                "conversation_id", "agent_id"
            )
        )


async def test_dropped_tabs_resume_every_acked_message_once(acme, server):
    # given two agents with three synced tabs each, and six visitors on their sockets
    agents, cookies, tokens = await database_sync_to_async(_desk)(acme)
    tabs = {
        agent.pk: [ClientTab(server.port, cookie) for _ in range(TABS)]
        for agent, cookie in zip(agents, cookies, strict=True)
    }
    every_tab = [tab for agent_tabs in tabs.values() for tab in agent_tabs]
    visitors = [VisitorSocket(server.port, token) for token in tokens]
    rng = random.Random(15)  # noqa: S311 - a reproducible schedule, not a secret
    try:
        await asyncio.gather(*(tab.resume() for tab in every_tab))
        await asyncio.gather(*(v.open() for v in visitors))
        early, late = visitors[: VISITORS // 2], visitors[VISITORS // 2 :]
        # when half the visitors open chats while every tab is open
        await asyncio.gather(*(v.say("hello") for v in early))
        for round_no in range(1, ROUNDS + 1):
            # a third of the tabs drop; visitors write meanwhile and while those tabs come back
            dropped = [tab for tab in every_tab if rng.random() < 0.35]
            await asyncio.gather(*(tab.drop() for tab in dropped))
            if round_no == 3:
                # the other half open theirs while every tab is away
                await asyncio.gather(*(tab.drop() for tab in every_tab))
                await asyncio.gather(*(v.say("hello") for v in late))
                dropped = every_tab
            writers = [v for v in visitors if v.conversation_id is not None]
            await asyncio.gather(
                *(v.say(f"message {round_no}") for v in writers),
                *(tab.resume() for tab in dropped),
            )
        # and every tab resumes once more at the end
        await asyncio.gather(*(tab.resume() for tab in every_tab))

        # then every tab holds every acked message of its agent's conversations, once
        served = await database_sync_to_async(_served)([v.conversation_id for v in visitors])
        assert sorted(served) == sorted(v.conversation_id for v in visitors)
        assert set(served.values()) <= set(tabs)
        wanted: dict[int, dict[str, set[int]]] = {agent_id: {} for agent_id in tabs}
        for v in visitors:
            agent_id = served[v.conversation_id]
            wanted[agent_id][str(v.conversation_id)] = {seq for _cid, seq in v.acked}

        def missing() -> list[dict[str, list[int]]]:
            gaps = []
            for agent_id, agent_tabs in tabs.items():
                for tab in agent_tabs:
                    gap = {
                        c: sorted(seqs - tab.held.get(c, set()))
                        for c, seqs in wanted[agent_id].items()
                        if seqs - tab.held.get(c, set())
                    }
                    if gap:
                        gaps.append(gap)
            return gaps

        try:
            await wait_until_async(lambda: not missing(), what="every tab to hold every message")
        except AssertionError:
            pytest.fail(f"tabs miss acked messages: {missing()}")
        for tab in every_tab:
            assert tab.handed == sum(len(seqs) for seqs in tab.held.values())
            # cursors sit at the end of what they hold: the next sync asks for nothing held
            for c, seqs in tab.held.items():
                assert tab.cursors[c] == max(seqs)
    finally:
        await asyncio.gather(*(tab.drop() for tab in every_tab), return_exceptions=True)
        await asyncio.gather(*(v.close() for v in visitors), return_exceptions=True)
