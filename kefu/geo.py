"""Approximate visitor location (KF-11) from a MaxMind-format city or country database (e.g.
GeoLite2-City.mmdb), read with ``maxminddb`` when ``GEOIP_PATH`` names one; without it (or for
private addresses) there is no location. Names come in the reader's language when the database
has it (zh-CN, en), else in English."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _reader(path: str) -> Any:
    import maxminddb

    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError) as exc:
        logger.warning("GeoIP database %s cannot be read: %s", path, exc)
        return None


def _name(part: dict[str, Any] | None, language: str) -> str:
    names = (part or {}).get("names") or {}
    return names.get("zh-CN" if language.startswith("zh") else "en") or names.get("en") or ""


def locate(ip: str | None, *, language: str = "en") -> dict[str, str] | None:
    """``{"country", "country_code", "region", "city", "text"}`` for an IP address, or None
    (no database configured, unknown or malformed address). ``text``: "city, region, country"."""
    path = os.environ.get("GEOIP_PATH", "")
    if not ip or not path:
        return None
    reader = _reader(path)
    if reader is None:
        return None
    try:
        record = reader.get(ip)
    except ValueError:
        return None
    if not record:
        return None
    country = _name(record.get("country"), language)
    region = _name((record.get("subdivisions") or [None])[0], language)
    city = _name(record.get("city"), language)
    return {
        "country": country,
        "country_code": (record.get("country") or {}).get("iso_code", ""),
        "region": region,
        "city": city,
        "text": ", ".join(x for x in (city, region, country) if x),
    }
