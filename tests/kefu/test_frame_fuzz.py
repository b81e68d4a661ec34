"""Every client frame type of both sockets, sent with fields of the wrong type, gets an answer
(an ``error`` frame with a code, or its normal reply) and leaves the socket open: a ``ping``
afterwards still gets its ``pong`` (docs/protocol.md §2.2, §2.4)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from kefu.consumers import AgentConsumer, VisitorConsumer
from kefu.services import messages
from tests.conftest import make_desk, make_visitor, session_cookie
from tests.ws import connect, receive_until

FIELDS = (
    "conversation_id",
    "content",
    "client_msg_id",
    "seq",
    "before_seq",
    "limit",
    "cursors",
    "status",
    "message_id",
    "feedback",
    "score",
    "comment",
    "msg_type",
    "mentions",
    "read_seq",
    "delivered_seq",
    "department_id",
)
WRONG = [None, [], {"a": 1}, "x" * 300, -1, 10**20, 1.5, True]


def _frames(types: list[str]) -> list[dict]:
    frames = []
    for frame_type in types:
        for n, value in enumerate(WRONG):
            frame = {"type": frame_type, "ref": f"{frame_type}-{n}"}
            frame.update(dict.fromkeys(FIELDS, value))
            frames.append(frame)
    return frames


async def _answered(ws, frame: dict) -> None:
    await ws.send_json_to(frame)
    await ws.send_json_to({"type": "ping", "ref": "alive"})
    await receive_until(ws, "pong")


@pytest.mark.asyncio
async def test_wrongly_typed_frames_never_break_a_socket(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    visitor, token = await database_sync_to_async(make_visitor)(desk)

    def start() -> None:
        from django_tenants.utils import schema_context

        with schema_context("acme"):
            messages.visitor_message_send(
                visitor=visitor, conversation_id=None, content="hello", client_msg_id="first"
            )

    await database_sync_to_async(start)()
    cookie = await database_sync_to_async(session_cookie)(acme, desk.agents[0])
    visitor_ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)

    for ws, consumer in ((visitor_ws, VisitorConsumer), (agent_ws, AgentConsumer)):
        types = [t for t in consumer.handlers if t != "ping"]
        for frame in _frames(types):
            await _answered(ws, frame)
    await visitor_ws.disconnect()
    await agent_ws.disconnect()
