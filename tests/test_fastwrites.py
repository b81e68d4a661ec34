"""Daphne's sockets written at once (weiyu/fastwrites.py): a frame larger than one ``send`` takes,
sent to a client that is not reading, arrives whole and before the frames that follow it."""

from __future__ import annotations

import asyncio
import json
import pprint
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect as ws_connect

from kefu.services import messages as kefu_messages
from tests.conftest import make_desk, make_visitor, session_cookie, unique
from tests.servers import LiveServer, daphne_start
from tests.waits import WAIT_S
from weiyu import asgi, fastwrites

HOST = "acme.localhost"
MESSAGES = 60
TEXT = (
    "长" * 4000
)  # 12 KB of UTF-8 each: the sync.result is ~750 KB (daphne refuses frames over 1 MiB)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def server() -> Iterator[LiveServer]:
    live = daphne_start(name="fastwrites-daphne")
    yield live
    live.stop()


def _chat(acme) -> tuple[str, int]:
    """An agent's session cookie and a conversation of theirs holding ``MESSAGES`` long texts."""
    desk = make_desk(acme, agents=1, cap=3)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        conversation_id = None
        for n in range(MESSAGES):
            message, _created = kefu_messages.visitor_message_send(
                visitor=visitor,
                conversation_id=conversation_id,
                content=f"{n} {TEXT}",
                client_msg_id=unique("c"),
            )
            conversation_id = message.conversation_id
    return session_cookie(acme, desk.agents[0]).decode(), conversation_id


def test_the_asgi_module_installs_it():
    assert asgi.application is not None
    assert fastwrites._installed


async def test_a_large_frame_to_a_slow_reader_arrives_whole_and_in_order(acme, server):
    # given an agent whose conversation holds ~1.5 MB of text
    cookie, conversation_id = await database_sync_to_async(_chat)(acme)
    async with ws_connect(
        f"ws://{HOST}:{server.port}/ws/agent/",
        host="127.0.0.1",
        port=server.port,
        origin=f"http://{HOST}:{server.port}",
        additional_headers={"Cookie": cookie},
        proxy=None,
        open_timeout=WAIT_S,
        max_size=None,
        max_queue=None,
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "hello"
        # when it asks for all of it and pings right after, then reads nothing for a moment
        await ws.send(json.dumps({"type": "sync", "ref": "s", "cursors": {conversation_id: 0}}))
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        await asyncio.sleep(1)
        # then the first sync.result page comes whole, and the pong after it
        frames = []
        while len(frames) < 2:
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            if frame["type"] in ("sync.result", "pong"):
                frames.append(frame)
        assert [f["type"] for f in frames] == ["sync.result", "pong"]
        assert len(json.dumps(frames[0])) > 200_000  # a large frame, for a reader that waited
        # and the pages that follow (docs/protocol.md §3) hold every message once, in order
        pages = [frames[0]]
        while pages[-1].get("next"):
            await ws.send(
                json.dumps(
                    {
                        "type": "sync",
                        "ref": f"s{len(pages)}",
                        "cursors": {conversation_id: 0},
                        "page": pages[-1]["next"],
                    }
                )
            )
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            while frame["type"] != "sync.result":
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            pages.append(frame)
        texts = [
            m["content"]
            for page in pages
            for m in page["messages"]
            if m["sender"]["type"] == "visitor"
        ]
        assert texts == [f"{n} {TEXT}" for n in range(MESSAGES)]


def test_autobahn_log_arguments_read_the_same_once_formatted():
    # given autobahn's highlighting helpers deferred (as weiyu.asgi does under daphne)
    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    fastwrites.lazy_autobahn_log_args()
    fastwrites.lazy_autobahn_log_args()  # once per process: a second call changes nothing
    # then a debug line that is written reads as it did, and one dropped costs no formatting
    for module in (protocol, twisted_websocket):
        assert f"{module.hltype(_chat)}" == util.hltype(_chat)
        assert str(module.hlval(42)) == util.hlval(42)
        assert f"{module.hlval(1):>3}" == f"{util.hlval(1):>3}"
    # and so do the opening handshake's settings, and autobahn's timings as text
    settings = [("openHandshakeTimeout", 5, "WebSocketServerFactory"), ("maxFramePayloadSize", 0)]
    assert f"{protocol.pformat(settings)}" == pprint.pformat(settings)
    timings = protocol.Timings()
    timings.track("onOpen")
    assert str(timings) == pprint.pformat(timings._timings)
