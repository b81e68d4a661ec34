"""Database calls from async code: a pool of threads per process, each keeping its connection.

Channels' ``database_sync_to_async`` runs every call of a process on one thread (its
thread-sensitive mode) and gives the connection back to the pool around each call
(``close_old_connections``): one thread waits on every PostgreSQL round trip of every socket in
turn, and each call pays the pool's health check and a ``SET search_path`` again
(docs/benchmarks.md, "Where the time goes" and "Database threads").

:func:`run` runs a call on one of :data:`THREADS` threads instead. A thread takes a connection
from the pool on its first query and keeps it; before a call it checks the connection only when
the previous call saw a database error or the connection sat idle for more than
:data:`IDLE_CHECK_S` (one ``SELECT 1``), so a PostgreSQL restart during a quiet spell still costs
no failed call. ``weiyu.asgi_tenancy.tenant_db`` sends ``SET search_path`` only when the thread's
tenant changes.

Ordering: a socket's frames are handled one at a time (its consumer awaits each call), so one
socket's calls never overlap. Calls of different sockets may run at once; what must happen in
order between them is ordered by the database (a message takes the next ``seq`` under the
conversation's row lock).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

T = TypeVar("T")

#: threads (and so PostgreSQL connections held) per process for websocket database work;
#: ``WEIYU_DB_THREADS``. Each holds one connection of the process's pool (``DB_POOL_MAX``), the
#: rest serve HTTP requests.
THREADS = max(1, int(os.environ.get("WEIYU_DB_THREADS", "6")))
#: seconds a kept connection may sit idle before it is checked (``SELECT 1``) before its next use
IDLE_CHECK_S = 5.0

_lock = threading.Lock()
_executor: tuple[int, ThreadPoolExecutor] | None = None
#: the connection wrapper of every thread that kept one, so :func:`close_all` can return them
_kept: list[Any] = []
_local = threading.local()


def _pool() -> ThreadPoolExecutor:
    """This process's executor (a new one after a fork)."""
    global _executor  # noqa: PLW0603 - one per process
    pid = os.getpid()
    current = _executor
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _executor is None or _executor[0] != pid:
            _executor = (pid, ThreadPoolExecutor(THREADS, thread_name_prefix="weiyu-db"))
        return _executor[1]


def _checkout() -> None:
    """Make this thread's kept connection fit for a call (see the module docstring)."""
    conn = connections[DEFAULT_DB_ALIAS]
    if not getattr(_local, "registered", False):
        _local.registered = True
        with _lock:
            _kept.append(conn)
    if conn.connection is None:
        return  # opened (from the pool) by the first query
    idle = time.monotonic() - getattr(_local, "last_used", 0.0)
    if conn.errors_occurred or idle > IDLE_CHECK_S:
        if conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()


def _checkin() -> None:
    conn = connections[DEFAULT_DB_ALIAS]
    _local.last_used = time.monotonic()
    if conn.connection is not None and (conn.in_atomic_block or not conn.get_autocommit()):
        # a call that left a transaction open must not leak it into the next call
        conn.close()


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    _checkout()
    try:
        return fn(*args, **kwargs)
    finally:
        _checkin()


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Await ``fn(*args, **kwargs)`` run on one of the process's database threads.

    The caller's context variables (the active language, for one) are copied to the thread, as
    ``sync_to_async`` does. Raises what ``fn`` raises.

    A plain ``run_in_executor`` rather than asgiref's ``sync_to_async``: that wrapper builds an
    object, a task and its thread-sensitivity bookkeeping at every call (without it the web
    process spent ~6 % less CPU per message in the closed-loop chat bench, docs/benchmarks.md,
    "CPU per message"); none of it is needed here (the code run here sends its events from the event loop
    afterwards, weiyu.realtime.deferred, and never calls back into async code).
    """
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), context.run, _call, fn, args, kwargs)


def close_all() -> None:
    """Stop this process's database threads and give their connections back to the pool (tests
    call this before the test database is dropped). The next :func:`run` starts new threads."""
    global _executor
    with _lock:
        current, _executor = _executor, None
        kept, _kept[:] = list(_kept), []
    if current is not None and current[0] == os.getpid():
        current[1].shutdown(wait=True)
    for conn in kept:
        conn.inc_thread_sharing()
        try:
            conn.close()
        finally:
            conn.dec_thread_sharing()
