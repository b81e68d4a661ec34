"""A socket's dispatch loop (im.consumers._dispatch_many): every message of every source reaches
the handler, one at a time, in the order each source produced them; a source is read again only
once its message was dispatched; when the handler stops the socket the sources still waiting are
cancelled."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import StopConsumer

from im.consumers import _dispatch_many
from tests.waits import WAIT_S


@pytest.mark.asyncio
async def test_every_message_is_dispatched_once_in_order_then_the_sources_are_cancelled():
    # given two sources (the client's frames, the channel layer) fed from queues
    frames: asyncio.Queue[dict] = asyncio.Queue()
    events: asyncio.Queue[dict] = asyncio.Queue()
    watch_cancelled = asyncio.Event()

    async def watch() -> dict:
        try:
            await asyncio.Future()
        finally:
            watch_cancelled.set()
        return {}

    seen: list[tuple[str, int]] = []
    busy = False

    async def dispatch(message: dict) -> None:
        nonlocal busy
        assert not busy  # one message at a time
        busy = True
        await asyncio.sleep(0)
        busy = False
        if message["type"] == "stop":
            raise StopConsumer
        seen.append((message["type"], message["n"]))

    for n in range(50):
        frames.put_nowait({"type": "frame", "n": n})
        events.put_nowait({"type": "event", "n": n})
    frames.put_nowait({"type": "stop"})
    # when the loop runs until the handler stops it
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(_dispatch_many([frames.get, events.get, watch], dispatch), WAIT_S)
    # then each source's messages came in their order, and the waiting source was cancelled
    assert [n for kind, n in seen if kind == "frame"] == list(range(50))
    assert [n for kind, n in seen if kind == "event"] == sorted(
        n for kind, n in seen if kind == "event"
    )
    assert watch_cancelled.is_set()


@pytest.mark.asyncio
async def test_a_failing_source_stops_the_loop_with_its_error():
    async def broken() -> dict:
        raise OSError("gone")

    async def idle() -> dict:
        await asyncio.Future()
        return {}

    async def dispatch(message: dict) -> None:
        raise AssertionError("nothing to dispatch")

    with pytest.raises(OSError, match="gone"):
        await asyncio.wait_for(_dispatch_many([idle, broken], dispatch), WAIT_S)


@pytest.mark.asyncio
async def test_a_source_is_read_again_only_once_its_message_was_dispatched():
    # given a source that always has a message ready, and counts how often it was read
    reads = 0

    async def frames() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "frame", "n": reads}

    reads_seen: list[int] = []

    async def dispatch(message: dict) -> None:
        # let every other task run: a reader that did not wait for this dispatch would read on
        for _ in range(5):
            await asyncio.sleep(0)
        reads_seen.append(reads)
        if message["n"] == 10:
            raise StopConsumer

    # when ten messages are dispatched
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(_dispatch_many([frames], dispatch), WAIT_S)
    # then during each dispatch the source had been read once per message so far, not ahead
    assert reads_seen == list(range(1, 11))
