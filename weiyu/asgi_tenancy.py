"""Tenant resolution and session authentication for websockets (DESIGN.md §2).

Channels has no tenant support of its own: without this the session and user lookups land in the
``public`` schema and every agent comes back anonymous (django-tenants #767, #1143, #1168).
``TenantWebsocketMiddleware`` resolves the tenant from the ``Host`` header once per connection
(cached for :data:`CACHE_SECONDS` in-process) and puts it in ``scope["tenant"]``; an unknown or
suspended host is refused at the handshake. ``SessionUserMiddleware`` loads the Django session and
user *inside the tenant's schema*. Consumers then run every database call through
:func:`tenant_db`, which enters the tenant in the worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.utils.module_loading import import_string
from django_tenants.utils import get_tenant_domain_model

from weiyu import realtime

if TYPE_CHECKING:
    # weiyu/ imports no app (docs/architecture.md): the tenant model comes from settings
    from django_tenants.models import TenantMixin as Tenant

CACHE_SECONDS = 30.0
_tenant_cache: dict[str, tuple[float, Tenant | None]] = {}
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
    connection.set_schema_to_public()
    domain = get_tenant_domain_model().objects.select_related("tenant").filter(domain=host).first()
    if domain is None or not domain.tenant.is_active:
        return None
    return domain.tenant


async def resolve_tenant(host: str) -> Tenant | None:
    """The active tenant serving ``host``, or None."""
    now = time.monotonic()
    hit = _tenant_cache.get(host)
    if hit and hit[0] > now:
        return hit[1]
    tenant = await database_sync_to_async(_lookup_tenant)(host)
    _tenant_cache[host] = (now + CACHE_SECONDS, tenant)
    return tenant


def _run_in_tenant(
    tenant: Tenant, batch: realtime.Batch, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    # Every call sets its tenant first, so the thread may keep it afterwards; with
    # TENANT_LIMIT_SET_CALLS the search_path is only sent when the tenant changes.
    connection.set_tenant(tenant)
    with realtime.deferred(batch):
        return fn(*args, **kwargs)


async def tenant_db(tenant: Tenant, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a database worker thread inside ``tenant``'s schema; the realtime events
    it publishes are sent from the event loop afterwards (also when ``fn`` raises, since parts
    of it may have committed)."""
    batch: realtime.Batch = []
    try:
        return await database_sync_to_async(_run_in_tenant)(tenant, batch, fn, *args, **kwargs)
    finally:
        if batch:
            await realtime.send_batch(batch)


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


def _load_user(session_key: str | None) -> Any:
    if not session_key:
        return AnonymousUser()
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    request = SimpleNamespace(session=store_class(session_key))
    return get_user(request)


class SessionUserMiddleware:
    """Set ``scope["user"]`` from the session cookie, looked up in the tenant's schema."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session_key = None
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookie = SimpleCookie()
                cookie.load(value.decode("latin-1"))
                morsel = cookie.get(settings.SESSION_COOKIE_NAME)
                session_key = morsel.value if morsel else None
        user = await tenant_db(scope["tenant"], _load_user, session_key)
        return await self.app(dict(scope, user=user), receive, send)
