"""The batching channel layer (weiyu/channel_layer.py) against the real Redis: every message
reaches its socket's channel, in order, and a receiver that goes away mid-pop loses nothing
meant for the others."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from tests.conftest import unique
from tests.waits import WAIT_S
from weiyu.channel_layer import BatchingRedisChannelLayer


def _layer(**config) -> BatchingRedisChannelLayer:
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    return BatchingRedisChannelLayer(hosts=hosts, prefix=unique("layer"), **config)


async def _receive(layer, channel: str, count: int) -> list[int]:
    got = []
    for _ in range(count):
        message = await asyncio.wait_for(layer.receive(channel), WAIT_S)
        got.append(message["n"])
    return got


@pytest.mark.asyncio
async def test_every_socket_gets_its_messages_in_order():
    # given three sockets of one process, and a batch smaller than what is waiting
    layer = _layer(receive_batch=16, capacity=1000)
    channels = [await layer.new_channel() for _ in range(3)]
    try:
        # when 300 messages are sent to them, interleaved, and all three read at once
        for n in range(300):
            await layer.send(channels[n % 3], {"type": "weiyu.event", "n": n})
        results = await asyncio.gather(*(_receive(layer, c, 100) for c in channels))
        # then each got exactly its own, in the order sent
        for i, got in enumerate(results):
            assert got == list(range(i, 300, 3))
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_a_closed_socket_does_not_take_the_others_messages_with_it():
    layer = _layer()
    leaving, staying = await layer.new_channel(), await layer.new_channel()
    try:
        # given both sockets waiting; the first one's receive is the one popping from Redis
        first = asyncio.ensure_future(layer.receive(leaving))
        await asyncio.sleep(0.2)
        second = asyncio.ensure_future(layer.receive(staying))
        await asyncio.sleep(0.2)
        # when the first socket closes while the pop is in flight, then a message comes
        first.cancel()
        await asyncio.sleep(0.1)
        await layer.send(staying, {"type": "weiyu.event", "n": 1})
        # then the other socket still gets it
        message = await asyncio.wait_for(second, WAIT_S)
        assert message["n"] == 1
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_groups_reach_every_member_socket():
    layer = _layer()
    members = [await layer.new_channel() for _ in range(50)]
    try:
        for channel in members:
            await layer.group_add("acme.g.1", channel)
        await layer.group_send("acme.g.1", {"type": "weiyu.event", "n": 7})
        got = await asyncio.gather(*(_receive(layer, c, 1) for c in members))
        assert got == [[7]] * 50
    finally:
        await layer.flush()
