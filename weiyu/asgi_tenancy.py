"""Tenant resolution for websockets and the tenant's database calls (DESIGN.md §2).

Channels has no tenant support of its own: without this the session and user lookups land in the
``public`` schema and every agent comes back anonymous (django-tenants #767, #1143, #1168).
``TenantWebsocketMiddleware`` resolves the tenant from the ``Host`` header once per connection
(cached in-process in front of :mod:`weiyu.tenant_hosts`: for :data:`CACHE_SECONDS`, and only
while the routes version is the one the entry was read under, checked at most every
:data:`VERSION_CHECK_S`) and puts it in ``scope["tenant"]``; an unknown or suspended host is
refused at the handshake, a tenant suspended or a domain removed from about a second after. Consumers authenticate after accepting (agents by
their session cookie, ``kefu.consumers``) and run every database call through :func:`tenant_db`,
which enters the tenant in one of the process's database threads (:mod:`weiyu.dbthreads`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from weiyu import dbthreads, realtime
from weiyu.tenant_hosts import routes_version, tenant_for_host

if TYPE_CHECKING:
    # weiyu/ imports no app (docs/architecture.md): the tenant model comes from settings
    from django_tenants.models import TenantMixin as Tenant

logger = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
#: seconds between two reads of the routes version (one Redis ``GET`` per process, not per
#: handshake): a suspended tenant's or removed domain's new sockets are refused after about this
VERSION_CHECK_S = 1.0
#: host -> (monotonic expiry, tenant or None, routes version it was read under)
_tenant_cache: dict[str, tuple[float, Tenant | None, bytes | None]] = {}
_refreshing: dict[str, asyncio.Task[Any]] = {}
#: the routes version last read (None: unknown or Redis unreadable), when it was last asked for,
#: and the read under way
_routes: dict[str, Any] = {"version": None, "checked": float("-inf"), "task": None}
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
    waits, for that one shared lookup. An entry read under another routes version than the
    last one seen (:func:`_routes_watch`) is not answered: the handshake waits for the lookup,
    as for a host never seen, unless that lookup fails (the entry is then answered as it was).
    Raises what the lookup raises when there is no entry."""
    now = time.monotonic()
    _routes_watch(now)
    hit = _tenant_cache.get(host)
    outdated = None
    if hit is not None and hit[2] is not None and hit[2] != _routes["version"]:
        outdated, hit = (
            hit,
            None,
        )  # tenants or domains changed since: a suspension, a removed domain
    if hit and hit[0] > now:
        return hit[1]
    loop = asyncio.get_running_loop()
    task = _refreshing.get(host)
    if task is None or task.done() or task.get_loop() is not loop:
        task = _refreshing[host] = loop.create_task(_refresh(host))
        task.add_done_callback(_seen)
    if hit is not None:
        return hit[1]
    try:
        return await asyncio.shield(task)
    except Exception:
        if outdated is None:
            raise
        # the database cannot say now: the entry as it was, rather than no service at all
        logger.warning("tenant of %s not looked up again; answered as cached", host, exc_info=True)
        return outdated[1]


async def _refresh(host: str) -> Tenant | None:
    version = _routes["version"]  # before the lookup: a change meanwhile is looked up again
    tenant = await dbthreads.run(_lookup_tenant, host)
    _tenant_cache[host] = (time.monotonic() + CACHE_SECONDS, tenant, version)
    return tenant


def _routes_watch(now: float) -> None:
    """Read the routes version in the background when the last read is :data:`VERSION_CHECK_S`
    old (the handshake does not wait for it)."""
    if now - _routes["checked"] < VERSION_CHECK_S:
        return
    _routes["checked"] = now
    loop = asyncio.get_running_loop()
    task = _routes["task"]
    if task is not None and not task.done() and task.get_loop() is loop:
        return
    _routes["task"] = task = loop.create_task(_routes_read())
    task.add_done_callback(_seen)


async def _routes_read() -> None:
    version = await asyncio.get_running_loop().run_in_executor(None, routes_version)
    if version is None:  # Redis unreadable: the entries' expiry bounds their age
        return
    if _routes["version"] is None:
        # the first read: entries looked up before it (in this process's first second, or while
        # Redis was down) count as read under it, their expiry unchanged
        for host, (expiry, tenant, seen) in list(_tenant_cache.items()):
            if seen is None:
                _tenant_cache[host] = (expiry, tenant, version)
    _routes["version"] = version


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


async def tenant_still_served(scope: dict[str, Any]) -> bool:
    """Whether the host an open socket connected to still routes to its active tenant
    (:func:`resolve_tenant`: a dictionary look-up, no query, but for a stale entry): False once
    the tenant is suspended or the domain removed, about a second after. A socket not opened
    through :class:`TenantWebsocketMiddleware` is always served, and so is one whose host
    cannot be looked up now (the database down: its frames get their own errors)."""
    host = scope.get("tenant_host")
    if host is None:
        return True
    try:
        tenant = await resolve_tenant(host)
    except Exception:
        logger.warning("tenant of %s not looked up; the socket stays open", host, exc_info=True)
        return True
    return tenant is not None and tenant.schema_name == scope["tenant"].schema_name


class TenantWebsocketMiddleware:
    """Put the tenant of the ``Host`` header in ``scope["tenant"]`` (and the host in
    ``scope["tenant_host"]``, for :func:`tenant_still_served`); refuse unknown hosts."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        host = host_from_scope(scope)
        tenant = await resolve_tenant(host)
        if tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME:
            await send({"type": "websocket.close", "code": 4404})
            return None
        return await self.app(dict(scope, tenant=tenant, tenant_host=host), receive, send)
