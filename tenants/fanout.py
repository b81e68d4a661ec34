"""Per-tenant beat work, fanned out in chunks and only to the tenants with something to do.

The beat tasks that visit every tenant (SLA scan, service timers, queue dispatch, statistics,
retention…) used to send one Celery task per active tenant per pass: at 1,000 tenants the 5 s
service timers alone are 200 tasks a second, each entering a schema that has nothing to do
(docs/benchmarks.md, "Beat fan-out"). Here:

- :func:`fanout` lists the active tenants in one query on the public schema and sends one
  :func:`fanout_chunk_task` per ``settings.WEIYU_FANOUT_CHUNK`` tenants (50); the chunk runs the
  per-tenant task's body for each of them in turn on the worker's one connection (one
  ``SET search_path`` per tenant, no new connection).
- With a ``kind`` (``"sla"``, ``"timers"``), only the tenants in the Redis set of that kind are
  visited: the *live* tenants. A service that creates work for a scan (an SLA clock, a
  conversation, a transfer, a scheduled message, a connected agent) calls :func:`live_mark`
  (the set is added to once its transaction commits). Each mark carries a new number (a sorted
  set's score); the per-tenant scan notes its tenant's number *before* it looks
  (:func:`live_seen`) and, when no work is left, takes the tenant out only if nobody marked it
  meanwhile (:func:`live_done`). A mark made during a scan is never lost, and a scan that dies
  half-way (a killed worker) leaves the tenant in the set for the next pass. An idle tenant costs
  no query of its own.
- Once per ``settings.WEIYU_FANOUT_SWEEP_S`` (300 s) per kind, and whenever Redis cannot be read,
  the pass visits every active tenant (a *sweep*): work created without a mark, or marks lost with
  Redis, is found within a sweep.
- Passes of one task never pile up: while a pass's chunks are still queued or running, the
  beat's next call of the same task (and arguments) sends nothing (:func:`pass_start`). Before,
  a pass slower than its interval (a sweep of 250 tenants took 27 s against the timers' 5 s,
  docs/benchmarks.md) queued a whole pass more every interval, and new work waited behind all of
  them: the wait grew without end. Now a slow pass delays the next by what it overruns, no more.
  A pass whose chunks show no progress (a chunk starting, a tenant done) for
  ``settings.WEIYU_FANOUT_PASS_STALE_S`` (30 s: a killed worker, a purged queue) no longer holds
  the next one back.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from celery import current_app, shared_task
from django.conf import settings
from django.db import connection, transaction

from tenants.models import Tenant

logger = logging.getLogger(__name__)

#: a tenant's turn in a chunk taking this long (s) is logged, with the task's name
SLOW_TENANT_S = 2.0

#: the kinds of live work that have a tenant set
KINDS = frozenset({"sla", "timers"})


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def _key(kind: str, part: str = "live") -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of live work: {kind!r}")
    return f"{settings.REDIS_KEY_PREFIX}:fanout:{part}:{kind}"


# KEYS: the live set, its mark counter. ARGV: the schema, "1" to renew a mark already there.
# A new number for the mark (kept as it was when not renewed).
_MARK_LUA = """
if ARGV[2] ~= '1' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], n, ARGV[1])
return n
"""
# KEYS: the live set. ARGV: the schema, the number a scan saw. Removes it only if unchanged.
_DONE_LUA = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


# KEYS: the pass key. ARGV: the pass's id, its chunks, seconds it may go without progress.
# 1 when the pass may start (no other pass of the task is under way), else 0.
_ROUND_START_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'left', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: the pass key. ARGV: the pass's id, -1 (a chunk done) or 0 (a chunk started), the seconds.
# The chunks left; -1 when the key belongs to another pass (this one was given up as stale).
_ROUND_PROGRESS_LUA = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return -1
end
local left = redis.call('HINCRBY', KEYS[1], 'left', tonumber(ARGV[2]))
if left <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return left
"""


def live_add(kind: str, schema: str, *, renew: bool = True) -> None:
    """Put ``schema`` in the set of tenants with live work of ``kind`` now, with a new mark
    number; ``renew=False`` (a scan keeping a tenant with work left) keeps the number it has, so
    that passes still serve the most recently marked tenants first (:func:`due_schemas`). A
    failure is logged: the next sweep finds the tenant. Raises ``ValueError`` for an unknown
    kind."""
    key = _key(kind)
    try:
        _redis().eval(_MARK_LUA, 2, key, _key(kind, "marks"), schema, "1" if renew else "0")
    except Exception as exc:  # Redis down: the sweep covers it
        logger.warning("live %s mark of %s lost: %s", kind, schema, exc)


