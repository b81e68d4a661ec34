"""Work hours of workgroups (KF-7): a workgroup with a business calendar (the organisation's, in
its own time zone, with holidays) is open only within it. Outside them the widget offers to
leave a message instead of chatting, a visitor message that would start a chat is refused with
``closed`` (nothing is stored), and the robot does not hand over."""

from __future__ import annotations

import datetime as dt
import time

from django.db import connection
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from org import business_hours
from org.models import BusinessCalendar
from weiyu.errors import ServiceError

#: seconds a process keeps a calendar before reading it again
CACHE_S = 10.0
_cache: dict[tuple[str, int], tuple[float, business_hours.Calendar | None]] = {}


def _calendar(calendar_id: int) -> business_hours.Calendar | None:
    key = (connection.schema_name, calendar_id)
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is None or now - cached[0] > CACHE_S:
        row = BusinessCalendar.objects.filter(pk=calendar_id).first()
        try:
            calendar = row.as_calendar() if row is not None else None
        except ValueError:  # a calendar without hours: treated as always open
            calendar = None
        cached = (now, calendar)
        _cache[key] = cached
    return cached[1]


def workgroup_hours(
    *, calendar_id: int | None, at: dt.datetime | None = None
) -> tuple[bool, dt.datetime | None]:
    """``(open now, next opening)`` of a workgroup's calendar (``calendar_id`` None: always open,
    next opening None)."""
    if calendar_id is None:
        return True, None
    calendar = _calendar(calendar_id)
    if calendar is None:
        return True, None
    try:
        is_open, opens = business_hours.open_at(calendar, at or timezone.now())
    except ValueError:
        return False, None
    return is_open, opens


def check_open(*, calendar_id: int | None, language: str) -> None:
    """Raise ``ServiceError("closed")`` outside the workgroup's hours, saying when it opens
    (local time of the calendar)."""
    is_open, opens = workgroup_hours(calendar_id=calendar_id)
    if is_open:
        return
    with translation.override(language):
        if opens is None:
            message = _("We are closed now. Please leave a message and we will get back to you.")
        else:
            tz = _calendar(calendar_id).tz  # type: ignore[arg-type, union-attr]
            message = _(
                "We are closed now and open again at %(time)s. Please leave a message and we "
                "will get back to you."
            ) % {"time": opens.astimezone(tz).strftime("%Y-%m-%d %H:%M")}
    raise ServiceError("closed", message)
