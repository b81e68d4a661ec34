"""Ticket reports (TK-4): per day, per agent, per workgroup and per SLA target, over a date range.

All figures are computed from the tickets and clocks themselves (no separate aggregate tables), in
the tenant's display time zone (``settings.TIME_ZONE``) for day boundaries:

* **created** / **solved** per day: tickets whose ``created_at`` / ``solved_at`` falls on that day;
  **backlog** at the end of a day: tickets created by then that were neither solved nor closed by
  then (merged tickets count as closed when merged).
* **first response time**: ``first_responded_at - created_at``; **resolution time**:
  ``solved_at - created_at`` (wall-clock seconds; SLA targets use business time instead).
  Distributions in buckets of :data:`BUCKETS`.
* **SLA attainment** per policy and target: of the clocks that finished in the range (met, or
  breached and not cancelled), the share met on time. A clock is on time when it was met and never
  breached.

Reports are returned as plain dicts/lists (``daily``, ``agents``, ``workgroups``, ``sla``,
``first_response``, ``resolution``) and as CSV rows for export.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q

from org import audit
from tickets.models import SlaClock, Ticket

#: distribution buckets, upper bounds in seconds (the last one is open-ended)
BUCKETS: list[tuple[str, float]] = [
    ("< 1 h", 3600),
    ("1–4 h", 4 * 3600),
    ("4–8 h", 8 * 3600),
    ("8–24 h", 24 * 3600),
    ("1–3 d", 72 * 3600),
    ("> 3 d", float("inf")),
]


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = _zone()
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=tz),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz),
    )


def _day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(_zone()).date()


def _bucket(seconds: float) -> str:
    for label, upper in BUCKETS:
        if seconds < upper:
            return label
    return BUCKETS[-1][0]  # pragma: no cover


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def build(*, start: dt.date, end: dt.date, workgroup_ids: set[int] | None = None) -> dict[str, Any]:
    """The whole report for local dates ``start`` … ``end`` (inclusive), over every ticket or,
    with ``workgroup_ids``, over the tickets of those workgroups only (a supervisor's scope,
    :func:`tickets.selectors.report_scope`). Raises ``ValueError`` when ``end`` is before
    ``start`` or the range exceeds 366 days."""
    if end < start or (end - start).days > 366:
        raise ValueError("the range must be 1 to 367 days, start first")
    lo, hi = _bounds(start, end)
    scoped = Ticket.objects.all()
    if workgroup_ids is not None:
        scoped = scoped.filter(workgroup_id__in=workgroup_ids)
    tickets = list(
        scoped.filter(
            Q(created_at__lt=hi)
            & (
                Q(created_at__gte=lo)
                | Q(solved_at__gte=lo)
                | Q(closed_at__gte=lo)
                | Q(status__in=("new", "open", "pending", "on_hold"))
            )
        ).select_related("assignee", "workgroup")
    )
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    created = Counter(_day(t.created_at) for t in tickets if lo <= t.created_at < hi)
    solved = Counter(_day(t.solved_at) for t in tickets if t.solved_at and lo <= t.solved_at < hi)
    daily = []
    for day in days:
        _lo, day_end = _bounds(day, day)
        backlog = sum(
            1
            for t in tickets
            if t.created_at < day_end
            and not (t.solved_at and t.solved_at < day_end)
            and not (t.closed_at and t.closed_at < day_end)
        )
        daily.append(
            {
                "date": day.isoformat(),
                "created": created[day],
                "solved": solved[day],
                "backlog": backlog,
            }
        )

    in_range = [t for t in tickets if lo <= t.created_at < hi]
    first = [
        (t, (t.first_responded_at - t.created_at).total_seconds())
        for t in in_range
        if t.first_responded_at
    ]
    resolution = [
        (t, (t.solved_at - t.created_at).total_seconds())
        for t in tickets
        if t.solved_at and lo <= t.solved_at < hi
    ]

    def distribution(pairs: list[tuple[Ticket, float]]) -> list[dict[str, Any]]:
        counts = Counter(_bucket(s) for _t, s in pairs)
        return [{"bucket": label, "tickets": counts[label]} for label, _u in BUCKETS]

    def group(key: Any, name: Any) -> list[dict[str, Any]]:
        rows: dict[Any, dict[str, Any]] = {}
        firsts: dict[Any, list[float]] = defaultdict(list)
        resolutions: dict[Any, list[float]] = defaultdict(list)
        for t in in_range:
            rows.setdefault(key(t), {"name": name(t), "created": 0, "solved": 0})["created"] += 1
        for t, s in first:
            firsts[key(t)].append(s)
        for t, s in resolution:
            rows.setdefault(key(t), {"name": name(t), "created": 0, "solved": 0})["solved"] += 1
            resolutions[key(t)].append(s)
        return [
            {
                "id": k,
                **row,
                "first_response_avg_s": _mean(firsts[k]),
                "resolution_avg_s": _mean(resolutions[k]),
            }
            for k, row in sorted(rows.items(), key=lambda kv: kv[1]["name"] or "")
        ]

    clock_rows = SlaClock.objects.filter(cancelled=False)
    if workgroup_ids is not None:
        clock_rows = clock_rows.filter(ticket__workgroup_id__in=workgroup_ids)
    clocks = clock_rows.filter(
        Q(met_at__gte=lo, met_at__lt=hi)
        | Q(met_at__isnull=True, breached_at__gte=lo, breached_at__lt=hi)
    ).select_related("ticket__sla_policy")
    sla: dict[tuple[str, str], dict[str, Any]] = {}
    for c in clocks:
        policy = c.ticket.sla_policy.name if c.ticket.sla_policy else ""
        row = sla.setdefault(
            (policy, c.kind),
            {"policy": policy, "target": c.kind, "finished": 0, "met": 0, "breached": 0},
        )
        row["finished"] += 1
        if c.breached_at is None and c.met_at is not None:
            row["met"] += 1
        else:
            row["breached"] += 1
    sla_rows = []
    for row in sorted(sla.values(), key=lambda r: (r["policy"], r["target"])):
        row["attainment_pct"] = (
            round(100 * row["met"] / row["finished"], 1) if row["finished"] else None
        )
        sla_rows.append(row)

    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "time_zone": settings.TIME_ZONE,
        "daily": daily,
        "first_response": distribution(first),
        "resolution": distribution(resolution),
        "agents": group(lambda t: t.assignee_id, lambda t: t.assignee.name if t.assignee else ""),
        "workgroups": group(
            lambda t: t.workgroup_id, lambda t: t.workgroup.name if t.workgroup else ""
        ),
        "sla": sla_rows,
    }


#: CSV exports: report part → column names
CSV_COLUMNS: dict[str, list[str]] = {
    "daily": ["date", "created", "solved", "backlog"],
    "agents": ["id", "name", "created", "solved", "first_response_avg_s", "resolution_avg_s"],
    "workgroups": ["id", "name", "created", "solved", "first_response_avg_s", "resolution_avg_s"],
    "sla": ["policy", "target", "finished", "met", "breached", "attainment_pct"],
    "first_response": ["bucket", "tickets"],
    "resolution": ["bucket", "tickets"],
}


def csv_rows(report: dict[str, Any], part: str) -> list[list[Any]]:
    """Header and rows of one part of :func:`build`'s report. ``KeyError`` for an unknown part."""
    columns = CSV_COLUMNS[part]
    return [columns] + [
        [row.get(c) if row.get(c) is not None else "" for c in columns] for row in report[part]
    ]


def export_record(*, user: Any, part: str, start: dt.date, end: dt.date) -> None:
    """Record a CSV export of the ticket report (``part``, local days ``start`` to ``end``) by
    ``user`` in the audit log, with the request's address (:func:`org.audit.audit_record`)."""
    audit.audit_record(
        actor=user,
        action=audit.EXPORT,
        target=Ticket,
        data={"report": "ticket_report", "part": part, "start": str(start), "end": str(end)},
    )
