"""Plans and quotas (TEN-3): what a tenant's plan allows, what it has used, and the refusals.

Two kinds of quota, both read from the tenant's :class:`tenants.models.Plan` (no plan, or an
empty limit: unlimited):

- **monthly counters** — ``conversations`` (new visitor conversations) and ``ai_answers``
  (answers written by a language model) per calendar month (UTC). The services count them with
  one Redis ``INCRBY`` (:func:`count`), after their transaction commits, and check them with one
  Redis ``GET`` (:func:`check`): the message send path gains no database statement. The beat
  task ``tenants.tasks.usage_rollup_all_task`` copies the counters into
  :class:`tenants.models.Usage` rows (the month's history, shown to the admins) and puts them
  back into Redis when Redis lost them, so a flushed Redis never resets a month.
- **totals** — ``seats`` (active users), ``widget_channels`` and ``storage_bytes`` (uploaded
  files): counted in the tenant's own tables by a *meter* the owning app registers
  (:func:`meter_register`: org the seats, kefu the channels, im the storage), read when something
  is added (:func:`check_total`), which is never on the send path.

A refusal is ``ServiceError("quota_exceeded")`` — HTTP 402 with ``{"code", "message",
"field"}``, ``field`` naming the quota — with a message saying which limit of which plan was
reached. The plan of a tenant is cached per process for :data:`CACHE_S` seconds (one query on a
miss); the limits in force change that much later after an edit in the platform admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from redis.exceptions import RedisError

from tenants.models import Tenant, Usage
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: seconds a process keeps a tenant's plan before reading it again
CACHE_S = 30.0

MONTHLY = ("conversations", "ai_answers")
TOTALS = ("seats", "widget_channels", "storage_bytes")

#: quota → the plan's field holding its limit
PLAN_FIELD = {
    "conversations": "conversations_per_month",
    "ai_answers": "ai_answers_per_month",
    "seats": "seats",
    "widget_channels": "widget_channels",
    "storage_bytes": "storage_bytes",
}

LABELS = {
    "conversations": gettext_lazy("conversations this month"),
    "ai_answers": gettext_lazy("AI answers this month"),
    "seats": gettext_lazy("seats (active users)"),
    "widget_channels": gettext_lazy("widget channels"),
    "storage_bytes": gettext_lazy("storage (bytes)"),
}


@dataclass(frozen=True)
class Limits:
    """A tenant's plan as the checks read it: ``limits`` maps each quota to its limit (None:
    unlimited); ``plan`` is the plan's name ("" without a plan)."""

    plan: str
    limits: dict[str, int | None]
    feature_ai: bool
    is_active: bool


UNLIMITED = Limits(plan="", limits=dict.fromkeys(PLAN_FIELD), feature_ai=True, is_active=True)

_cache: dict[str, tuple[float, Limits]] = {}
_meters: dict[str, Callable[[], int]] = {}


def limits_for(schema: str | None = None) -> Limits:
    """The plan in force for ``schema`` (default: the connection's), cached per process for
    :data:`CACHE_S` seconds; one query on a miss. The public schema and unknown schemas are
    unlimited."""
    schema = schema or connection.schema_name
    now = time.monotonic()
    hit = _cache.get(schema)
    if hit and hit[0] > now:
        return hit[1]
    tenant = Tenant.objects.filter(schema_name=schema).select_related("plan").first()
    if tenant is None or tenant.plan is None:
        result = Limits(
            plan="",
            limits=dict.fromkeys(PLAN_FIELD),
            feature_ai=True,
            is_active=tenant.is_active if tenant else True,
        )
    else:
        plan = tenant.plan
        result = Limits(
            plan=plan.name,
            limits={quota: getattr(plan, field) for quota, field in PLAN_FIELD.items()},
            feature_ai=plan.feature_ai,
            is_active=tenant.is_active,
        )
    _cache[schema] = (now + CACHE_S, result)
    return result


def forget(schema: str | None = None) -> None:
    """Drop the cached plan of ``schema`` (all schemas when None), e.g. after the platform admin
    changed it in this process."""
    if schema is None:
        _cache.clear()
    else:
        _cache.pop(schema, None)


def meter_register(quota: str, meter: Callable[[], int]) -> None:
    """Register how the current tenant's total of ``quota`` (one of :data:`TOTALS`) is counted:
    ``meter()`` runs inside the tenant's schema and returns the total (users, channels, bytes).
    Called by the owning app in ``AppConfig.ready``."""
    if quota not in TOTALS:
        raise ValueError(f"not a total quota: {quota}")
    _meters[quota] = meter


def total(quota: str) -> int:
    """The current tenant's total of ``quota`` by its registered meter (0 without one)."""
    meter = _meters.get(quota)
    return int(meter()) if meter else 0


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def month_start(now: dt.datetime | None = None) -> dt.date:
    """The first day of the current month (UTC)."""
    now = now or timezone.now()
    return now.astimezone(dt.UTC).date().replace(day=1)


def _key(schema: str, quota: str, month: dt.date) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:usage:{schema}:{quota}:{month:%Y%m}"


