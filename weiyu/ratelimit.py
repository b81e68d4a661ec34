"""Fixed-window rate limits counted in Redis, several at once in one round trip.

A check names one or more :class:`Limit` — ``(name, key, limit, window_s, message, cost)``, e.g.
"messages of visitor 42: at most 30 per 60 s, this one costs 1" (or the size of an upload in
bytes against a limit in bytes). One ``EVAL`` adds each cost to its limit's counter for the current window (clock-aligned:
``int(now // window_s)``); when one would pass its limit, every counter of the check is given
back and the check is refused, so a refused request never counts. Refused: :func:`check` and
:func:`acheck` raise :class:`weiyu.errors.RateLimitedError` with ``retry_after_s`` (seconds until
the window of the refusing limit ends) and the caller's message for that limit.

Keys are ``<REDIS_KEY_PREFIX>:rl:<name>:<key>:<window index>`` and expire with their window.
A limit of 0 or less is off (not checked). When Redis cannot be reached the check lets the request
through (logged): the limits protect the service, they must not take it down with Redis.

:func:`check` is for synchronous code (views, services); :func:`acheck` for the event loop
(websocket consumers), with one ``redis.asyncio`` client per event loop. :func:`apeek` reads the
counters without counting (the sign-in gate, :mod:`org.signin_gate`), :func:`peek` likewise for
synchronous code (failed API-key authentications, :mod:`org.apikeys`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.utils import translation
from redis.exceptions import NoScriptError, RedisError

from weiyu.errors import RateLimitedError
from weiyu.redislink import RedisLink, link_for_host

logger = logging.getLogger(__name__)

# KEYS: one counter per limit. ARGV: cost, limit and window (s) per key.
# Returns 0 when every counter stayed within its limit, else the 1-based index of the first limit
# passed (every increment of this call has been given back).
_SCRIPT = """
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 * i - 2])
  local value = redis.call('INCRBY', key, cost)
  if value == cost then
    redis.call('EXPIRE', key, tonumber(ARGV[3 * i]) + 5)
  end
  if value > tonumber(ARGV[3 * i - 1]) then
    for j = 1, i do
      redis.call('DECRBY', KEYS[j], tonumber(ARGV[3 * j - 2]))
    end
    return i
  end
