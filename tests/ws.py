"""Websocket test helpers: connect through the real ASGI stack (tenant middleware included)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from channels.testing import WebsocketCommunicator

from tests.waits import WAIT_S
from weiyu.asgi import application


async def connect(
    path: str, host: str, *, cookie: bytes | None = None
) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Open a socket as a browser on ``host`` would; return it with its first frame."""
    headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await communicator.connect(timeout=WAIT_S)
    assert connected
    first = await communicator.receive_json_from(timeout=WAIT_S)
    return communicator, first


async def receive_until(
    communicator: WebsocketCommunicator, frame_type: str, timeout: float = WAIT_S
) -> dict[str, Any]:
    """Frames are read until one of ``frame_type`` arrives (others are dropped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no {frame_type} frame within {timeout}s"
        frame = await communicator.receive_json_from(timeout=remaining)
        if frame["type"] == frame_type:
            return frame


async def collect(communicator: WebsocketCommunicator, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every frame that arrives until the socket is quiet for ``quiet`` seconds."""
    frames = []
    # receive_nothing does not cancel the application on timeout (receive_json_from would)
    while not await communicator.receive_nothing(timeout=quiet):
        frames.append(await communicator.receive_json_from())
    return frames


async def collect_until(
    communicator: WebsocketCommunicator,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = WAIT_S,
    quiet: float = 0.3,
) -> list[dict[str, Any]]:
    """Frames read until ``done(frames)`` holds (failing after ``timeout`` s), plus whatever
    follows within ``quiet`` s — so a late duplicate would still be seen."""
    frames: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not done(frames):
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"gave up after {timeout}s with {[f['type'] for f in frames]}"
        frames.append(await communicator.receive_json_from(timeout=remaining))
    return frames + await collect(communicator, quiet=quiet)


def has_types(*types: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``done`` for :func:`collect_until`: every one of ``types`` has arrived."""
    return lambda frames: set(types) <= {f["type"] for f in frames}