def count(quota: str, n: int = 1, *, schema: str | None = None) -> None:
    """Add ``n`` to the current tenant's counter of the monthly ``quota`` (one Redis
    ``INCRBY``; the key lives 40 days). Call after the work it counts has committed. Redis
    unreachable: logged, not counted."""
    schema = schema or connection.schema_name
    key = _key(schema, quota, month_start())
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.incrby(key, n)
        pipe.expire(key, 40 * 86400)
        pipe.execute()
    except RedisError as exc:
        logger.warning("usage of %s not counted (%s): %s", schema, quota, exc)


def used(quota: str, *, schema: str | None = None) -> int:
    """The current tenant's count of the monthly ``quota`` this month (one Redis ``GET``; 0 when
    Redis cannot be reached, logged)."""
    schema = schema or connection.schema_name
    try:
        value = _redis().get(_key(schema, quota, month_start()))
    except RedisError as exc:
        logger.warning("usage of %s not read (%s): %s", schema, quota, exc)
        return 0
    return int(value or 0)


def _refusal(quota: str, limits: Limits, limit: int) -> ServiceError:
    if quota == "storage_bytes":
        return ServiceError(
            "quota_exceeded",
            _(
                "Your plan %(plan)s allows %(size)s of stored files, and this file does not fit. "
                "An administrator can change the plan or delete old files."
            )
            % {"plan": limits.plan, "size": filesizeformat(limit)},
            field=quota,
        )
    return ServiceError(
        "quota_exceeded",
        _(
            "Your plan %(plan)s allows %(limit)d %(what)s, and they are used up. "
            "An administrator can change the plan."
        )
        % {"plan": limits.plan, "limit": limit, "what": LABELS[quota]},
        field=quota,
    )


def remaining(quota: str) -> int | None:
    """How many more of the monthly ``quota`` the current tenant may use this month (None:
    unlimited). No Redis call when unlimited."""
    limits = limits_for()
    limit = limits.limits[quota]
    if limit is None:
        return None
    return max(0, limit - used(quota))


def check(quota: str, n: int = 1) -> None:
    """Refuse when ``n`` more of the monthly ``quota`` (``conversations``, ``ai_answers``) would
    pass the current tenant's plan: raises ``ServiceError("quota_exceeded", field=quota)``.
    At most one Redis ``GET``, no database statement once the plan is cached."""
    limits = limits_for()
    limit = limits.limits[quota]
    if limit is not None and used(quota) + n > limit:
        raise _refusal(quota, limits, limit)


def check_total(quota: str, n: int = 1) -> None:
    """Refuse when adding ``n`` (users, channels, bytes) to the current tenant's total of
    ``quota`` (``seats``, ``widget_channels``, ``storage_bytes``) would pass its plan: raises
    ``ServiceError("quota_exceeded", field=quota)``. Runs the quota's meter (a query) only when
    the plan limits it."""
    limits = limits_for()
    limit = limits.limits[quota]
    if limit is not None and total(quota) + n > limit:
        raise _refusal(quota, limits, limit)


def ai_allowed() -> bool:
    """Whether the current tenant may have one more answer written by a language model now: its
    plan has AI answers on and this month's are not used up."""
    limits = limits_for()
    if not limits.feature_ai:
        return False
    limit = limits.limits["ai_answers"]
    return limit is None or used("ai_answers") < limit


def usage_report(tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's usage beside its plan, for the admins' pages: one
    ``{"quota", "label", "used", "limit", "percent"}`` per quota (``limit`` None: unlimited;
    ``percent`` of the limit, capped at 100, None when unlimited). Monthly counts from Redis
    (the roll-up's row when higher), totals from the meters. Runs queries in the tenant's
    schema; call in its context."""
    limits = limits_for(tenant.schema_name)
    row = tenant.usage.filter(month=month_start()).first()
    rows = []
    for quota in (*TOTALS[:2], "conversations", "storage_bytes", "ai_answers"):
        if quota in MONTHLY:
            value = max(used(quota, schema=tenant.schema_name), getattr(row, quota, 0) or 0)
        else:
            value = total(quota)
        limit = limits.limits[quota]
        percent = None if limit is None else (100 if limit == 0 else min(100, value * 100 // limit))
        rows.append(
            {
                "quota": quota,
                "label": LABELS[quota],
                "used": value,
                "limit": limit,
                "percent": percent,
            }
        )
    return rows


def usage_rollup(tenant: Tenant) -> dict[str, int]:
    """Copy the tenant's counters of this month into its :class:`Usage` row, with its storage
    total (the meter), and put a counter back into Redis when the row holds more (Redis was
    flushed). Call in the tenant's context. Returns the row's values."""
    month = month_start()
    row, _created = Usage.objects.get_or_create(tenant=tenant, month=month)
    values: dict[str, int] = {}
    for quota in MONTHLY:
        counted = used(quota, schema=tenant.schema_name)
        stored = getattr(row, quota)
        if counted < stored:
            try:
                _redis().set(_key(tenant.schema_name, quota, month), stored, ex=40 * 86400)
            except RedisError as exc:
                logger.warning("usage of %s not restored: %s", tenant.schema_name, exc)
        values[quota] = max(counted, stored)
    values["storage_bytes"] = total("storage_bytes")
    Usage.objects.filter(pk=row.pk).update(**values, updated_at=timezone.now())
    return values
