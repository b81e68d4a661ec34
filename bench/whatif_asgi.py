"""Diagnostic only: ``weiyu.asgi:application`` with runtime patches, to test where time goes.

Used by ``bench/chat_load.py --variant …``; never deployed, product code untouched. Patches, chosen
by ``$WEIYU_BENCH_PATCHES`` (comma-separated):

* ``nohop`` — ``channels.consumer.AsyncConsumer.dispatch`` calls ``aclose_old_connections()``
  before *every* handler, including a pure push such as ``weiyu.event``; that call is a
  thread-sensitive ``sync_to_async``, i.e. it waits for the process's single shared
  database thread. The patch makes it a no-op for consumer dispatch. (Our consumers reach the
  database only through ``database_sync_to_async``, which closes stale connections around every
  call anyway.)
* ``dbpool`` — ``weiyu.asgi_tenancy`` runs its database calls with ``thread_sensitive=False``
  (asgiref's default thread pool, several connections) instead of the one shared thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")

PATCHES = {p for p in os.environ.get("WEIYU_BENCH_PATCHES", "").split(",") if p}

if "nohop" in PATCHES:
    import channels.consumer

    async def _no_close_old_connections() -> None:
        return None

    channels.consumer.aclose_old_connections = _no_close_old_connections

from weiyu.asgi import application  # noqa: E402,F401  (sets Django up)

if "dbpool" in PATCHES:
    import functools

    from channels.db import DatabaseSyncToAsync

    import weiyu.asgi_tenancy

    # tenant_db() looks this name up at call time
    weiyu.asgi_tenancy.database_sync_to_async = functools.partial(  # type: ignore[assignment]
        DatabaseSyncToAsync, thread_sensitive=False
    )
