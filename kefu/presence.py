"""Agents' open inbox tabs (and other staff's, for :mod:`org.alerts`), kept in Redis, so that an agent is available only while an inbox
of theirs is connected, and closing the last one ends that after a grace period (KF-3) — a
reload or a short network drop does not.

Each agent socket is a member of a sorted set ``<CHANNEL_PREFIX>:presence:<schema>:<user id>``
(``settings.REDIS_KEY_PREFIX``, ``weiyu`` unless ``CHANNEL_PREFIX`` says otherwise) scored with
the time it was last heard from (connect, and every ``ping`` the inbox sends each 25 s). A socket
is alive while its score is younger than :data:`ALIVE_S`; one whose process died without closing
simply stops being refreshed. The first socket sets ``AgentState.connected``
(:func:`kefu.services.agents.agent_connected`); :func:`kefu.services.agents.offline_scan` (the
service timers, every few seconds) clears it for agents whose sockets were all closed or silent
for ``AGENT_OFFLINE_GRACE_S`` (default 60 s), returns their open conversations to the queue, and
clears their record. A socket that pings after its record was cleared (a laptop waking up)
connects the agent again.
"""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache

from django.conf import settings

logger = logging.getLogger(__name__)

#: a socket not heard from for this long (s) is gone (the inbox pings every 25 s)
ALIVE_S = 70.0


def grace_s() -> float:
    """Seconds between the last tab closing and the agent going offline."""
    return float(os.environ.get("AGENT_OFFLINE_GRACE_S", "60"))


@lru_cache(maxsize=1)
def _redis():  # -> redis.Redis
    import redis  # the client is built on first use, in the process that needs it

    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, retry_on_timeout=True
    )


def _key(schema: str, user_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:presence:{schema}:{user_id}"


def socket_seen(*, schema: str, user_id: int, channel_name: str) -> bool:
    """An agent socket connected or pinged. Returns whether the socket was new to the record
    (False when Redis could not be reached)."""
    try:
        key = _key(schema, user_id)
        pipe = _redis().pipeline()
        now = time.time()
        pipe.zadd(key, {channel_name: now})
        # entries older than a day matter to nothing (people who are not agents are never
        # cleared by the scan: this keeps their record small)
        pipe.zremrangebyscore(key, "-inf", now - 24 * 3600)
        pipe.expire(key, 7 * 24 * 3600)
        added, _trimmed, _expire = pipe.execute()
    except Exception as exc:  # presence is best effort: Redis down must not break the socket
        logger.warning("agent presence not recorded: %s", exc)
        return False
    return bool(added)


def socket_closed(*, schema: str, user_id: int, channel_name: str) -> None:
    """An agent socket closed: it stays in the set with the closing time, marked closed, so the
    scan knows when the last one went."""
    try:
        key = _key(schema, user_id)
        pipe = _redis().pipeline()
        pipe.zrem(key, channel_name)
        pipe.zadd(key, {f"closed:{channel_name}": time.time()})
        pipe.execute()
    except Exception as exc:
        logger.warning("agent presence not recorded: %s", exc)


def last_seen(*, schema: str, user_id: int) -> tuple[bool, float | None]:
    """``(any socket alive, when the last one was last heard of or closed)``; ``(False, None)``
    for an agent with no record."""
    now = time.time()
    entries = _redis().zrange(_key(schema, user_id), 0, -1, withscores=True)
    if not entries:
        return False, None
    alive = any(
        not member.startswith(b"closed:") and now - score < ALIVE_S for member, score in entries
    )
    return alive, max(score for _member, score in entries)


def inbox_open(schema: str, user_id: int) -> bool:
    """Whether a (non-watching) inbox socket of the user is alive now, whatever their role: the
    check of :func:`org.alerts.presence_register` (no web push, no e-mail digest meanwhile).
    Raises ``redis.RedisError`` when Redis cannot be reached."""
    alive, _seen = last_seen(schema=schema, user_id=user_id)
    return alive


def grace_starts(*, schema: str, user_id: int) -> None:
    """Start the grace now for a connected agent with no record (Redis lost it): their live
    sockets add themselves back at their next ping, well within the grace."""
    _redis().zadd(_key(schema, user_id), {"closed:unknown": time.time()}, nx=True)


def forget(*, schema: str, user_id: int) -> None:
    """Clear an agent's record (after the service timers found them gone)."""
    _redis().delete(_key(schema, user_id))


def queue_length_changed(*, schema: str, workgroup_id: int, length: int) -> bool:
    """Whether a workgroup's queue length differs from the one last announced to its agents
    (and remember the new one). True when Redis cannot tell: better one event too many."""
    try:
        previous = _redis().set(
            f"{settings.REDIS_KEY_PREFIX}:queue-length:{schema}:{workgroup_id}",
            length,
            ex=24 * 3600,
            get=True,
        )
    except Exception:
        return True
    return previous is None or int(previous) != length
