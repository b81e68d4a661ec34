"""The web launcher (``python -m weiyu.serve``, the Procfile's ``web``): two daphne processes on
one port serve ``/healthz`` each, a chat crosses between a visitor on one process and its agent
on the other (through channels-redis and PostgreSQL), and SIGTERM stops every child."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tests.conftest import make_desk, make_visitor, session_cookie, unique
from tests.servers import LiveServer, serve_start
from tests.waits import WAIT_S, wait_until, wait_until_async
from weiyu.serve import bind_socket, parse_args, web_concurrency

HOST = "acme.localhost"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def child_pids(log: Path) -> list[int]:
    """The daphne pids the launcher says it started, from its log."""
    text = log.read_text(errors="replace")
    return [int(pid) for pid in re.findall(r"serve: daphne pid (\d+) serving", text)]


def _hex_port(port: int) -> str:
    return f"{port:04X}"


def connection_owner(pids: list[int], *, server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server side of the loopback TCP connection from
    ``client_port`` to ``server_port`` (read from /proc: the connection's inode, then the
    processes' file descriptors); ``None`` when none does (yet)."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if local.endswith(":" + _hex_port(server_port)) and remote.endswith(
                ":" + _hex_port(client_port)
            ):
                inode = fields[9]
    if not inode or inode == "0":
        return None
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def healthz_owner(server: LiveServer, pids: list[int]) -> int | None:
    """GET /healthz on a fresh keep-alive connection; the child that answered it."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_S)
    try:
        conn.request("GET", "/healthz", headers={"Host": "localhost"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
        client_port = conn.sock.getsockname()[1]
        return connection_owner(pids, server_port=server.port, client_port=client_port)
    finally:
        conn.close()


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (absent, or a zombie awaiting its new parent's reaping)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def launcher() -> Iterator[LiveServer]:
    server = serve_start(workers=2, name="serve-test")
    yield server
    server.stop()


@pytest.fixture
def chat(acme) -> dict[str, Any]:
    desk = make_desk(acme, agents=1)
    _visitor, token = make_visitor(desk)
    return {"token": token, "cookie": session_cookie(acme, desk.agents[0]).decode()}


def test_web_concurrency_defaults_to_the_cores():
    assert web_concurrency({}) == (os.cpu_count() or 1)
    assert web_concurrency({"WEB_CONCURRENCY": "3"}) == 3
    with pytest.raises(ValueError, match="positive"):
        web_concurrency({"WEB_CONCURRENCY": "0"})


def test_two_processes_share_the_port_then_stop_on_sigterm(launcher, chat):
    # given: the launcher started two daphne processes
    pids = wait_until(lambda: (p := child_pids(launcher.log)) and len(p) == 2 and p, what="pids")
    assert len(set(pids)) == 2

    # then: each of them answers /healthz on the one port
    seen: set[int] = set()
    wait_until(
        lambda: seen.add(healthz_owner(launcher, pids)) or set(pids) <= seen,
        what=f"/healthz from both {pids} (seen {seen})",
    )

    # and: a visitor on one process chats with an agent on the other
    asyncio.run(_cross_process_chat(launcher, pids, chat))

    # when: one child dies, the launcher starts another in its place (after a back-off)
    os.kill(pids[0], signal.SIGKILL)
    pids = wait_until(
        lambda: (p := child_pids(launcher.log)) and len(p) == 3 and p[1:], what="a restart"
    )
    assert "restarting child 1 in 1 s" in launcher.log.read_text(errors="replace")
    seen.clear()
    wait_until(
        lambda: seen.add(healthz_owner(launcher, pids)) or set(pids) <= seen,
        what=f"/healthz from both {pids} (seen {seen})",
    )

    # when: SIGTERM to the launcher
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=WAIT_S) == 0

    # then: every child is gone
    wait_until(lambda: all(process_gone(pid) for pid in pids), what="children gone")
    log = launcher.log.read_text(errors="replace")
    for pid in pids:
        assert f"daphne pid {pid} exited with status 0" in log


async def _open(port: int, path: str, **extra: Any) -> tuple[ClientConnection, list[dict]]:
    ws = await ws_connect(
        f"ws://{HOST}:{port}{path}",
        host="127.0.0.1",
        port=port,
        origin=f"http://{HOST}:{port}",
        proxy=None,
        open_timeout=WAIT_S,
        **extra,
    )
    frames: list[dict[str, Any]] = []
    hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert hello["type"] == "hello", hello

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frames.append(json.loads(await ws.recv()))

    ws.reader = asyncio.ensure_future(read())  # type: ignore[attr-defined]
    return ws, frames


def _owner(ws: ClientConnection, port: int, pids: list[int]) -> int | None:
    return connection_owner(pids, server_port=port, client_port=ws.local_address[1])


async def _frame(frames: list[dict[str, Any]], predicate: Any) -> dict[str, Any]:
    return await wait_until_async(
        lambda: next((f for f in frames if predicate(f)), None),
        what="a frame (see the launcher's log)",
    )


async def _cross_process_chat(server: LiveServer, pids: list[int], chat: dict[str, Any]) -> None:
    port = server.port
    agent, agent_frames = await _open(
        port, "/ws/agent/", additional_headers={"Cookie": chat["cookie"]}
    )
    agent_pid = await wait_until_async(lambda: _owner(agent, port, pids), what="agent's child")
    # the kernel hands a new connection to whichever child accepts first: reconnect the
    # visitor until it lands on the other child
    visitor = visitor_frames = None
    for _attempt in range(200):
        visitor, visitor_frames = await _open(port, f"/ws/visitor/?token={quote(chat['token'])}")
        owner = await wait_until_async(
            lambda ws=visitor: _owner(ws, port, pids), what="visitor's child"
        )
        if owner != agent_pid:
            break
        await visitor.close()
        visitor = None
    assert visitor is not None, "every visitor socket landed on the agent's process"
    try:
        # the opening message routes the chat: the assignment reaches the agent's process
        await visitor.send(
            json.dumps({"type": "message.send", "client_msg_id": unique("c"), "content": "hi"})
        )
        assigned = await _frame(agent_frames, lambda f: f["type"] == "conversation.assigned")
        conversation_id = assigned["conversation"]["id"]
        # visitor (one child) → agent (the other child)
        text = unique("across processes ")
        await visitor.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": conversation_id,
                    "client_msg_id": unique("c"),
                    "content": text,
                }
            )
        )
        await _frame(
            agent_frames,
            lambda f: f["type"] == "message.new" and f["message"]["content"] == text,
        )
        reply = unique("reply ")
        await agent.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": conversation_id,
                    "client_msg_id": unique("c"),
                    "content": reply,
                }
            )
        )
        # agent → visitor
        await _frame(
            visitor_frames,
            lambda f: f["type"] == "message.new" and f["message"]["content"] == reply,
        )
    finally:
        for ws in (visitor, agent):
            await ws.close()
            await ws.reader  # type: ignore[attr-defined]


def test_serve_start_binds_a_free_port():
    # the launcher refuses a taken port instead of starting children that cannot listen
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError, match="in use"):
            bind_socket("127.0.0.1", taken.getsockname()[1])


def test_daphne_gives_a_websocket_handshake_30_s_unless_the_command_line_says_otherwise():
    # given the Procfile's command, and one that sets the timeout itself
    _args, default = parse_args(["-w", "1", "weiyu.asgi:application"])
    _args, given = parse_args(["--websocket_connect_timeout", "8", "weiyu.asgi:application"])
    # then daphne is told 30 s (its own 5 s refused most of a reconnect storm), or what was given
    assert default == ["--websocket_connect_timeout", "30", "weiyu.asgi:application"]
    assert given == ["--websocket_connect_timeout", "8", "weiyu.asgi:application"]