def live_seen(kind: str, schema: str) -> float | None:
    """The mark number of ``schema`` in the set of ``kind`` (None: not marked, or Redis
    unreadable), for a scan about to look at it (:func:`live_done` after)."""
    try:
        return _redis().zscore(_key(kind), schema)
    except Exception as exc:
        logger.warning("live %s read of %s failed: %s", kind, schema, exc)
        return None


def live_done(kind: str, schema: str, seen: float | None) -> None:
    """A scan of ``schema`` found no work of ``kind`` left: take it out of the set unless it was
    marked again since the scan saw ``seen`` (:func:`live_seen`)."""
    if seen is None:
        return
    try:
        _redis().eval(_DONE_LUA, 1, _key(kind), schema, repr(seen))
    except Exception as exc:
        logger.warning("live %s clear of %s failed: %s", kind, schema, exc)


def live_clear(kind: str, schema: str) -> None:
    """Take ``schema`` out of the set of ``kind`` whatever its mark (operators, tests)."""
    try:
        _redis().zrem(_key(kind), schema)
    except Exception as exc:
        logger.warning("live %s clear of %s failed: %s", kind, schema, exc)


def live_mark(kind: str) -> None:
    """The current tenant has (new) work of ``kind``: add it to the set once the current
    transaction commits (at once outside one). Call it where the work is created."""
    schema = connection.schema_name
    if schema != settings.PUBLIC_SCHEMA_NAME:
        transaction.on_commit(lambda: live_add(kind, schema))


def active_schemas() -> list[str]:
    """The schemas of the active tenants, in one query on the public schema."""
    return list(
        Tenant.objects.filter(is_active=True)
        .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )


def due_schemas(kind: str | None) -> tuple[list[str], bool]:
    """``(schemas, sweep)``: the active tenants a pass of ``kind`` visits, and whether it is a
    sweep (all of them: no kind, the first pass of a ``WEIYU_FANOUT_SWEEP_S`` period, or Redis
    unreadable). Else only those in the kind's live set. Live tenants come first, the most
    recently marked first (new work is served before a long sweep or a slow tenant's scan)."""
    schemas = active_schemas()
    if kind is None:
        return schemas, True
    try:
        client = _redis()
        marked = [member.decode() for member in client.zrevrange(_key(kind), 0, -1)]
        sweep = bool(
            client.set(
                _key(kind, "sweep"), "1", nx=True, ex=max(1, int(settings.WEIYU_FANOUT_SWEEP_S))
            )
        )
    except Exception as exc:
        logger.warning("live %s set unreadable, visiting every tenant: %s", kind, exc)
        return schemas, True
    active = set(schemas)
    live = [schema for schema in marked if schema in active]
    if not sweep:
        return live, False
    first = set(live)
    return live + [schema for schema in schemas if schema not in first], True


def pass_key_for(task_name: str, args: list | tuple = ()) -> str:
    """The Redis key of the pass under way of ``task_name`` with ``args`` on the queue its chunks
    go to (Celery's default queue, ``CELERY_QUEUE``): a hash of the pass's ``id`` and the chunks
    ``left``. Workers of another queue (another deployment on the same Redis) have their own."""
    suffix = f":{json.dumps(list(args), separators=(',', ':'))}" if args else ""
    queue = current_app.conf.task_default_queue
    return f"{settings.REDIS_KEY_PREFIX}:fanout:pass:{queue}:{task_name}{suffix}"


def _stale_s() -> int:
    return max(1, int(settings.WEIYU_FANOUT_PASS_STALE_S))


def pass_start(key: str, pass_id: str, chunks: int) -> bool:
    """Claim ``key`` for a pass of ``chunks`` chunks: False while another pass of it is under way
    (chunks of it queued or running, with progress within ``WEIYU_FANOUT_PASS_STALE_S``). True
    when Redis cannot be read: passes then run as beat sends them."""
    try:
        return bool(_redis().eval(_ROUND_START_LUA, 1, key, pass_id, chunks, _stale_s()))
    except Exception as exc:
        logger.warning("pass %s not recorded: %s", key, exc)
        return True


