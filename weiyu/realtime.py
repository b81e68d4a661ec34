"""The one place realtime events leave the server (STYLE.md: only services call this).

Each connected socket joins the group of its member, named ``<schema>.<kind>.<id>`` (for
example ``acme.u.7`` for user 7 of tenant ``acme``, ``acme.v.12`` for visitor 12), so tenants that
share one Redis never meet. Recipients are computed by the caller from database membership at
publish time. The channel layer only rings the doorbell: if Redis drops or loses an event the
client catches up with ``sync`` (docs/protocol.md §3), so a failed publish is logged and counted,
never raised into the service that stored the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

logger = logging.getLogger(__name__)


class _State:
    #: events this process failed to hand to the channel layer (for benchmarks and metrics)
    publish_failures = 0
    captured: list[tuple[dict[str, Any], list[str]]] | None = None


state = _State()


def member_group(schema: str, member_key: str) -> str:
    """Channel-layer group of one member: ``("acme", "u:7")`` → ``"acme.u.7"``."""
    return f"{schema}.{member_key.replace(':', '.')}"


def _send(schema: str, event: dict[str, Any], member_keys: Iterable[str]) -> None:
    _send_many(schema, [(event, member_keys)])


def _send_many(schema: str, items: list[tuple[dict[str, Any], Iterable[str]]]) -> None:
    batch_items: Batch = [
        (
            [member_group(schema, key) for key in dict.fromkeys(keys)],
            {"type": "weiyu.event", "event": event},
        )
        for event, keys in items
    ]
    if state.captured is not None:
        state.captured.extend((m["event"], groups) for groups, m in batch_items)
        return
    batch = getattr(_local, "batch", None)
    if batch is not None:  # a consumer's database call: its event loop sends them afterwards
        batch.extend(batch_items)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if _loop_running_here():
            # a service called straight from async code: hand the send to a helper thread
            worker = threading.Thread(target=async_to_sync(_send_all), args=(layer, batch_items))
            worker.start()
            worker.join()
        else:
            # sync code (a worker, a request thread): the process's publisher loop sends them,
            # on its pooled Redis connections, and this thread waits for the outcome (order kept)
            future = asyncio.run_coroutine_threadsafe(
                _send_all(layer, batch_items), _publisher_loop()
            )
            future.result(timeout=PUBLISH_TIMEOUT_S)
    except Exception:  # the database is the record; clients resync
        state.publish_failures += 1
        logger.warning(
            "publish of %s to %d groups failed",
            ", ".join(sorted({m["event"].get("type", "?") for _g, m in batch_items})),
            sum(len(groups) for groups, _m in batch_items),
            exc_info=True,
        )


async def _send_all(layer: Any, items: Batch) -> None:
    """Send each ``(groups, message)`` of ``items``: overlapped when no group is in two of them
    (nobody's order to keep), else one after the other. Raises the first failure once every
    item was tried."""
    if len(items) == 1:
        await _group_send_many(layer, *items[0])
        return
    named = [group for groups, _message in items for group in groups]
    if len(named) == len(set(named)):
        # a layer without group_send_many takes the gate per group itself (holding it here as
        # well could leave every permit held by sends waiting for one)
        gate = _gate() if hasattr(layer, "group_send_many") else contextlib.nullcontext()

        async def one(groups: list[str], message: dict[str, Any]) -> None:
            async with gate:
                await _group_send_many(layer, groups, message)

        results = await asyncio.gather(
            *(one(groups, message) for groups, message in items), return_exceptions=True
        )
    else:
        results = []
        for groups, message in items:
            try:
                await _group_send_many(layer, groups, message)
            except Exception as exc:
                results.append(exc)
    for result in results:
        if isinstance(result, BaseException):
            raise result


_local = threading.local()
Batch = list[tuple[list[str], dict[str, Any]]]

#: seconds a synchronous publish waits for Redis before giving up (the event is then lost and
#: clients catch up with ``sync``)
PUBLISH_TIMEOUT_S = 10.0
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for publishing from synchronous code, in a daemon thread
    (started on first use, again after a fork). One loop keeps the channel layer's Redis
    connections pooled; ``async_to_sync`` from a thread without a loop would set up a new loop,
    and so new connections, for every event (bench/routing.py measured ~5 ms per event)."""
    global _publisher  # noqa: PLW0603 - one per process
    pid = os.getpid()
    current = _publisher
    if current is not None and current[0] == pid:
        return current[1]
    with _publisher_lock:
        if _publisher is not None and _publisher[0] == pid:
            return _publisher[1]
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="weiyu-publisher", daemon=True).start()
        _publisher = (pid, loop)
        return loop


