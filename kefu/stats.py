"""Customer-service statistics (KF-14): a Celery roll-up writes :class:`kefu.models.DailyStat`
rows from the raw sessions, messages and transfers; :func:`report` reads them for the admin
charts, the API and CSV.

Definitions (a session counts on the local day it started, ``settings.TIME_ZONE``):

- *conversations*: sessions started; *visitor / agent messages*: their public texts and files
  (internal notes, system lines and robot answers are not counted);
- *first response time*: ``first_response_at - assigned_at`` (s), for sessions an agent answered;
- *response time*: for every run of visitor messages answered by an agent, the time from the
  first message of the run to the agent's answer (s), averaged over all such answers;
- *resolution time*: ``closed_at - created_at`` (s) of sessions that ended after an agent
  served them;
- *queue wait*: ``assigned_at - queued_at`` (s) of sessions that were assigned;
- *abandoned*: sessions that ended while still waiting in the queue;
- *transfers*: transfers started that day (to a colleague or a workgroup), for the agent who
  started them;
- *CSAT*: count, sum and distribution (1-5) of ratings of the day's sessions.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from im.models import Message
from kefu.models import DailyStat, Label, Session, Transfer
from org import audit

FIELDS = [
    "conversations", "visitor_messages", "agent_messages", "first_response_count",
    "first_response_total_s", "response_count", "response_total_s", "resolution_count",
    "resolution_total_s", "queue_wait_count", "queue_wait_total_s", "abandoned", "transfers",
    "csat_count", "csat_total", "csat_1", "csat_2", "csat_3", "csat_4", "csat_5",
]  # fmt: skip


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = _zone()
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    return start, start + dt.timedelta(days=1)


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def _add_session(
    row: dict[str, float], session: Session, messages: list[tuple[str, dt.datetime]]
) -> None:
    row["conversations"] += 1
    waiting_since = None
    for sender_type, created_at in messages:
        if sender_type == Message.SenderType.VISITOR:
            row["visitor_messages"] += 1
            waiting_since = waiting_since or created_at
        else:
            row["agent_messages"] += 1
            if waiting_since is not None:
                row["response_count"] += 1
                row["response_total_s"] += _seconds(waiting_since, created_at) or 0.0
                waiting_since = None
    first = _seconds(session.assigned_at, session.first_response_at)
    if first is not None:
        row["first_response_count"] += 1
        row["first_response_total_s"] += first
    wait = _seconds(session.queued_at, session.assigned_at)
    if wait is not None:
        row["queue_wait_count"] += 1
        row["queue_wait_total_s"] += wait
    if session.status == Session.Status.CLOSED:
        if session.agent_id is not None and session.closed_at is not None:
            row["resolution_count"] += 1
            row["resolution_total_s"] += _seconds(session.created_at, session.closed_at) or 0.0
        elif session.assigned_at is None and session.queued_at is not None:
            row["abandoned"] += 1
    if session.csat_score:
        row["csat_count"] += 1
        row["csat_total"] += session.csat_score
        row[f"csat_{session.csat_score}"] += 1


def compute(day: dt.date) -> dict[tuple[int, int | None], dict[str, float]]:
    """The figures of one local day from the raw data: ``{(workgroup id, agent id or None):
    {field: value}}`` (see the module docstring)."""
    start, end = _bounds(day)
    rows: dict[tuple[int, int | None], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(FIELDS, 0)
    )
    sessions = list(Session.objects.filter(created_at__gte=start, created_at__lt=end))
    by_conversation = {s.conversation_id: s for s in sessions}
    messages: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    for conversation_id, sender_type, created_at in (
        Message.objects.filter(conversation_id__in=list(by_conversation), internal=False)
        .exclude(msg_type__in=[Message.Type.SYSTEM, Message.Type.RECALL])
        .filter(sender_type__in=[Message.SenderType.VISITOR, Message.SenderType.AGENT])
        .order_by("conversation_id", "seq")
        .values_list("conversation_id", "sender_type", "created_at")
    ):
        messages[conversation_id].append((sender_type, created_at))
    for session in sessions:
        _add_session(
            rows[(session.workgroup_id, session.agent_id)],
            session,
            messages.get(session.conversation_id, []),
        )
    for transfer in Transfer.objects.filter(
        created_at__gte=start, created_at__lt=end
    ).select_related("session"):
        rows[(transfer.session.workgroup_id, transfer.from_agent_id)]["transfers"] += 1
    return dict(rows)


def rollup(day: dt.date) -> int:
    """Recompute one day's :class:`DailyStat` rows of the current tenant (replacing what was
    there, in one transaction); returns how many rows were written."""
    figures = compute(day)
    with transaction.atomic():
        DailyStat.objects.filter(day=day).delete()
        DailyStat.objects.bulk_create(
            [
                DailyStat(day=day, workgroup_id=wg, agent_id=agent, **values)
                for (wg, agent), values in figures.items()
            ]
        )
    return len(figures)


def stats_refresh(*, start: dt.date, end: dt.date) -> int:
    """Recompute every local day from ``start`` to ``end`` (inclusive) now, one
    :func:`rollup` each (the back office's "recompute" button; the beat keeps today and
    yesterday current by itself). Returns the rows written. Raises ``ValueError`` for a range
    over 366 days or reversed."""
    if end < start or (end - start).days > 366:
        raise ValueError("the range must be 1 to 366 days")
    written = 0
    day = start
    while day <= end:
        written += rollup(day)
        day += dt.timedelta(days=1)
    return written


def computed_at(
    *, start: dt.date, end: dt.date, workgroup_id: int | None = None
) -> dt.datetime | None:
    """When the figures of these days (of one workgroup, or all) were rolled up — the oldest
    roll-up among them — or None when there are none."""
    qs = DailyStat.objects.filter(day__gte=start, day__lte=end)
    if workgroup_id is not None:
        qs = qs.filter(workgroup_id=workgroup_id)
    return qs.order_by("computed_at").values_list("computed_at", flat=True).first()


def _avg(total: float, count: float) -> float | None:
    return round(total / count, 1) if count else None


def _summary(values: dict[str, float]) -> dict[str, Any]:
    return {
        "conversations": int(values["conversations"]),
        "visitor_messages": int(values["visitor_messages"]),
        "agent_messages": int(values["agent_messages"]),
        "first_response_avg_s": _avg(
            values["first_response_total_s"], values["first_response_count"]
        ),
        "response_avg_s": _avg(values["response_total_s"], values["response_count"]),
        "resolution_avg_s": _avg(values["resolution_total_s"], values["resolution_count"]),
        "queue_wait_avg_s": _avg(values["queue_wait_total_s"], values["queue_wait_count"]),
        "abandoned": int(values["abandoned"]),
        "transfers": int(values["transfers"]),
        "csat_count": int(values["csat_count"]),
        "csat_avg": round(values["csat_total"] / values["csat_count"], 2)
        if values["csat_count"]
        else None,
        "csat_distribution": [int(values[f"csat_{n}"]) for n in range(1, 6)],
    }


def report(
    *,
    start: dt.date,
    end: dt.date,
    workgroup_id: int | None = None,
    workgroup_ids: Collection[int] | None = None,
) -> dict[str, Any]:
    """Figures from ``start`` to ``end`` (local dates, inclusive): ``{"time_zone", "start",
    "end", "total": {summary}, "daily": [{"date", …summary}], "agents": [{"id", "name",
    …summary}], "workgroups": [{"id", "name", …summary}]}``; a summary has ``conversations``,
    ``visitor_messages``, ``agent_messages``, ``first_response_avg_s``, ``response_avg_s``,
    ``resolution_avg_s``, ``queue_wait_avg_s`` (seconds or null), ``abandoned``,
    ``transfers``, ``csat_count``, ``csat_avg`` (1-5 or null) and ``csat_distribution`` (counts of
    1…5 stars); ``labels``: see :func:`label_counts`. ``workgroup_ids``: only those
    workgroups (a supervisor's scope, ``kefu.supervision``; None: all). Raises ``ValueError`` for a range over 366 days or reversed."""
    if end < start or (end - start).days > 366:
        raise ValueError("the range must be 1 to 366 days")
    qs = DailyStat.objects.filter(day__gte=start, day__lte=end).select_related("agent", "workgroup")
    if workgroup_id is not None:
        qs = qs.filter(workgroup_id=workgroup_id)
    if workgroup_ids is not None:
        qs = qs.filter(workgroup_id__in=workgroup_ids)
    empty = lambda: dict.fromkeys(FIELDS, 0)  # noqa: E731 - a factory
    total = empty()
    daily: dict[dt.date, dict[str, float]] = {}
    agents: dict[int | None, tuple[str, dict[str, float]]] = {}
    groups: dict[int, tuple[str, dict[str, float]]] = {}
    day = start
    while day <= end:
        daily[day] = empty()
        day += dt.timedelta(days=1)
    for row in qs:
        for field in FIELDS:
            value = getattr(row, field)
            total[field] += value
            daily[row.day][field] += value
            agents.setdefault(row.agent_id, (row.agent.name if row.agent else "", empty()))[1][
                field
            ] += value
            groups.setdefault(row.workgroup_id, (row.workgroup.name, empty()))[1][field] += value
    return {
        "time_zone": settings.TIME_ZONE,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "total": _summary(total),
        "daily": [{"date": d.isoformat(), **_summary(v)} for d, v in daily.items()],
        "agents": sorted(
            ({"id": k, "name": n, **_summary(v)} for k, (n, v) in agents.items()),
            key=lambda r: (r["id"] is None, r["name"]),
        ),
        "workgroups": sorted(
            ({"id": k, "name": n, **_summary(v)} for k, (n, v) in groups.items()),
            key=lambda r: r["name"],
        ),
        "labels": label_counts(
            start=start, end=end, workgroup_id=workgroup_id, workgroup_ids=workgroup_ids
        ),
    }


def label_counts(
    *,
    start: dt.date,
    end: dt.date,
    workgroup_id: int | None = None,
    workgroup_ids: Collection[int] | None = None,
) -> list[dict[str, Any]]:
    """Conversations started from ``start`` to ``end`` (local days, inclusive) per label they
    carry now: ``[{"id", "name", "color", "conversations"}]``, every label, most used first.
    Read from the sessions (labels change after the day's roll-up), one query."""
    zone = ZoneInfo(settings.TIME_ZONE)
    since = dt.datetime.combine(start, dt.time.min, tzinfo=zone)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    sessions = Q(sessions__created_at__gte=since, sessions__created_at__lt=until)
    if workgroup_id is not None:
        sessions &= Q(sessions__workgroup_id=workgroup_id)
    if workgroup_ids is not None:
        sessions &= Q(sessions__workgroup_id__in=workgroup_ids)
    rows = Label.objects.annotate(n=Count("sessions", filter=sessions)).order_by("-n", "name")
    return [{"id": lb.pk, "name": lb.name, "color": lb.color, "conversations": lb.n} for lb in rows]


CSV_COLUMNS = [
    "conversations", "visitor_messages", "agent_messages", "first_response_avg_s",
    "response_avg_s", "resolution_avg_s", "queue_wait_avg_s", "abandoned", "transfers",
    "csat_count", "csat_avg", "csat_1", "csat_2", "csat_3", "csat_4", "csat_5",
]  # fmt: skip


def csv_rows(data: dict[str, Any], part: str) -> list[list[Any]]:
    """One part of a report (``daily``, ``agents``, ``workgroups`` or ``labels``) as CSV rows,
    header first."""
    if part == "labels":
        return [["label", "conversations"]] + [
            [row["name"], row["conversations"]] for row in data["labels"]
        ]
    key = {"daily": "date", "agents": "name", "workgroups": "name"}[part]
    rows: list[list[Any]] = [[key, *CSV_COLUMNS]]
    for item in data[part]:
        dist = item["csat_distribution"]
        values = [
            item[c]
            if not c.startswith("csat_") or c in ("csat_count", "csat_avg")
            else dist[int(c[-1]) - 1]
            for c in CSV_COLUMNS
        ]
        rows.append([item[key], *("" if v is None else v for v in values)])
    return rows


def export_record(*, user: Any, part: str, start: dt.date, end: dt.date) -> None:
    """Record a CSV export of the statistics (``part``, local days ``start`` to ``end``) by
    ``user`` in the audit log, with the request's address (:func:`org.audit.audit_record`)."""
    audit.audit_record(
        actor=user,
        action=audit.EXPORT,
        target=DailyStat,
        data={"report": "service_statistics", "part": part, "start": str(start), "end": str(end)},
    )