end
return 0
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` (requests, or bytes when the cost is a size) per ``window_s`` seconds
    for ``key`` (a visitor, an address, a tenant…) under ``name``; ``message`` is what the user
    reads when refused (a callable so that it is translated at refusal time, in their
    language)."""

    name: str
    key: str
    limit: int
    window_s: int
    message: Callable[[], str]
    cost: int = 1


def _prepare(limits: Sequence[Limit], now: float) -> tuple[list[Limit], list[Any]]:
    active = [lim for lim in limits if lim.limit > 0 and lim.window_s > 0]
    keys = [
        f"{settings.REDIS_KEY_PREFIX}:rl:{lim.name}:{lim.key}:{int(now // lim.window_s)}"
        for lim in active
    ]
    args: list[Any] = []
    for lim in active:
        args += [lim.cost, lim.limit, lim.window_s]
    return active, [keys, args]


def _refused(limit: Limit, now: float) -> RateLimitedError:
    window_end = (int(now // limit.window_s) + 1) * limit.window_s
    return RateLimitedError(limit.message(), retry_after_s=int(window_end - now) + 1)


@lru_cache(maxsize=1)
def _client() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)


def _async_client() -> Any:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5
        )
        _async_clients[loop] = client
    return client


_async_links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisLink | None] = (
    weakref.WeakKeyDictionary()
)


def _async_link() -> RedisLink | None:
    """This event loop's pipelined connection for :func:`acheck` (a socket checks every frame:
    redis-py's per-command machinery cost more than the script, weiyu/redislink.py), or None
    when ``REDIS_URL`` needs redis-py (TLS)."""
    loop = asyncio.get_running_loop()
    if loop not in _async_links:
        _async_links[loop] = link_for_host(
            {"address": settings.REDIS_URL, "socket_timeout": 5, "socket_connect_timeout": 5}
        )
    return _async_links[loop]


def check(limits: Sequence[Limit]) -> float:
    """Count each limit's cost, or raise ``RateLimitedError`` counting nothing. One Redis round
    trip (none when every limit is off). Returns the time of the check, for :func:`give_back`."""
    now = time.time()
    active, (keys, args) = _prepare(limits, now)
    if not active:
        return now
    try:
        index = int(_client().eval(_SCRIPT, len(keys), *keys, *args))
    except RedisError as exc:
        logger.warning("rate limits not checked, Redis unreachable: %s", exc)
        return now
    if index:
        raise _refused(active[index - 1], now)
    return now


async def acheck(limits: Sequence[Limit], *, language: str | None = None) -> None:
    """:func:`check` for the event loop (one ``EVAL`` on the loop's own connection pool).
    ``language``: the refusal's message is written in it (only a refusal pays for the switch:
    a socket checks every frame)."""
    now = time.time()
    active, (keys, args) = _prepare(limits, now)
    if not active:
        return
    try:
        link = _async_link()
        if link is None:
            index = int(await _async_client().eval(_SCRIPT, len(keys), *keys, *args))
        else:
            try:
                index = int(await link.call("EVALSHA", _SCRIPT_SHA, len(keys), *keys, *args))
            except NoScriptError:  # a new or restarted Redis: EVAL caches it there
                index = int(await link.call("EVAL", _SCRIPT, len(keys), *keys, *args))
    except RedisError as exc:
        logger.warning("rate limits not checked, Redis unreachable: %s", exc)
        return
    if index:
        if language is None:
            raise _refused(active[index - 1], now)
        with translation.override(language):
            raise _refused(active[index - 1], now)


async def apeek(limits: Sequence[Limit], *, language: str | None = None) -> None:
    """Whether the next request would pass ``limits``, without counting it: raises
    ``RateLimitedError`` (with the refusing limit's wait and message, in ``language`` when
    given) when a counter of the current window already holds its limit, else returns. One
    ``MGET`` on the loop's connection pool. For a gate in front of the code that counts (the
    same limits, checked with :func:`check` further on): a flood past a budget is refused there
    without reaching it. Redis unreachable → let through (logged), as :func:`acheck`."""
    now = time.time()
    active, (keys, _args) = _prepare(limits, now)
    if not active:
        return
    try:
        values = await _async_client().mget(keys)
    except RedisError as exc:
        logger.warning("rate limits not peeked, Redis unreachable: %s", exc)
        return
    for lim, value in zip(active, values, strict=True):
        if value is not None and int(value) + lim.cost > lim.limit:
            if language is None:
                raise _refused(lim, now)
            with translation.override(language):
                raise _refused(lim, now)


def peek(limits: Sequence[Limit]) -> None:
    """:func:`apeek` for synchronous code (middleware, DRF authentication): raises
    ``RateLimitedError`` when a counter of the current window already holds its limit, counting
    nothing. One ``MGET``; Redis unreachable → let through (logged)."""
    now = time.time()
    active, (keys, _args) = _prepare(limits, now)
    if not active:
        return
    try:
        values = _client().mget(keys)
    except RedisError as exc:
        logger.warning("rate limits not peeked, Redis unreachable: %s", exc)
        return
    for lim, value in zip(active, values, strict=True):
        if value is not None and int(value) + lim.cost > lim.limit:
            raise _refused(lim, now)


def give_back(limits: Sequence[Limit], *, at: float) -> None:
    """Return their costs to the counters a successful :func:`check` made at time ``at`` (a
    request refused further on, e.g. an upload of a forbidden type, does not count)."""
    active, (keys, _args) = _prepare(limits, at)
    if not active:
        return
    try:
        pipe = _client().pipeline(transaction=False)
        for key, lim in zip(keys, active, strict=True):
            pipe.decrby(key, lim.cost)
        pipe.execute()
    except RedisError as exc:
        logger.warning("rate limit counters not given back: %s", exc)
