"""What every report page and report API shares: the date range of the query string, the choice
of a CSV export, and the CSV download itself.

Query string: ``start`` and ``end`` are local dates (``YYYY-MM-DD``); ``end`` defaults to today,
``start`` to :data:`DEFAULT_DAYS` days ending at ``end``; ``export=csv&part=<name>`` asks for one
part of the report as CSV (``part`` defaults to ``daily``).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from weiyu.errors import ServiceError

#: the range shown when the query names none: the last 30 days, today included
DEFAULT_DAYS = 30
#: the widest range a report covers: ``end - start`` at most 366 days (a leap year, both ends in)
MAX_SPAN_DAYS = 366


def default_range(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """``(start, end)`` of the last :data:`DEFAULT_DAYS` days up to ``today`` (local)."""
    end = today or timezone.localdate()
    return end - dt.timedelta(days=DEFAULT_DAYS - 1), end


def date_range(params: Mapping[str, Any], today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """``(start, end)`` from ``params`` (``request.GET`` or DRF's ``query_params``), defaults as
    the module says. Raises ``ValueError`` for a value that is not an ISO date, an ``end`` before
    ``start``, or a range over :data:`MAX_SPAN_DAYS`."""
    end = dt.date.fromisoformat(params.get("end") or (today or timezone.localdate()).isoformat())
    start = dt.date.fromisoformat(
        params.get("start") or (end - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    )
    if end < start or (end - start).days > MAX_SPAN_DAYS:
        raise ValueError("the range must be 1 to 367 days, start first")
    return start, end


def range_message() -> str:
    """The message shown (API body, admin banner) when :func:`date_range` refused the query."""
    return _("Give a start and an end date (at most a year apart).")


def range_error(*, field: str | None = None) -> ServiceError:
    """The 400 ``invalid`` error of an API whose range was refused (raise it ``from`` the
    ``ValueError``); ``field`` as the API has always named it (or none)."""
    return ServiceError("invalid", range_message(), field=field)


def csv_part(
    params: Mapping[str, Any],
    parts: Iterable[str],
    *,
    default: str = "daily",
    unknown: str | None = None,
) -> str | None:
    """The part to export, or ``None`` when the query does not ask for ``export=csv``. An unknown
    ``part``: ``ServiceError("invalid", unknown, field="part")`` when ``unknown`` (a message) is
    given (APIs), else ``default`` (admin pages)."""
    if params.get("export") != "csv":
        return None
    part = params.get("part", default)
    if part not in set(parts):
        if unknown is not None:
            raise ServiceError("invalid", unknown, field="part")
        part = default
    return part


def csv_response(rows: Iterable[Sequence[Any]], filename: str, *, bom: bool = True) -> HttpResponse:
    """A UTF-8 CSV download of ``rows`` (header first) named ``filename``. ``bom``: start with a
    byte-order mark so Excel reads Chinese names correctly."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if bom:
        response.write("\ufeff")
    csv.writer(response).writerows(rows)
    return response
