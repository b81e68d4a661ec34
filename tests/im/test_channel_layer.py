"""The batching channel layer (weiyu/channel_layer.py) against the real Redis: every message
reaches its socket's channel, in order, a receiver that goes away mid-pop loses nothing
meant for the others, and with several Redis servers a socket learns that one it depends on
lost its keys."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from im.consumers import LAYER_ERRORS
from tests.conftest import unique
from tests.servers import PrivateRedis, free_port, free_ports
from tests.waits import WAIT_S, wait_until_async
from weiyu import channel_layer
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


EVENT = {
    "type": "message.new",
    "message": {"id": 5, "content": "你好 🙂", "meta": {}, "params": {}, "mentions": [], "n": 1.5},
}


@pytest.mark.asyncio
@pytest.mark.parametrize("one_step", [True, False])
async def test_group_send_many_reaches_each_socket_of_each_process_once(one_step, monkeypatch):
    # given two processes (layers) on one Redis: a member with a socket on each, another member
    # with two sockets on the first, a socket that is in two of the groups, and a non-member
    prefix = unique("layer")
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    first, second = (BatchingRedisChannelLayer(hosts=hosts, prefix=prefix) for _ in range(2))
    if not one_step:  # the two-script path, taken with several Redis servers
        monkeypatch.setattr(BatchingRedisChannelLayer, "_one_step_body", lambda self, m: None)
    alice_1, alice_2 = await first.new_channel(), await second.new_channel()
    bob_1, bob_2, stranger = [await first.new_channel() for _ in range(3)]
    try:
        await first.group_add("acme.u.1", alice_1)
        await second.group_add("acme.u.1", alice_2)
        for channel in (bob_1, bob_2):
            await first.group_add("acme.u.2", channel)
        await first.group_add("acme.u.1", bob_2)  # in both groups
        assert (first._one_step_body({"type": "weiyu.event"}) is not None) is one_step
        # when one event is sent to both members
        await first.group_send_many(
            ["acme.u.1", "acme.u.2"], {"type": "weiyu.event", "event": EVENT}
        )
        # then every socket of both gets it once, unchanged, and the stranger gets nothing
        for layer, channel in ((first, alice_1), (second, alice_2), (first, bob_1), (first, bob_2)):
            message = await asyncio.wait_for(layer.receive(channel), WAIT_S)
            assert message == {"type": "weiyu.event", "event": EVENT}
        for layer, channel in ((first, bob_2), (first, stranger)):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(layer.receive(channel), 0.3)
    finally:
        await first.flush()


@pytest.mark.asyncio
async def test_concurrent_publishes_arrive_once_each_in_the_order_published():
    # given five members with a socket each
    layer = _layer(capacity=1000)
    members = [await layer.new_channel() for _ in range(5)]
    try:
        for n, channel in enumerate(members):
            await layer.group_add(f"acme.u.{n}", channel)
        # when 200 events are published at once, each to two members (most go several per call)
        await asyncio.gather(
            *(
                layer.group_send_many(
                    [f"acme.u.{n % 5}", f"acme.u.{(n + 1) % 5}"], {"type": "weiyu.event", "n": n}
                )
                for n in range(200)
            )
        )
        # then each socket got exactly its 80, in the order they were published
        got = await asyncio.gather(*(_receive(layer, c, 80) for c in members))
        for i, numbers in enumerate(got):
            assert numbers == [n for n in range(200) if i in (n % 5, (n + 1) % 5)]
        for channel in members:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(layer.receive(channel), 0.3)
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_publishes_waiting_on_a_cancelled_flush_are_cancelled_not_left_waiting(
    monkeypatch,
):
    # given a flush task whose call hangs on its way to Redis, one publish in it and one queued
    layer = _layer()
    channel = await layer.new_channel()
    await layer.group_add("acme.u.cancel", channel)
    stuck = asyncio.Event()

    async def hanging(keys, args):
        await stuck.wait()

    real_call = layer._publish_call
    monkeypatch.setattr(layer, "_publish_call", hanging)
    loop = asyncio.get_running_loop()
    try:
        first = asyncio.ensure_future(
            layer.group_send_many(["acme.u.cancel"], {"type": "weiyu.event", "n": 1})
        )
        await wait_until_async(
            lambda: (o := layer._outboxes.get(loop)) is not None and len(o.inflight) == 1,
            what="the first publish on its way",
        )
        second = asyncio.ensure_future(
            layer.group_send_many(["acme.u.cancel"], {"type": "weiyu.event", "n": 2})
        )
        await wait_until_async(
            lambda: len(layer._outboxes[loop].pending) == 1, what="the second one queued"
        )
        # when the flush task is cancelled (as an event loop closing does)
        layer._outboxes[loop].task.cancel()
        # then both publishers are told at once instead of waiting for ever
        for publisher in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(publisher), WAIT_S)
        # and the next publish gets a new flush task and arrives
        monkeypatch.setattr(layer, "_publish_call", real_call)
        await layer.group_send_many(["acme.u.cancel"], {"type": "weiyu.event", "n": 3})
        assert await _receive(layer, channel, 1) == [3]
    finally:
        monkeypatch.setattr(layer, "_publish_call", real_call)
        await layer.flush()


@pytest.mark.asyncio
async def test_a_socket_learns_that_a_shard_it_depends_on_lost_its_keys(tmp_path):
    # given: a layer over two Redis servers, and a group whose membership lives on the second
    shards = [
        PrivateRedis(port=port, workdir=tmp_path / f"r{i}") for i, port in enumerate(free_ports(2))
    ]
    for shard in shards:
        shard.start()
    layer = BatchingRedisChannelLayer(
        hosts=[{"address": shard.url} for shard in shards], prefix=unique("shards")
    )
    layer.shard_watch().interval = 0.1
    group = next(g for g in (unique("acme.u.") for _ in range(100)) if layer.consistent_hash(g))
    channel = await layer.new_channel()
    watch = layer.shard_watch()
    shards_of_socket = watch.shards(group, channel)
    assert 1 in shards_of_socket
    await layer.group_add(group, channel)
    since = watch.snapshot()
    waiting = asyncio.ensure_future(watch.wait_changed(shards_of_socket, since))
    try:
        await asyncio.sleep(0.5)  # the watch has seen both servers up
        assert not waiting.done()
        # when: the second server dies and comes back empty (a restart without persistence)
        shards[1].stop()
        await wait_until_async(lambda: not watch.all_up(shards_of_socket), what="seen down")
        await asyncio.sleep(0.3)
        assert not waiting.done()  # not while it is down: the socket could not rejoin yet
        shards[1].start()
        # then: the socket is told, once the server answers again
        await asyncio.wait_for(waiting, WAIT_S)
        assert watch.all_up(shards_of_socket)
        assert watch.snapshot()[1] != since[1]
        assert watch.snapshot()[0] == since[0]
    finally:
        waiting.cancel()
        for shard in shards:
            shard.stop()


@pytest.mark.asyncio
async def test_many_joins_and_leaves_at_once_take_effect_in_few_round_trips(monkeypatch):
    # given one process's layer, counting its script calls to Redis (at most 100 changes per call)
    layer = _layer()
    calls = []
    real_connection = layer.connection

    class Counting:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            method = getattr(self.client, name)
            if name not in ("eval", "evalsha"):
                return method

            def counted(script, numkeys, *args):
                calls.append(numkeys)
                return method(script, numkeys, *args)

            return counted

    monkeypatch.setattr(layer, "connection", lambda index: Counting(real_connection(index)))
    monkeypatch.setattr(channel_layer, "GROUP_BATCH_MAX", 100)
    sockets = [await layer.new_channel() for _ in range(600)]
    groups = [f"acme.u.{n % 300}" for n in range(600)]
    try:
        # when 600 sockets join their members' groups at once, then every other one leaves
        await asyncio.gather(*(layer.group_add(g, c) for g, c in zip(groups, sockets, strict=True)))
        await asyncio.gather(
            *(layer.group_discard(g, c) for g, c in list(zip(groups, sockets, strict=True))[::2])
        )
        # then each group holds exactly the sockets that joined and did not leave
        redis = real_connection(0)
        for n in range(300):
            members = await redis.zrange(layer._group_key(f"acme.u.{n}"), 0, -1)
            assert sorted(m.decode() for m in members) == sorted(
                c
                for i, (g, c) in enumerate(zip(groups, sockets, strict=True))
                if i % 2 and n == i % 300
            )
        # and an event to every group reaches each of those sockets
        await layer.group_send_many(sorted(set(groups)), {"type": "weiyu.event", "n": 1})
        got = await asyncio.gather(*(_receive(layer, c, 1) for c in sockets[1::2]))
        assert got == [[1]] * 300
        # and the 900 changes took far fewer calls to Redis (1,500 round trips one by one)
        assert len(calls) - 1 <= 900 / 10  # the publish is one of the calls
        assert max(calls[:-1]) <= 100  # none longer than the bound
    finally:
        monkeypatch.setattr(layer, "connection", real_connection)
        await layer.flush()


@pytest.mark.asyncio
async def test_joins_while_redis_is_unreachable_all_fail_and_none_waits_for_ever():
    # given a layer whose Redis server is not there
    layer = BatchingRedisChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{free_port()}/0", "socket_connect_timeout": 1}],
        prefix=unique("layer"),
    )
    channel = await layer.new_channel()
    # when five sockets join at once: each is told of the failure
    results = await asyncio.wait_for(
        asyncio.gather(
            *(layer.group_add(f"acme.u.{n}", channel) for n in range(5)), return_exceptions=True
        ),
        WAIT_S,
    )
    assert all(isinstance(r, LAYER_ERRORS) for r in results), results
