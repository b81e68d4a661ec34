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
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from channels_redis.core import RedisChannelLayer


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
