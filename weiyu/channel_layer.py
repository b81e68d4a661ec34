"""The channel layer: channels-redis's, receiving a process's messages in batches.

channels-redis delivers every message for the sockets of one process through one Redis sorted
set, and pops it one message at a time: ``BZPOPMIN`` plus a backup-queue write and two clean-up
commands, four round trips per message, in series for the whole process; and each waiting socket
races two new tasks for a lock or its buffer on every receive. A message to a 500-member group
thus cost about 2,000 round trips before the last socket had it (docs/benchmarks.md, "Team chat").

:class:`BatchingRedisChannelLayer` runs one *pump* task per process channel (while any socket of
the process receives): it drains the sorted set with one ``ZPOPMIN`` of up to
:attr:`~BatchingRedisChannelLayer.receive_batch` messages, and waits in ``BZPOPMIN`` only when
nothing was there (under load, one round trip per batch); it puts each message straight into the in-memory inbox of every socket it names; a socket's ``receive`` only waits on its inbox.
A socket that closes drops its inbox, never the messages meant for the other sockets. Without the
backup queue, a message popped by a process that dies before handing it over is lost; the protocol
already allows for that — the layer only rings the doorbell and clients resynchronise from the
database on reconnect (docs/protocol.md §3). When Redis cannot be reached the pump hands the error
to every waiting socket (``im.consumers.MemberConsumer.layer_receive`` then keeps the socket open,
retries and finally asks the client to resynchronise).

:meth:`BatchingRedisChannelLayer.group_send_many` sends one message to many groups (every member
of a conversation) in two round trips per Redis server, whatever the number of groups: one
script reads the groups' channels, one script queues the message once per receiving process
(channels-redis keeps all sockets of a process behind one key). ``group_send`` costs four round
trips per group, so a 500-member conversation took 2,000 (docs/benchmarks.md, "Team chat").
With one Redis server (the usual single-machine set-up) and channels-redis's default message
format, the two scripts are one (:data:`_PUBLISH_LUA`), and the messages a process publishes
while its previous call is on its way go together in its next: at most one round trip per
message, far fewer under load, each message serialised once rather than once per receiving
process.

Group joins and leaves (``group_add``, ``group_discard``: every socket at its connect and close)
go to Redis in batches too: the ones a process asks while its previous call to that server is on
its way go together in its next (:data:`_GROUP_OPS_LUA`), one round trip for a whole reconnect
storm's worth instead of two per join and one per leave, and never more than one such call per
server in flight (thousands at once overran the pool).

The publishes and the pump talk to Redis over :class:`weiyu.redislink.RedisLink` (one pipelined
connection per event loop, and one per pump since ``BZPOPMIN`` holds it), not through redis-py's
client, whose per-command machinery cost ~5 times the CPU (docs/benchmarks.md, "CPU per
message"); servers given by a TLS address keep redis-py.

With several Redis servers (``CHANNEL_REDIS_URLS``, docs/deploy.md), :class:`ShardWatch` tells a
socket when a server holding its group or its process's queue was lost, so that it asks its
client to resynchronise once the server is back.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import random
import time
import uuid
import weakref
from typing import Any

import msgpack
from channels_redis.core import RedisChannelLayer
from channels_redis.serializers import MsgPackSerializer
from redis.exceptions import NoScriptError

from weiyu.redislink import RedisLink, link_for_host

logger = logging.getLogger(__name__)

#: the members of every group key in KEYS (a flat list), after dropping those older than ARGV[1]
_CHANNELS_LUA = """
local out = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    local names = redis.call('ZRANGE', KEYS[i], 0, -1)
    for j = 1, #names do
        out[#out + 1] = names[j]
    end
end
return out
"""

#: queue ``ARGV[i]`` on ``KEYS[i]`` unless it holds ``ARGV[#KEYS + i]`` messages already, after
#: dropping the messages older than the expiry; returns how many keys were over capacity.
#: ARGV ends with the current time (s) and the expiry (s). channels-redis's group-send script plus
#: the expiry clean-up it sends in a pipeline before it.
_SEND_LUA = """
local over_capacity = 0
local now = tonumber(ARGV[#ARGV - 1])
local expiry = tonumber(ARGV[#ARGV])
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, math.floor(now) - expiry)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], ARGV[#ARGV - 1], ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

#: :data:`_CHANNELS_LUA` and :data:`_SEND_LUA` in one call, for a layer on one Redis server, for
#: one or more messages: for each, the live channels of its group keys, grouped by the process
#: queue that holds them (channels-redis's key: the prefix ARGV[2] and the channel name up to its
#: ``!``), and the message queued once per queue with the list of its channels in
#: ``__asgi_channel__``. The message is channels-redis's msgpack format, assembled here: Python
#: sends the random prefix (unique per message), the map's header byte counting one entry more
#: and the rest of the packed message as one string; the script appends ARGV[3] (the packed key
#: ``__asgi_channel__``) and the channel list packed by cmsgpack (an array of strings). ARGV[1]
#: the groups' cutoff, ARGV[4] the capacity, ARGV[5] the time (s), ARGV[6] the expiry (s); then
#: per message its number of group keys (taken in order from KEYS) and its string. The n-th
#: message is queued with the score ARGV[5] + n µs, so a process's queue pops the messages of
#: a call in order (and ARGV[5] is past the last score of the loop's previous call). Returns how
#: many queues were over capacity, over all messages.
_PUBLISH_LUA = """
local STEP = 0.000001
local capacity = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local expiry = tonumber(ARGV[6])
local over_capacity = 0
local k = 0
for a = 7, #ARGV, 2 do
    local queues, order, seen = {}, {}, {}
    for i = k + 1, k + tonumber(ARGV[a]) do
        redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
        local names = redis.call('ZRANGE', KEYS[i], 0, -1)
        for j = 1, #names do
            local name = names[j]
            if not seen[name] then
                seen[name] = true
                local bang = string.find(name, '!', 1, true)
                local key = ARGV[2] .. (bang and string.sub(name, 1, bang) or name)
                local list = queues[key]
                if not list then
                    list = {}
                    queues[key] = list
                    order[#order + 1] = key
                end
                list[#list + 1] = name
            end
        end
    end
    k = k + tonumber(ARGV[a])
    local head = ARGV[a + 1] .. ARGV[3]
    local score = now + (a - 7) / 2 * STEP
    for i = 1, #order do
        local key = order[i]
        redis.call('ZREMRANGEBYSCORE', key, 0, math.floor(now) - expiry)
        if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
            redis.call('ZADD', key, score, head .. cmsgpack.pack(queues[key]))
            redis.call('EXPIRE', key, expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
end
return over_capacity
"""
_CHANNEL_KEY = msgpack.packb("__asgi_channel__")
#: sent as ``EVALSHA``: the script's text goes to Redis once, not with every message
_PUBLISH_SHA = hashlib.sha1(_PUBLISH_LUA.encode(), usedforsecurity=False).hexdigest()


#: group joins and leaves of one process in one call: ARGV[1] the time (s), ARGV[2] the group
#: expiry (s), then per KEYS[i] the operation ``ARGV[1 + 2i]`` (``a``: add, ``d``: discard) and
#: the channel ``ARGV[2 + 2i]``, applied in order. channels-redis's ``group_add`` (``ZADD`` and
#: ``EXPIRE``, two round trips) and ``group_discard`` (``ZREM``, one), for many sockets at once.
_GROUP_OPS_LUA = """
local now = ARGV[1]
local expiry = tonumber(ARGV[2])
for i = 1, #KEYS do
    local channel = ARGV[2 + 2 * i]
    if ARGV[1 + 2 * i] == 'a' then
        redis.call('ZADD', KEYS[i], now, channel)
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        redis.call('ZREM', KEYS[i], channel)
    end
end
return #KEYS
"""
#: most group joins and leaves in one call
GROUP_BATCH_MAX = 1000
_GROUP_OPS_SHA = hashlib.sha1(_GROUP_OPS_LUA.encode(), usedforsecurity=False).hexdigest()


class BatchingRedisChannelLayer(RedisChannelLayer):
    """:class:`channels_redis.core.RedisChannelLayer` with batched process-channel receives.

    ``receive_batch`` (config key, default 200): most messages taken per round trip. Sending,
    groups, capacity and expiry are channels-redis's own.
    """

    def __init__(self, *args: Any, receive_batch: int = 200, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_batch = max(1, int(receive_batch))
        #: local channel name → its socket's inbox (messages, or a _Failure)
        self._inboxes: dict[str, asyncio.Queue[Any]] = {}
        #: (event loop, process channel) → its pump task
        self._pumps: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task[None]] = {}
        self._watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ShardWatch] = (
            weakref.WeakKeyDictionary()
        )
        #: event loop → the messages waiting for its next publish call (:meth:`_publish`)
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )
        #: (event loop, server index) → the group joins and leaves waiting for its next call
        self._group_batches: dict[tuple[asyncio.AbstractEventLoop, int], _GroupOps] = {}
        #: event loop → its own Redis connections (:meth:`_link`)
        self._links: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[int, str], RedisLink | None]
        ] = weakref.WeakKeyDictionary()

    def shard_watch(self) -> ShardWatch:
        """This event loop's :class:`ShardWatch` over the layer's Redis servers."""
        loop = asyncio.get_running_loop()
        watch = self._watches.get(loop)
        if watch is None:
            watch = self._watches[loop] = ShardWatch(self)
        return watch

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new channel name of this process (``specific.<process>!<id>``), with its inbox ready
        so that nothing sent to it after this returns is missed."""
        name = await super().new_channel(prefix)
        self._inboxes[name] = asyncio.Queue()
        return name

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel``. Channels of this process (``…!…``) wait on their
        inbox, filled by the process's pump; others go to channels-redis unchanged. Raises what
        redis-py raises when Redis cannot be reached; cancelling it (the socket closed) drops the
        channel's inbox."""
        if "!" not in channel:
            return await super().receive(channel)
        self.require_valid_channel_name(channel)
        inbox = self._inboxes.get(channel)
        if inbox is None:
            inbox = self._inboxes[channel] = asyncio.Queue()
        if inbox.empty():
            self._ensure_pump(self.non_local_name(channel))
        try:
            item = await inbox.get()
        except asyncio.CancelledError:
            self._inboxes.pop(channel, None)
            raise
        if isinstance(item, _Failure):
            raise item.error
        return item

    def _ensure_pump(self, process_channel: str) -> None:
        loop = asyncio.get_running_loop()
        key = (loop, process_channel)
        task = self._pumps.get(key)
        if task is None or task.done():
            for stale in [k for k, t in self._pumps.items() if t.done()]:
                del self._pumps[stale]
            self._pumps[key] = loop.create_task(self._pump(process_channel))

    async def _pump(self, process_channel: str) -> None:
        """Pop the process channel's messages in batches into the inboxes they name, while any
        inbox exists; on a Redis error, hand it to every inbox and stop (the next receive starts
        a new pump)."""
        key = self.prefix + process_channel
        batch_size = self.receive_batch
        index = self.consistent_hash(process_channel)
        # its own connection: BZPOPMIN holds it until a message comes
        link = self._link(index, "pump:" + process_channel)
        try:
            while self._inboxes:
                # what is waiting first, in one round trip; block only when nothing is
                if link is not None:
                    batch = (await link.call("ZPOPMIN", key, batch_size))[0::2]
                    if not batch:
                        first = await link.call(
                            "BZPOPMIN", key, self.brpop_timeout, block=self.brpop_timeout
                        )
                        if first is None:
                            continue
                        batch = [first[1]]
                else:
                    connection = self.connection(index)
                    batch = [member for member, _score in await connection.zpopmin(key, batch_size)]
                    if not batch:
                        first = await connection.bzpopmin(key, timeout=self.brpop_timeout)
                        if first is None:
                            continue
                        batch = [first[1]]
                for raw in batch:
                    self._deliver(self.deserialize(raw))
        except asyncio.CancelledError:
            if link is not None:  # a pop still waiting in Redis must not take a message
                link.close()
            raise
        except Exception as exc:
            failure = _Failure(exc)
            for inbox in self._inboxes.values():
                inbox.put_nowait(failure)

    def _deliver(self, message: dict[str, Any]) -> None:
        names = message.pop("__asgi_channel__", None)
        for name in names if isinstance(names, list) else [names]:
            inbox = self._inboxes.get(name)
            if inbox is not None:  # else its socket has closed
                inbox.put_nowait(message)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (channels-redis's ``group_add``), batched with the other
        joins and leaves of this process (:meth:`_group_op`). Raises ``TypeError`` for a bad
        name, what redis-py raises when Redis cannot be reached."""
        await self._group_op(group, channel, b"a")

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is there, batched as :meth:`group_add`."""
        await self._group_op(group, channel, b"d")

    async def _group_op(self, group: str, channel: str, op: bytes) -> None:
        """Queue one join or leave for the group's Redis server and wait until it is done.

        While a call to that server is on its way, the operations of every other socket of the
        process wait together for the next one (:data:`_GROUP_OPS_LUA`: one round trip for all,
        applied in the order asked). A reconnect storm closed and opened thousands of sockets
        at once, each with its own round trips (two per join), and overran the pool (256
        connections; redis-py refuses past it) — docs/benchmarks.md, "Connections". Now a
        process has at most one such call in flight per server. Every operation of a failed
        call raises its error."""
        self.require_valid_group_name(group)  # raise TypeError when they are not
        self.require_valid_channel_name(channel)
        index = self.consistent_hash(group)
        loop = asyncio.get_running_loop()
        batch = self._group_batches.get((loop, index))
        if batch is None:
            for stale in [k for k in self._group_batches if k[0].is_closed()]:
                del self._group_batches[stale]
            batch = self._group_batches[(loop, index)] = _GroupOps()
        done = loop.create_future()
        batch.pending.append((self._group_key(group), op, channel, done))
        if batch.task is None or batch.task.done():
            batch.task = loop.create_task(self._group_flush(index, batch))
            batch.task.add_done_callback(functools.partial(_group_flush_done, batch))
        await done

    async def _group_flush(self, index: int, batch: _GroupOps) -> None:
        """Send the operations waiting in ``batch`` to server ``index``, one call of at most
        :data:`GROUP_BATCH_MAX` at a time, until none waits."""
        while batch.pending:
            # bounded, so that one script never holds Redis for long
            ops, batch.pending = batch.pending[:GROUP_BATCH_MAX], batch.pending[GROUP_BATCH_MAX:]
            batch.inflight = ops
            try:
                keys = [key for key, _op, _channel, _done in ops]
                args: list[Any] = [repr(time.time()), self.group_expiry]
                for _key, op, channel, _done in ops:
                    args += [op, channel]
                connection = self.connection(index)
                try:
                    await connection.evalsha(_GROUP_OPS_SHA, len(keys), *keys, *args)
                except NoScriptError:  # a new or restarted Redis: EVAL caches it there
                    await connection.eval(_GROUP_OPS_LUA, len(keys), *keys, *args)
            except Exception as exc:
                for *_rest, done in ops:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for *_rest, done in ops:
                if not done.done():
                    done.set_result(None)
        batch.inflight = []

    async def group_send_many(self, groups: list[str], message: dict[str, Any]) -> None:
        """Send ``message`` to every channel of every group in ``groups`` (a channel in several
        of them gets it once).

        Two round trips per Redis server holding any of the groups or receiving processes,
        tried on every server even when one fails; then raises the first failure (what redis-py
        raises when a server cannot be reached). A receiving process whose queue already holds
        ``capacity`` messages does not get this one (logged as a warning; its sockets catch up
        with ``sync``).
        """
        body = self._one_step_body(message)
        if body is not None:
            await self._publish(groups, body)
            return
        by_server: collections.defaultdict[int, list[str]] = collections.defaultdict(list)
        for group in dict.fromkeys(groups):
            self.require_valid_group_name(group)  # raises TypeError when it is not
            by_server[self.consistent_hash(group)].append(group)
        found = await asyncio.gather(
            *(self._group_channels(index, names) for index, names in by_server.items()),
            return_exceptions=True,
        )
        channels: dict[str, None] = {}
        errors: list[BaseException] = []
        for result in found:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                channels.update(dict.fromkeys(result))
        if channels:
            keys_by_server, key_message, key_capacity = self._map_channel_keys_to_connection(
                list(channels), message
            )
            sent = await asyncio.gather(
                *(
                    self._queue(index, keys, key_message, key_capacity)
                    for index, keys in keys_by_server.items()
                ),
                return_exceptions=True,
            )
            errors.extend(result for result in sent if isinstance(result, BaseException))
        if errors:
            raise errors[0]

    def _one_step_body(self, message: dict[str, Any]) -> bytes | None:
        """``message`` packed for :data:`_PUBLISH_LUA`, or None when the layer cannot publish
        in one step (several servers, encryption, per-channel capacities, another format, or a
        message of 15 keys or more, whose msgpack map header is not one byte)."""
        serializer = self._serializer
        if (
            self.ring_size != 1
            or self.channel_capacity
            or getattr(serializer, "crypter", None) is not None
            or not isinstance(serializer, MsgPackSerializer)
            or "__asgi_channel__" in message
        ):
            return None
        body = msgpack.packb(message)
        if not 0x80 <= body[0] < 0x8F:  # a fixmap of at most 14 entries: one more still fits
            return None
        return body

    async def _publish(self, groups: list[str], body: bytes) -> None:
        """Queue a message packed by :meth:`_one_step_body` for every channel of ``groups``.

        The messages published in this process while the previous call was on its way go
        together in the next one (:data:`_PUBLISH_LUA`, one round trip for all of them, in the
        order they were published): under load the process pays one Redis call for many
        messages rather than one each. Raises what redis-py raises when Redis cannot be reached
        (every message of that call then fails)."""
        keys = []
        for group in dict.fromkeys(groups):
            self.require_valid_group_name(group)  # raises TypeError when it is not
            keys.append(self._group_key(group))
        length = self._serializer.random_prefix_length
        prefix = random.getrandbits(8 * length).to_bytes(length, "big") if length else b""
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox()
        done = loop.create_future()
        outbox.pending.append((keys, prefix + bytes([body[0] + 1]) + body[1:], done))
        if outbox.task is None or outbox.task.done():
            outbox.task = loop.create_task(self._flush(outbox))
            outbox.task.add_done_callback(functools.partial(_flush_done, outbox))
        await done

    async def _flush(self, outbox: _Outbox) -> None:
        """Send what waits in ``outbox``, one call at a time, until nothing does. If the task
        is cancelled (its event loop is closing) or stops on any other ``BaseException``, even
        before it started, :func:`_flush_done` cancels the publishes still waiting on it."""
        while outbox.pending:
            batch, outbox.pending = outbox.pending, []
            outbox.inflight = batch
            try:
                keys = [key for message_keys, _head, _done in batch for key in message_keys]
                # scores increase from call to call too, however close together they are
                now = max(time.time(), outbox.next_score)
                outbox.next_score = now + (len(batch) + 1) * 1e-6
                args: list[Any] = [
                    int(now) - self.group_expiry,
                    self.prefix,
                    _CHANNEL_KEY,
                    self.capacity,
                    repr(now),
                    self.expiry,
                ]
                for message_keys, head, _done in batch:
                    args += [len(message_keys), head]
                over = await self._publish_call(keys, args)
            except Exception as exc:
                for _keys, _head, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            if over:
                logger.warning("%d process queues over capacity: message dropped", over)
            for _keys, _head, done in batch:
                if not done.done():
                    done.set_result(None)
        outbox.inflight = []

    async def _publish_call(self, keys: list[str], args: list[Any]) -> int:
        """Run :data:`_PUBLISH_LUA` on the (one) server: ``EVALSHA``, or ``EVAL`` when Redis
        does not know the script yet (a new or restarted server; ``EVAL`` caches it there).
        Returns the script's reply; raises redis-py's errors."""
        link = self._link(0, "publish")
        if link is None:
            connection = self.connection(0)
            try:
                return await connection.evalsha(_PUBLISH_SHA, len(keys), *keys, *args)
            except NoScriptError:
                return await connection.eval(_PUBLISH_LUA, len(keys), *keys, *args)
        try:
            return await link.call("EVALSHA", _PUBLISH_SHA, len(keys), *keys, *args)
        except NoScriptError:
            return await link.call("EVAL", _PUBLISH_LUA, len(keys), *keys, *args)

    def _link(self, index: int, role: str) -> RedisLink | None:
        """This event loop's :class:`~weiyu.redislink.RedisLink` to server ``index`` for
        ``role`` (``publish``, or ``pump:<process channel>``), or None when that server is
        reached through redis-py only (``weiyu.redislink.link_for_host``)."""
        loop = asyncio.get_running_loop()
        links = self._links.get(loop)
        if links is None:
            links = self._links[loop] = {}
        key = (index, role)
        if key not in links:
            links[key] = link_for_host(self.hosts[index])
        return links[key]

    async def close_pools(self) -> None:
        """channels-redis's, and this event loop's own connections (:meth:`_link`)."""
        await super().close_pools()
        loop = asyncio.get_running_loop()
        for link in (self._links.pop(loop, None) or {}).values():
            if link is not None:
                link.close()

    async def _group_channels(self, index: int, groups: list[str]) -> list[str]:
        """The live channels of ``groups`` (all on server ``index``), expired ones dropped: one
        script, one flat reply (a pipeline would parse two replies per group)."""
        cutoff = int(time.time()) - self.group_expiry
        keys = [self._group_key(group) for group in groups]
        names = await self.connection(index).eval(_CHANNELS_LUA, len(keys), *keys, cutoff)
        return [name.decode("utf8") for name in names]

    async def _queue(
        self,
        index: int,
        keys: list[str],
        key_message: dict[str, bytes],
        key_capacity: dict[str, int],
    ) -> None:
        args = [key_message[key] for key in keys] + [key_capacity[key] for key in keys]
        args += [time.time(), self.expiry]
        over = await self.connection(index).eval(_SEND_LUA, len(keys), *keys, *args)
        if over:
            logger.warning(
                "%d of %d process queues over capacity: message dropped", over, len(keys)
            )


class _Outbox:
    """Messages of one event loop waiting for the next one-step publish call."""

    __slots__ = ("inflight", "next_score", "pending", "task")

    def __init__(self) -> None:
        self.pending: list[tuple[list[str], bytes, asyncio.Future[None]]] = []
        #: the messages of the call on its way (cancelled with the rest if the task is)
        self.inflight: list[tuple[list[str], bytes, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        #: the least score the next call may use (its messages come after the last call's)
        self.next_score = 0.0


def _flush_done(outbox: _Outbox, task: asyncio.Task[None]) -> None:
    """A flush task ended: cancel what it left waiting — the call it had on its way, and what
    was queued for it unless a newer task took that over — so no publisher waits for ever.
    Nothing is left after a normal end."""
    stale = outbox.inflight
    outbox.inflight = []
    if outbox.task is task:
        stale = [*stale, *outbox.pending]
        outbox.pending = []
    for _keys, _head, done in stale:
        if not done.done():
            done.cancel()


class _GroupOps:
    """Group joins and leaves of one event loop for one Redis server, waiting for the next
    call (:meth:`BatchingRedisChannelLayer._group_op`): (group key, ``a``/``d``, channel,
    future)."""

    __slots__ = ("inflight", "pending", "task")

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes, str, asyncio.Future[None]]] = []
        self.inflight: list[tuple[str, bytes, str, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None


def _group_flush_done(batch: _GroupOps, task: asyncio.Task[None]) -> None:
    """A group flush task ended: cancel what it left waiting (see :func:`_flush_done`)."""
    stale = batch.inflight
    batch.inflight = []
    if batch.task is task:
        stale = [*stale, *batch.pending]
        batch.pending = []
    for *_rest, done in stale:
        if not done.done():
            done.cancel()


class _Failure:
    """An error of the pump, queued for each waiting socket."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ShardWatch:
    """Which of the layer's Redis servers are up, and which lost their keys, seen by one process.

    channels-redis keeps a socket's group membership on the server its group name hashes to and
    the process's queue on the server its channel prefix hashes to. A socket whose process queue
    lives on a server that goes away notices (its receive fails), but one whose *group* lives
    there does not: publishes to it fail, and a server that comes back empty (a restart without
    persistence, a promoted replica that lagged) has forgotten the membership, so the socket
    would get nothing live until it happened to reconnect.

    One task per process and event loop checks every server each :attr:`interval` seconds (one
    Lua call: set a marker key unless present, read it back). A server gets a new *generation*
    when a check fails after one succeeded, and when its marker changed (it lost its keys). A
    socket notes the generations when it joins (:meth:`snapshot`) and waits in
    :meth:`wait_changed` until a server it depends on moved to a new generation and is up again;
    then it closes ``4503`` and the client reconnects and ``sync``s (docs/protocol.md §3). The
    task runs only while some socket waits.
    """

    MARKER_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"

    def __init__(self, layer: RedisChannelLayer, *, interval: float = 1.0) -> None:
        self.layer = layer
        self.interval = interval
        # a check answered late is not a lost server: publishes wait for Redis up to the
        # connection's read timeout, so only a check failing within that counts as down (a
        # shorter bound would close every socket of the process whenever the machine is busy)
        timeouts = [
            host.get("socket_timeout")
            for host in getattr(layer, "hosts", [])
            if isinstance(host, dict)
        ]
        self.timeout = max([interval, 2.0] + [t for t in timeouts if t])
        size = layer.ring_size
        self.up = [True] * size
        self.generation = [0] * size
        self.marker: list[bytes | None] = [None] * size
        self.waiters = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._token = uuid.uuid4().hex.encode()

    def shards(self, group: str, channel: str) -> tuple[int, ...]:
        """Indexes of the servers holding ``group``'s membership and ``channel``'s queue."""
        return tuple(
            sorted({self.layer.consistent_hash(group), self.layer.consistent_hash(_queue(channel))})
        )

    def snapshot(self) -> tuple[int, ...]:
        """The current generation of every server (pass it to :meth:`wait_changed`)."""
        return tuple(self.generation)

    def all_up(self, shards: tuple[int, ...]) -> bool:
        """True when the last check of each of ``shards`` succeeded."""
        return all(self.up[i] for i in shards)

    async def wait_changed(self, shards: tuple[int, ...], since: tuple[int, ...]) -> None:
        """Return once one of ``shards`` moved past its generation in ``since`` (it was
        unreachable or lost its keys) and all of them answer again. Cancel to stop waiting."""
        self.waiters += 1
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        try:
            while not (any(self.generation[i] != since[i] for i in shards) and self.all_up(shards)):
                await self._changed.wait()
        finally:
            self.waiters -= 1

    async def _run(self) -> None:
        while self.waiters:
            for index in range(len(self.up)):
                await self._check(index)
            await asyncio.sleep(self.interval)

    async def _check(self, index: int) -> None:
        key = f"{self.layer.prefix}:shard-marker"
        try:
            connection = self.layer.connection(index)
            marker = await asyncio.wait_for(
                connection.eval(self.MARKER_SCRIPT, 1, key, self._token), self.timeout
            )
        except Exception:  # unreachable, refused, timed out: all the same to a socket
            if self.up[index]:
                self.up[index] = False
                self.generation[index] += 1
                logger.warning("channel layer: Redis server %d unreachable", index)
                self._notify()
            return
        lost = self.marker[index] is not None and marker != self.marker[index]
        self.marker[index] = marker
        back = not self.up[index]
        if lost:
            self.generation[index] += 1
            logger.warning("channel layer: Redis server %d lost its keys", index)
        if back:
            self.up[index] = True
            logger.warning("channel layer: Redis server %d answers again", index)
        if lost or back:
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _queue(channel: str) -> str:
    """The part of a channel name channels-redis hashes to pick its server (``specific.ab!``)."""
    return channel.split("!", 1)[0] + "!" if "!" in channel else channel
