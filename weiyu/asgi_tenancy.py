"""Tenant resolution for websockets and the tenant's database calls (DESIGN.md §2).

Channels has no tenant support of its own: without this the session and user lookups land in the
``public`` schema and every agent comes back anonymous (django-tenants #767, #1143, #1168).
``TenantWebsocketMiddleware`` resolves the tenant from the ``Host`` header once per connection
(cached for :data:`CACHE_SECONDS` in-process, in front of :mod:`weiyu.tenant_hosts`) and puts it in ``scope["tenant"]``; an unknown or
suspended host is refused at the handshake. Consumers authenticate after accepting (agents by
their session cookie, ``kefu.consumers``) and run every database call through :func:`tenant_db`,
which enters the tenant in one of the process's database threads (:mod:`weiyu.dbthreads`).
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from weiyu import dbthreads, realtime
from weiyu.tenant_hosts import tenant_for_host

if TYPE_CHECKING:
    # weiyu/ imports no app (docs/architecture.md): the tenant model comes from settings
    from django_tenants.models import TenantMixin as Tenant

CACHE_SECONDS = 30.0
_tenant_cache: dict[str, tuple[float, Tenant | None]] = {}
_refreshing: dict[str, asyncio.Task[Any]] = {}
T = TypeVar("T")


def host_from_scope(scope: dict[str, Any]) -> str:
    """The lower-cased host name (no port) of the connection's ``Host`` header."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host.split("]")[0] + "]"
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


def _lookup_tenant(host: str) -> Tenant | None:
    tenant = tenant_for_host(host)  # no SET search_path: the thread keeps its tenant's path
    return tenant if tenant is not None and tenant.is_active else None


async def resolve_tenant(host: str) -> Tenant | None:
    """The active tenant serving ``host``, or None.

    Cached per host for :data:`CACHE_SECONDS`. An expired entry is still answered while one
    lookup per host refreshes it, so the sockets arriving at that moment do not all queue for the
    database before their handshake (docs/benchmarks.md, "Connections"); only a host never seen
    waits, for that one shared lookup. Raises what the lookup raises when there is no entry."""
    now = time.monotonic()
    hit = _tenant_cache.get(host)
    if hit and hit[0] > now:
        return hit[1]
    loop = asyncio.get_running_loop()
    task = _refreshing.get(host)
    if task is None or task.done() or task.get_loop() is not loop:
        task = _refreshing[host] = loop.create_task(_refresh(host))
        task.add_done_callback(_seen)
    if hit is not None:
        return hit[1]
    return await asyncio.shield(task)


async def _refresh(host: str) -> Tenant | None:
    tenant = await dbthreads.run(_lookup_tenant, host)
    _tenant_cache[host] = (time.monotonic() + CACHE_SECONDS, tenant)
    return tenant


def _seen(task: asyncio.Task[Any]) -> None:
    """A refresh nobody awaited (a stale entry was answered) fails quietly; the next expired
    lookup tries again."""
    if not task.cancelled():
        task.exception()


def _run_in_tenant(
    tenant: Tenant, batch: realtime.Batch, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    # The thread keeps its connection between calls (weiyu.dbthreads); with
    # TENANT_LIMIT_SET_CALLS django-tenants sends `SET search_path` once after set_tenant, so it
    # is called only when the schema differs (set_tenant also empties the content-type cache).
    if connection.schema_name != tenant.schema_name or not connection.search_path_set_schemas:
        connection.set_tenant(tenant)
    else:
        connection.tenant = tenant
    with realtime.deferred(batch):
        return fn(*args, **kwargs)


#: at most this many of a process's database threads work for one tenant at a time
#: (``WEIYU_DB_THREADS_PER_TENANT``, default two thirds of them): a tenant's flood queues behind
#: its own calls while the other tenants' calls still find a free thread (docs/security.md,
#: "Rate limits")
TENANT_SHARE = max(
    1, int(os.environ.get("WEIYU_DB_THREADS_PER_TENANT", "0")) or dbthreads.THREADS * 2 // 3
)
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _tenant_gate(schema: str) -> asyncio.Semaphore:
    per_loop = _gates.setdefault(asyncio.get_running_loop(), {})
    gate = per_loop.get(schema)
    if gate is None:
        gate = per_loop[schema] = asyncio.Semaphore(TENANT_SHARE)
    return gate


async def tenant_db(tenant: Tenant, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on a database thread (:func:`weiyu.dbthreads.run`) inside ``tenant``'s schema,
    at most :data:`TENANT_SHARE` calls of one tenant at a time; the realtime events it publishes
    are sent from the event loop afterwards (also when ``fn`` raises, since parts of it may have
    committed, and when the caller is cancelled: daphne cancels a consumer 10 s after its socket
    closed, and the thread commits regardless — its events must still go)."""
    batch: realtime.Batch = []

    async def call_then_publish() -> T:
        try:
            async with _tenant_gate(tenant.schema_name):
                return await dbthreads.run(_run_in_tenant, tenant, batch, fn, *args, **kwargs)
        finally:
            if batch:
                await realtime.send_batch(batch)

    return await asyncio.shield(call_then_publish())


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _same_origin(origin: str, scope: dict[str, Any]) -> bool:
    """Whether ``Origin`` names the host and port the socket was opened on: same host name, and
    the ``Host`` header's explicit port equal to the origin's (default ports: 80/443); a
    ``Host`` without a port (the default one, or a TLS proxy in front) accepts only an origin
    on its scheme's default port."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
        host_port = urlsplit("//" + (_header(scope, b"host") or "")).port
    except ValueError:
        return False
    if (parts.hostname or "").lower() != host_from_scope(scope):
        return False
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if host_port is None:
        return origin_port in (None, default)
    return (origin_port or default) == host_port


class SameOriginMiddleware:
    """Refuse a browser handshake whose ``Origin`` is another site (cross-site websocket
    hijacking of the agent's session cookie). Clients that send no ``Origin`` (not browsers, so
    they cannot borrow a user's cookies) are let through to authenticate themselves.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = _header(scope, b"origin")
        if origin is not None and not _same_origin(origin, scope):
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.app(scope, receive, send)


class TenantWebsocketMiddleware:
    """Put the tenant of the ``Host`` header in ``scope["tenant"]``; refuse unknown hosts."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        tenant = await resolve_tenant(host_from_scope(scope))
        if tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME:
            await send({"type": "websocket.close", "code": 4404})
            return None
        return await self.app(dict(scope, tenant=tenant), receive, send)