def pass_progress(key: str, pass_id: str, *, done: bool) -> None:
    """A chunk of the pass ``pass_id`` started or finished a tenant (``done=False``: the pass is
    alive) or ended (one chunk fewer left; the pass is over at none). Failures are logged: the
    pass key then expires ``WEIYU_FANOUT_PASS_STALE_S`` after its last progress."""
    try:
        _redis().eval(_ROUND_PROGRESS_LUA, 1, key, pass_id, -1 if done else 0, _stale_s())
    except Exception as exc:
        logger.warning("pass %s progress not recorded: %s", key, exc)


def fanout(task_name: str, *, kind: str | None = None, args: tuple = ()) -> int:
    """Run the per-tenant task ``task_name`` (called as ``task(schema, *args)``) for the tenants
    of :func:`due_schemas`, one :func:`fanout_chunk_task` per ``WEIYU_FANOUT_CHUNK`` of them.
    Sends nothing while the previous pass of ``task_name`` with the same ``args`` is still under
    way (:func:`pass_start`). Returns how many tenants were sent (0 for a pass held back)."""
    key = pass_key_for(task_name, args)
    try:
        if _redis().exists(key):  # before the tenant query: a held-back pass costs one command
            logger.info("%s: the previous pass is still under way; this one is skipped", task_name)
            return 0
    except Exception as exc:
        logger.warning("pass %s unreadable: %s", key, exc)
    schemas, _sweep = due_schemas(kind)
    size = max(1, int(settings.WEIYU_FANOUT_CHUNK))
    chunks = [schemas[start : start + size] for start in range(0, len(schemas), size)]
    if not chunks:
        return 0
    pass_id = uuid.uuid4().hex
    if not pass_start(key, pass_id, len(chunks)):
        logger.info("%s: the previous pass is still under way; this one is skipped", task_name)
        return 0
    for chunk in chunks:
        fanout_chunk_task.delay(task_name, chunk, list(args), pass_key=key, pass_id=pass_id)
    return len(schemas)


def chunk_run(
    task_name: str,
    schemas: list[str],
    args: list | tuple = (),
    progress: Callable[[], None] | None = None,
) -> int:
    """Run the body of the registered task ``task_name`` for each schema in turn, in this
    process (the chunk task's body); a tenant that fails is logged and the others go on. While
    it runs, no statement waits longer than ``WEIYU_FANOUT_LOCK_TIMEOUT_S`` (5 s) for a lock: a
    tenant whose rows someone holds fails this pass (and is visited again by the next) instead
    of holding up every tenant after it in the chunk. ``progress`` is called after each
    tenant's turn (the pass is alive: :func:`pass_progress`). Returns how many ran without error.
    Raises ``ImportError`` or ``KeyError`` for an unknown task (names are
    ``<module>.<function>``)."""
    if task_name not in current_app.tasks:  # a process that has not imported it yet
        importlib.import_module(task_name.rpartition(".")[0])
    task = current_app.tasks[task_name]
    timeout_ms = max(1, int(float(settings.WEIYU_FANOUT_LOCK_TIMEOUT_S) * 1000))
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{timeout_ms}ms"])
    done = 0
    try:
        for schema in schemas:
            started = time.monotonic()
            try:
                task.run(schema, *args)
                done += 1
            except Exception:
                logger.exception("%s of %s failed", task_name, schema)
            elapsed = time.monotonic() - started
            if elapsed >= SLOW_TENANT_S:
                logger.warning("%s of %s took %.1f s", task_name, schema, elapsed)
            if progress is not None:
                progress()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    return done


# Defined here so the apps' beat tasks call it without importing tenants.tasks (which re-exports
# it under this name).
@shared_task(name="tenants.tasks.fanout_chunk_task")
def fanout_chunk_task(
    task_name: str, schemas: list[str], args: list, pass_key: str = "", pass_id: str = ""
) -> int:
    """One chunk of a beat pass (:func:`chunk_run`) of the pass ``pass_id`` recorded at
    ``pass_key`` (:func:`pass_progress`; empty: a chunk sent on its own). Returns how many
    tenants ran."""
    if not pass_key:
        return chunk_run(task_name, schemas, args)

    def alive() -> None:
        pass_progress(pass_key, pass_id, done=False)

    alive()
    try:
        return chunk_run(task_name, schemas, args, progress=alive)
    finally:
        pass_progress(pass_key, pass_id, done=True)
