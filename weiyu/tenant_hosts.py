"""Which tenant a host name belongs to, for every HTTP request and websocket handshake.

django-tenants' ``TenantMainMiddleware`` sets the connection to ``public``, looks the host up
(``tenants_domain`` joined to ``tenants_tenant``) and sets the tenant: three statements per
request, two of them ``SET search_path`` (docs/benchmarks.md, "Tenant resolution"). Here each
process keeps ``host -> tenant`` (or "no tenant") in memory instead, checked against one
**routes version** kept in Redis (``<REDIS_KEY_PREFIX>:tenant-routes``): an entry is used only
while the version is the one read before its lookup, and for :data:`CACHE_SECONDS` at most.
Every change to a tenant or domain row bumps the version once its transaction commits
(:func:`routes_changed`, connected by ``tenants.apps``; the services that change tenants with
``QuerySet.update`` call it themselves), so a removed domain stops resolving, and a suspended
tenant is refused, from the next request on in every process.

Cost per request: one Redis ``GET`` and a dictionary lookup; a miss adds one query, which names
its tables with their schema and so runs in whatever ``search_path`` the connection has (no
``SET``). When Redis cannot be reached every request looks its host up in PostgreSQL.
"""

from __future__ import annotations

import copy
import logging
import time
from functools import cache
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import get_tenant_domain_model, get_tenant_model
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    # weiyu/ imports no app (docs/architecture.md): the tenant model comes from settings
    from django_tenants.models import TenantMixin as Tenant

logger = logging.getLogger(__name__)

#: seconds an entry is used at most, whatever the routes version says (a row changed without
#: :func:`routes_changed`, e.g. by hand in ``psql``, or a bump lost while Redis was down)
CACHE_SECONDS = 30.0
#: host -> (routes version read before the lookup, monotonic expiry, tenant or None)
_hosts: dict[str, tuple[bytes, float, Tenant | None]] = {}


def _key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:tenant-routes"


#: seconds Redis is left alone after it failed (requests meanwhile look their host up in
#: PostgreSQL), so that during a Redis outage a request costs one query, not a wait for Redis
REDIS_RETRY_S = 1.0
_redis_down_until = 0.0


@cache
def _redis() -> redis.Redis:
    # no retries, short timeouts: a request waits for this at most once per REDIS_RETRY_S
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def _version() -> bytes | None:
    """The routes version (``b"0"`` before the first change), or None when Redis failed (now
    or less than :data:`REDIS_RETRY_S` ago)."""
    global _redis_down_until  # noqa: PLW0603 - one per process
    if time.monotonic() < _redis_down_until:
        return None
    try:
        return _redis().get(_key()) or b"0"
    except redis.RedisError:  # resolve from PostgreSQL, keep serving
        _redis_down_until = time.monotonic() + REDIS_RETRY_S
        logger.warning("tenant routes version unavailable; looking hosts up in PostgreSQL")
        return None


@cache
def _lookup_sql() -> str:
    tenant_model, domain_model = get_tenant_model(), get_tenant_domain_model()
    qn = connection.ops.quote_name
    public = qn(settings.PUBLIC_SCHEMA_NAME)
    tenant_fk = domain_model._meta.get_field("tenant").column
    return (
        f"SELECT t.* FROM {public}.{qn(tenant_model._meta.db_table)} t "  # noqa: S608 - names from the models
        f"JOIN {public}.{qn(domain_model._meta.db_table)} d ON d.{qn(tenant_fk)} = t.{qn('id')} "
        f"WHERE d.{qn('domain')} = %s"
    )


def tenant_lookup(host: str) -> Tenant | None:
    """The tenant whose ``Domain`` is ``host`` (suspended or not), straight from PostgreSQL: one
    query, and no ``SET search_path`` (the query names its schema). Raises what the query
    raises."""
    with connection.search_path_any():
        found = list(get_tenant_model().objects.raw(_lookup_sql(), [host]))
    return found[0] if found else None


def tenant_for_host(host: str) -> Tenant | None:
    """The tenant serving ``host`` (lower case, no port), suspended or not, or None; a copy of
    the cached instance per call, so a request may set attributes on it (``domain_url``).

    At most :data:`CACHE_SECONDS` old and never older than the last :func:`routes_changed`
    that reached Redis. Raises what :func:`tenant_lookup` raises on a miss."""
    version = _version()
    now = time.monotonic()
    hit = _hosts.get(host)
    if version is not None and hit is not None and hit[0] == version and hit[1] > now:
        tenant = hit[2]
    else:
        tenant = tenant_lookup(host)
        if version is not None:
            _hosts[host] = (version, now + CACHE_SECONDS, tenant)
    return copy.copy(tenant) if tenant is not None else None


def routes_changed() -> None:
    """Tenants or domains changed: every process looks its hosts up again from its next
    request. Call after the change committed (:func:`routes_changed_on_commit`). When Redis
    fails, this process forgets its entries and the others keep theirs for
    :data:`CACHE_SECONDS` at most (logged)."""
    _hosts.clear()
    try:
        _redis().incr(_key())
    except redis.RedisError:  # the entries' expiry bounds how stale other processes get
        logger.exception(
            "tenant routes version not bumped; other processes follow within %ss", CACHE_SECONDS
        )


def routes_changed_on_commit(**_signal: Any) -> None:
    """:func:`routes_changed` once the current transaction commits (at once outside one); also a
    ``post_save``/``post_delete`` receiver."""
    transaction.on_commit(routes_changed)
