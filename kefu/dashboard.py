"""The back office's landing dashboard, customer-service part (KF-14): today's conversations,
who waits now, response and resolution times, CSAT, and the busiest hours.

Every figure comes from the function behind the API that shows it, so the two always agree:
:func:`kefu.stats.report` (``GET /api/v1/kefu/stats``, rolled up by Celery every
``KEFU_STATS_INTERVAL_S``) and :func:`kefu.monitor.snapshot` (``GET /api/v1/kefu/monitor``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import ExtractHour
from django.utils import timezone

from kefu import monitor, stats, supervision
from kefu.models import Session

#: the period of the times, CSAT and busiest hours: the last 7 local days, today included
PERIOD_DAYS = 7


def busiest_hours(
    *, start: dt.date, end: dt.date, workgroup_ids: Collection[int] | None = None
) -> list[int]:
    """Conversations (sessions) started in each local hour 0-23 (``settings.TIME_ZONE``) from
    ``start`` to ``end`` (local dates, inclusive), of ``workgroup_ids`` (None: all): a list of
    24 counts. One query."""
    tz = ZoneInfo(settings.TIME_ZONE)
    lo = dt.datetime.combine(start, dt.time(), tzinfo=tz)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    counts = [0] * 24
    sessions = Session.objects.filter(created_at__gte=lo, created_at__lt=hi)
    if workgroup_ids is not None:
        sessions = sessions.filter(workgroup_id__in=workgroup_ids)
    rows = (
        sessions.annotate(hour=ExtractHour("created_at", tzinfo=tz))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["hour"]] = row["n"]
    return counts


def figures(*, user: Any, today: dt.date | None = None) -> dict[str, Any]:
    """``{"today", "start", "conversations_today", "waiting_now", "longest_wait_s",
    "week": {summary of kefu.stats.report}, "hours": [24 counts], "busiest_hour": 0-23|None}``
    for a supervisor (``kefu.monitor.is_supervisor``; raises ``ServiceError("forbidden")``
    otherwise). ``week`` covers :data:`PERIOD_DAYS` local days ending today."""
    today = today or timezone.localdate()
    start = today - dt.timedelta(days=PERIOD_DAYS - 1)
    live = monitor.snapshot(user=user)
    scope = supervision.supervised_workgroup_ids(user)  # a supervisor: their workgroups only
    hours = busiest_hours(start=start, end=today, workgroup_ids=scope)
    waits = [w["longest_wait_s"] for w in live["workgroups"] if w["longest_wait_s"] is not None]
    return {
        "today": today.isoformat(),
        "start": start.isoformat(),
        "conversations_today": stats.report(start=today, end=today, workgroup_ids=scope)["total"][
            "conversations"
        ],
        "waiting_now": sum(w["queue_length"] for w in live["workgroups"]),
        "longest_wait_s": max(waits) if waits else None,
        "week": stats.report(start=start, end=today, workgroup_ids=scope)["total"],
        "hours": hours,
        "busiest_hour": hours.index(max(hours)) if any(hours) else None,
    }
