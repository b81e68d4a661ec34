"""Business-hours arithmetic for SLA targets (TK-2) and work hours (KF-7): pure, no database.

A :class:`Calendar` is a time zone, weekly opening hours in local wall-clock time and a set of
holidays (local dates). :func:`add` answers "when is ``seconds`` of business time after
``start``?" and :func:`between` "how much business time lies between two instants?". Both take
and return timezone-aware datetimes; the arithmetic is exact (``timedelta``, microseconds).

Wall-clock hours are turned into instants day by day in the calendar's zone, so daylight-saving
changes are honoured: on the night clocks go forward, hours that do not exist count nothing; on
the night they go back, an interval that spans the repeated hour lasts one hour longer, as it does
on the wall. ``calendar=None`` means around the clock (plain arithmetic).

Conventions follow Zendesk's SLA documentation ("business hours" targets): a clock started outside
business hours starts counting at the next opening; a target ending exactly at closing time is
due at closing time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

UTC = dt.UTC
#: how far ahead (days) the calculator looks for business time before giving up
HORIZON_DAYS = 3 * 366


@dataclass(frozen=True)
class Calendar:
    """Weekly hours and holidays in one time zone.

    ``week``: seven tuples (Monday first) of ``(start_minute, end_minute)`` local wall-clock
    intervals, ``0 <= start < end <= 1440``, sorted and not overlapping. ``holidays``: local dates
    with no business hours at all.
    """

    tz: ZoneInfo
    week: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("week needs seven days, Monday first")
        for day in self.week:
            previous_end = 0
            for start, end in day:
                if not (0 <= start < end <= 1440) or start < previous_end:
                    raise ValueError(f"bad or overlapping interval {start}-{end}")
                previous_end = end
        if not any(self.week):
            raise ValueError("a calendar needs some business hours")


def _instant(tz: ZoneInfo, day: dt.date, minute: int) -> dt.datetime:
    """The UTC instant of local wall time ``day`` + ``minute``. A wall time that does not exist
    (clocks went forward) maps to the first one after the gap, so the mapping never goes back."""
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)
    for _ in range(24 * 60):
        utc = naive.replace(tzinfo=tz).astimezone(UTC)
        if utc.astimezone(tz).replace(tzinfo=None) == naive:
            return utc
        naive += dt.timedelta(minutes=1)
    raise ValueError(f"no valid local time after {naive} in {tz}")  # pragma: no cover


def intervals(calendar: Calendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Business intervals ``(a, b)`` in UTC that end after ``start``, in order, the first one
    clipped to begin at ``start``. Raises ``ValueError`` past :data:`HORIZON_DAYS`."""
    start = start.astimezone(UTC)
    first_day = start.astimezone(calendar.tz).date() - dt.timedelta(days=1)
    for offset in range(HORIZON_DAYS):
        day = first_day + dt.timedelta(days=offset)
        if day in calendar.holidays:
            continue
        for start_minute, end_minute in calendar.week[day.weekday()]:
            a = _instant(calendar.tz, day, start_minute)
            b = _instant(calendar.tz, day, end_minute)
            if b <= start or b <= a:
                continue
            yield max(a, start), b
    raise ValueError(f"no business hours within {HORIZON_DAYS} days of {start}")


def add(calendar: Calendar | None, start: dt.datetime, seconds: float) -> dt.datetime:
    """The instant ``seconds`` (≥ 0) of business time after ``start`` (aware datetime).

    ``add(c, t, 0) == t``. Raises ``ValueError`` for a negative duration or a naive datetime.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    remaining = dt.timedelta(seconds=seconds)
    if calendar is None or not remaining:
        return (start + remaining).astimezone(UTC)
    for a, b in intervals(calendar, start):
        if b - a >= remaining:
            return a + remaining
        remaining -= b - a
    raise AssertionError("unreachable")  # pragma: no cover


def between(calendar: Calendar | None, a: dt.datetime, b: dt.datetime) -> float:
    """Business seconds in ``[a, b)``; 0 when ``b <= a``."""
    if a.tzinfo is None or b.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    if b <= a:
        return 0.0
    if calendar is None:
        return (b - a).total_seconds()
    total = dt.timedelta()
    for start, end in intervals(calendar, a):
        if start >= b:
            break
        total += min(end, b) - start
    return total.total_seconds()


def open_at(calendar: Calendar | None, at: dt.datetime) -> tuple[bool, dt.datetime]:
    """Whether ``at`` (aware) falls in business hours, and when they next begin (``at`` itself
    when open; always open without a calendar). Raises ``ValueError`` past the horizon."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(UTC)
    if calendar is None:
        return True, at
    start, _end = next(intervals(calendar, at))
    return start == at, start
