"""Checking service input that arrives as JSON (API bodies, websocket frames, admin forms).

Each helper returns the cleaned value or raises :class:`weiyu.errors.ServiceError` with code
``invalid``, a translated message naming the field, and ``field`` set, so a client can point at
the offending input. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from weiyu.errors import ServiceError


def text(value: object, field: str, limit: int, *, required: bool = True) -> str:
    """``value`` stripped; ``None`` counts as empty. Errors: not a string ("must be text"),
    empty when ``required`` ("is required"), longer than ``limit`` characters after stripping."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ServiceError("invalid", _("%(field)s must be text.") % {"field": field}, field=field)
    value = value.strip()
    if required and not value:
        raise ServiceError("invalid", _("%(field)s is required.") % {"field": field}, field=field)
    if len(value) > limit:
        raise ServiceError(
            "invalid",
            _("%(field)s is longer than %(limit)d characters.") % {"field": field, "limit": limit},
            field=field,
        )
    return value


def choice(value: object, field: str, choices: Any) -> str:
    """``value`` if it is one of ``choices.values`` (a Django ``TextChoices`` class), listing the
    allowed values in the error otherwise."""
    if value not in choices.values:
        raise ServiceError(
            "invalid",
            _("%(field)s must be one of: %(values)s.")
            % {"field": field, "values": ", ".join(choices.values)},
            field=field,
        )
    return str(value)


def positive_int(value: object, field: str) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least 1: ids in JSON input."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServiceError(
            "invalid", _("%(field)s must be a positive integer.") % {"field": field}, field=field
        )
    return value


#: a primary key given by a client: :func:`positive_int`
pk = positive_int


def boolean(value: object, field: str) -> bool:
    """``value`` if it is a JSON boolean (``1``, ``"true"`` and ``None`` are refused)."""
    if not isinstance(value, bool):
        raise ServiceError(
            "invalid", _("%(field)s must be true or false.") % {"field": field}, field=field
        )
    return value


def optional_datetime(value: object, field: str) -> dt.datetime | None:
    """``None`` for ``None`` or ``""``; else an ISO 8601 date-time string with a time zone, as an
    aware datetime. A naive or unparsable value is refused."""
    if value in (None, ""):
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ServiceError(
            "invalid",
            _("%(field)s must be an ISO 8601 date-time with a time zone.") % {"field": field},
            field=field,
        )
    return parsed
