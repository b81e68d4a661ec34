"""The channel layer: channels-redis's, receiving a process's messages in batches.

channels-redis delivers every message for the sockets of one process through one Redis sorted
set, and pops it one message at a time: ``BZPOPMIN`` plus a backup-queue write and two clean-up
commands, four round trips per message, in series for the whole process. A message to a
500-member group thus cost about 2,000 round trips before the last socket had it
(docs/benchmarks.md, "Team chat").

:class:`BatchingRedisChannelLayer` drains that sorted set with one ``BZPOPMIN`` followed by one
``ZPOPMIN`` of up to :attr:`~BatchingRedisChannelLayer.receive_batch` more, and keeps what it
popped in memory until the process's receivers take it. The pop runs as a task of its own, so a
receiver that is cancelled (its socket closed) while the pop is in flight does not lose the
messages meant for the other sockets. Without the backup queue, a message popped by a process
that dies before handing it over is lost; the protocol already allows for that — the layer only
rings the doorbell and clients resynchronise from the database on reconnect (docs/protocol.md §3).

With several Redis servers (``CHANNEL_REDIS_URLS``, docs/deploy.md), :class:`ShardWatch` tells a
socket when a server holding its group or its process's queue was lost, so that it asks its
client to resynchronise once the server is back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
import weakref
from typing import Any

from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)


class BatchingRedisChannelLayer(RedisChannelLayer):
    """:class:`channels_redis.core.RedisChannelLayer` with batched process-channel receives.

    ``receive_batch`` (config key, default 200): most messages taken per round trip. Sending,
    groups, capacity and expiry are channels-redis's own.
    """

    def __init__(self, *args: Any, receive_batch: int = 200, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_batch = max(1, int(receive_batch))
        self._prefetched: collections.defaultdict[str, collections.deque[bytes]] = (
            collections.defaultdict(collections.deque)
        )
        self._popping: dict[str, asyncio.Task[None]] = {}
        self._watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ShardWatch] = (
            weakref.WeakKeyDictionary()
        )

    def shard_watch(self) -> ShardWatch:
        """This event loop's :class:`ShardWatch` over the layer's Redis servers."""
        loop = asyncio.get_running_loop()
        watch = self._watches.get(loop)
        if watch is None:
            watch = self._watches[loop] = ShardWatch(self)
        return watch

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        """One message of ``channel``: ``(channel name or list of names, message)``.

        Process channels (``…!``) are served from the batch popped earlier, popping the next
        batch when it is empty; other channels go to channels-redis unchanged. Raises what
        redis-py raises when Redis cannot be reached.
        """
        if "!" not in channel:
            return await super().receive_single(channel)
        queue = self._prefetched[channel]
        while not queue:
            task = self._popping.get(channel)
            if task is None or task.done():
                task = asyncio.ensure_future(self._pop_batch(channel))
                task.add_done_callback(_retrieve)
                self._popping[channel] = task
            # shielded: a cancelled receiver leaves the pop to finish for the other sockets
            await asyncio.shield(task)
        message = self.deserialize(queue.popleft())
        if "__asgi_channel__" in message:
            channel = message.pop("__asgi_channel__")
        return channel, message

    async def _pop_batch(self, channel: str) -> None:
        key = self.prefix + channel
        connection = self.connection(self.consistent_hash(channel))
        first = await connection.bzpopmin(key, timeout=self.brpop_timeout)
        if first is None:
            return
        batch = [first[1]]
        if self.receive_batch > 1:
            batch.extend(
                member for member, _score in await connection.zpopmin(key, self.receive_batch - 1)
            )
        self._prefetched[channel].extend(batch)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a pop's failure as seen when nobody awaited it (its receiver was cancelled); the
    next receive tries again and raises it if Redis is still unreachable."""
    if not task.cancelled():
        task.exception()


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
        self.timeout = max(interval, 2.0)
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
