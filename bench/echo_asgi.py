"""Baseline for bench/chat_load.py: a bare ASGI app speaking just enough of docs/protocol.md.

Served by the same daphne binary as Weiyu (``daphne bench.echo_asgi:application``), it answers the
same requests with frames of the same shape, but with no Django, no database and no Redis:

* ``GET /healthz`` → ``{"status": "ok"}``; ``POST /api/v1/widget/session`` → a token ``v<n>``.
* ``/ws/agent/`` (any ``weiyu_session`` cookie) and ``/ws/visitor/?token=…``: ``hello`` on accept.
* A visitor's first ``message.send`` (no ``conversation_id``) opens a conversation, assigns it to
  the next connected agent (round robin) and sends ``conversation.assigned`` to both sides, like
  the product's routing. Every ``message.send`` is answered with ``message.ack`` and a
  ``message.new`` to the visitor; once assigned, the ``message.new`` is also forwarded in-process
  to the paired agent socket (through that socket's queue, as a channel layer would).

* For bench/im_load.py (team chat): an agent's ``sync`` subscribes its socket to the
  conversations named in ``cursors``; an agent's ``message.send`` to such a conversation is
  acked and its ``message.new`` pushed to every subscribed socket, the sender's included — the
  product's fan-out to every socket of every participant, without storage.

Frames are JSON-decoded and encoded as in the product, so the difference measured against it is
the cost of Django, the database, Redis and the consumer stack — not of JSON or the transport.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

_ids = itertools.count(1)


class _Conn:
    """One open websocket: an outbox drained by a writer task (the 'channel layer' inbox)."""

    def __init__(self, send: Any, key: str) -> None:
        self.send = send
        self.key = key
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def push(self, frame: dict[str, Any]) -> None:
        self.outbox.put_nowait(frame)

    async def writer(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                return
            await self.send({"type": "websocket.send", "text": _dumps(frame)})


class _World:
    def __init__(self) -> None:
        self.agents: list[_Conn] = []
        self.rr = 0
        # conversation id → (visitor conn, agent conn | None, last seq)
        self.convs: dict[int, list[Any]] = {}
        # team conversation id → ([subscribed conns], last seq)
        self.rooms: dict[int, list[Any]] = {}

    def pick_agent(self) -> _Conn | None:
        if not self.agents:
            return None
        agent = self.agents[self.rr % len(self.agents)]
        self.rr += 1
        return agent


world = _World()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _member(key: str) -> dict[str, Any]:
    kind = "agent" if key.startswith("u:") else "visitor"
    return {"key": key, "type": kind, "id": int(key[2:]), "name": key}


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    status, payload = 404, {"error": "not_found"}
    if scope["path"] == "/healthz":
        status, payload = 200, {"status": "ok", "schema": "echo"}
    elif scope["path"] == "/api/v1/widget/session" and scope["method"] == "POST":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        vid = next(_ids)
        status, payload = (
            200,
            {
                "token": f"v{vid}",
                "visitor": {"id": vid, "key": f"v:{vid}", "name": f"Visitor {vid}"},
                "channel": {"key": data.get("channel"), "name": "echo"},
                "ws_path": "/ws/visitor/",
            },
        )
    raw = _dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(raw)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _on_visitor_send(conn: _Conn, data: dict[str, Any]) -> None:
    conv_id = data.get("conversation_id")
    opening = conv_id is None
    if opening:
        conv_id = next(_ids)
        world.convs[conv_id] = [conn, None, 0]
    entry = world.convs.get(conv_id)
    if entry is None or entry[0] is not conn:
        conn.push({"type": "error", "code": "not_found", "ref": data.get("ref")})
        return
    entry[2] += 1
    now = _now()
    message = {
        "id": next(_ids),
        "conversation_id": conv_id,
        "seq": entry[2],
        "client_msg_id": data.get("client_msg_id"),
        "sender": _member(conn.key),
        "msg_type": "text",
        "content": str(data.get("content", "")).strip(),
        "created_at": now,
    }
    new = {"type": "message.new", "message": message}
    if entry[1] is not None:
        entry[1].push(new)
    conn.push(new)
    conn.push(
        {
            "type": "message.ack",
            "ref": data.get("ref"),
            "client_msg_id": message["client_msg_id"],
            "conversation_id": conv_id,
            "id": message["id"],
            "seq": message["seq"],
            "created_at": now,
            "duplicate": False,
        }
    )
    if opening:
        agent = world.pick_agent()
        if agent is not None:
            entry[1] = agent
            conversation = {
                "id": conv_id,
                "kind": "visitor",
                "last_seq": entry[2],
                "session": {
                    "status": "open",
                    "agent": _member(agent.key),
                    "visitor": {"id": int(conn.key[2:])},
                },
            }
            for side in (agent, conn):
                side.push({"type": "conversation.assigned", "conversation": conversation})


def _on_sync(conn: _Conn, data: dict[str, Any]) -> None:
    cursors = data.get("cursors") if isinstance(data.get("cursors"), dict) else {}
    for cid in cursors:
        if str(cid).isdigit():
            room = world.rooms.setdefault(int(cid), [[], 0])
            if conn not in room[0]:
                room[0].append(conn)
    conn.push({"type": "sync.result", "ref": data.get("ref"), "conversations": [], "messages": []})


def _on_agent_send(conn: _Conn, data: dict[str, Any]) -> None:
    room = world.rooms.get(data.get("conversation_id"))  # type: ignore[arg-type]
    if room is None or conn not in room[0]:
        conn.push({"type": "error", "code": "not_found", "ref": data.get("ref")})
        return
    room[1] += 1
    now = _now()
    message = {
        "id": next(_ids),
        "conversation_id": data["conversation_id"],
        "seq": room[1],
        "client_msg_id": data.get("client_msg_id"),
        "sender": _member(conn.key),
        "msg_type": "text",
        "content": str(data.get("content", "")).strip(),
        "created_at": now,
    }
    conn.push(
        {
            "type": "message.ack",
            "ref": data.get("ref"),
            "client_msg_id": message["client_msg_id"],
            "conversation_id": message["conversation_id"],
            "id": message["id"],
            "seq": message["seq"],
            "created_at": now,
            "duplicate": False,
        }
    )
    new = {"type": "message.new", "message": message}
    for member in room[0]:
        member.push(new)


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: PLR0912
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    path = scope["path"]
    if path == "/ws/agent/":
        key = f"u:{next(_ids)}"
    elif path == "/ws/visitor/":
        token = (parse_qs(scope.get("query_string", b"").decode()).get("token") or [""])[0]
        if not token.startswith("v") or not token[1:].isdigit():
            await send({"type": "websocket.close", "code": 4401})
            return
        key = f"v:{token[1:]}"
    else:
        await send({"type": "websocket.close", "code": 4404})
        return
    await send({"type": "websocket.accept"})
    conn = _Conn(send, key)
    writer = asyncio.ensure_future(conn.writer())
    conn.push({"type": "hello", "member": _member(key), "server_time": _now()})
    if key.startswith("u:"):
        world.agents.append(conn)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            if event["type"] != "websocket.receive":
                continue
            try:
                data = json.loads(event.get("text") or event.get("bytes") or b"")
            except ValueError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                conn.push({"type": "error", "code": "bad_frame", "ref": None})
            elif data["type"] == "ping":
                conn.push({"type": "pong", "ref": data.get("ref")})
            elif data["type"] == "message.send" and key.startswith("v:"):
                _on_visitor_send(conn, data)
            elif data["type"] == "sync" and key.startswith("u:"):
                _on_sync(conn, data)
            elif data["type"] == "message.send" and key.startswith("u:"):
                _on_agent_send(conn, data)
            else:
                conn.push({"type": "error", "code": "unknown_type", "ref": data.get("ref")})
    finally:
        if conn in world.agents:
            world.agents.remove(conn)
        for room in world.rooms.values():
            if conn in room[0]:
                room[0].remove(conn)
        conn.outbox.put_nowait(None)
        await asyncio.gather(writer, return_exceptions=True)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