@contextlib.contextmanager
def deferred(batch: Batch) -> Iterator[Batch]:
    """Collect the events published in this thread into ``batch`` instead of sending them.

    Websocket consumers run services in the process's database thread; sending from there
    would hold that thread while Redis answers. The consumer sends the batch with
    :func:`send_batch` from its event loop once the database call has returned.
    """
    previous, _local.batch = getattr(_local, "batch", None), batch
    try:
        yield batch
    finally:
        _local.batch = previous


async def send_batch(batch: Batch) -> None:
    """Send events collected by :func:`deferred` (from async code). Failures are logged and
    counted, never raised: clients catch up with ``sync``."""
    layer = get_channel_layer()
    if layer is None:
        return
    for groups, message in batch:
        try:
            await _group_send_many(layer, groups, message)
        except Exception:
            state.publish_failures += 1
            logger.warning("publish of %s failed", message["event"].get("type"), exc_info=True)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


#: group sends in flight at once per process (event loop), over all events: enough to overlap
#: the Redis round trips of a 500-member fan-out (bench/im_load.py), well under the channel
#: layer's connection pool (``max_connections`` in settings.CHANNEL_LAYERS)
FAN_OUT_CONCURRENCY = 48
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _gate() -> asyncio.Semaphore:
    """The running loop's limit on group sends in flight (:data:`FAN_OUT_CONCURRENCY`)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(FAN_OUT_CONCURRENCY)
    return gate


async def _group_send_many(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    """Send ``message`` to every group: in one step where the layer can
    (``weiyu.channel_layer.BatchingRedisChannelLayer.group_send_many``), else one ``group_send``
    per group, overlapped (at most :data:`FAN_OUT_CONCURRENCY` in flight in this process).
    Raises the first failure once every group was tried."""
    if hasattr(layer, "group_send_many"):
        await layer.group_send_many(groups, message)
        return
    gate = _gate()

    async def one(group: str) -> None:
        async with gate:
            await layer.group_send(group, message)

    if len(groups) == 1:
        await one(groups[0])
        return
    results = await asyncio.gather(*(one(g) for g in groups), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def publish_event_on_commit(event: dict[str, Any], member_keys: Iterable[str]) -> None:
    """Send ``event`` (a protocol frame dict) to every socket of ``member_keys`` after commit.

    Nothing is sent if the surrounding transaction rolls back. The tenant is the connection's
    current schema at call time.
    """
    schema = connection.schema_name
    keys = list(member_keys)
    transaction.on_commit(lambda: _send(schema, event, keys))


def publish_events_on_commit(items: Iterable[tuple[dict[str, Any], Iterable[str]]]) -> None:
    """Send each ``(event, member_keys)`` of ``items`` after commit, as
    :func:`publish_event_on_commit` would one by one, but handed to Redis in one step: a
    workgroup's queue positions (one event per waiting visitor) cost one hand-off, not one per
    visitor. Nothing is sent if the surrounding transaction rolls back."""
    schema = connection.schema_name
    pending = [(event, list(keys)) for event, keys in items]
    if pending:
        transaction.on_commit(lambda: _send_many(schema, pending))


def publish_event_now(event: dict[str, Any], member_keys: Iterable[str]) -> None:
    """Send an ephemeral event (typing) that has no database state behind it."""
    _send(connection.schema_name, event, list(member_keys))


@contextlib.contextmanager
def capture_events() -> Iterator[list[tuple[dict[str, Any], list[str]]]]:
    """Test helper: record ``(event, groups)`` pairs instead of sending them."""
    previous, state.captured = state.captured, []
    try:
        yield state.captured
    finally:
        state.captured = previous
