"""The visitor panel (KF-11): what agents know about a visitor — browser and OS (parsed from the
user agent with ``ua-parser``), IP address, language, referrer, the page trail, tags, notes and
past conversations. The changes agents make to it (tags, notes) are in
:mod:`kefu.services.visitors`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

from kefu import geo
from kefu.models import Session, Visitor
from org.models import User
from weiyu.errors import ServiceError

TRAIL_LIMIT = 30
PAST_LIMIT = 20
TAG_MAX = 64
NOTE_MAX = 2000


@lru_cache(maxsize=4096)
def device(user_agent: str) -> dict[str, str]:
    """``{"browser", "os", "device"}`` of a user agent, e.g. ``{"browser": "Chrome 120", "os":
    "Windows 10", "device": "Other"}`` (empty strings when unknown)."""
    if not user_agent:
        return {"browser": "", "os": "", "device": ""}
    from ua_parser import parse

    result = parse(user_agent)

    def label(part: Any) -> str:
        if part is None or part.family in (None, "Other"):
            return ""
        return " ".join(x for x in (part.family, part.major) if x)

    return {
        "browser": label(result.user_agent),
        "os": label(result.os),
        "device": result.device.family if result.device and result.device.family != "Other" else "",
    }


def visitor_get(visitor_id: object) -> Visitor:
    """The visitor with this id (and its channel); ``ServiceError`` ``invalid`` or ``not_found``."""
    if isinstance(visitor_id, bool) or not isinstance(visitor_id, int):
        raise ServiceError("invalid", _("visitor_id must be an integer."), field="visitor_id")
    visitor = Visitor.objects.select_related("channel").filter(pk=visitor_id).first()
    if visitor is None:
        raise ServiceError("not_found", _("No such visitor."), field="visitor_id")
    return visitor


def staff_require(user: User) -> None:
    """``ServiceError("forbidden")`` unless ``user`` is an agent or staff."""
    if not (user.is_agent or user.is_staff):
        raise ServiceError("forbidden", _("Only agents can see visitors."))


def profile(*, user: User, visitor_id: object) -> dict[str, Any]:
    """The visitor panel: ``{"id", "name", "channel", "ip_address", "location" (null, or
    ``{"country", "country_code", "region", "city", "text"}`` with ``GEOIP_PATH``), "language", "referrer",
    "page_url", "user_agent", "browser", "os", "device", "first_seen", "last_seen", "tags":
    [name], "external_id" (the customer id of Weiyu.identify, or ""), "attributes": {key: value}
    (custom contact attributes), "merged_into" (the contact it was merged into, or null), "notes": [{"id", "text", "author", "created_at"}], "trail": [{"url", "title",
    "at"}] (newest first, ≤ 30), "conversations": [{"conversation_id", "status", "agent",
    "workgroup", "created_at", "closed_at", "csat"}] (newest first, ≤ 20)}``.

    Raises ``ServiceError``: ``invalid``, ``not_found``, ``forbidden`` (not an agent).
    """
    staff_require(user)
    visitor = visitor_get(visitor_id)
    sessions = (
        Session.objects.filter(visitor=visitor)
        .select_related("agent", "workgroup")
        .order_by("-created_at")[:PAST_LIMIT]
    )
    return {
        "id": visitor.pk,
        "name": visitor.name,
        "channel": visitor.channel.name,
        "ip_address": visitor.ip_address,
        "location": geo.locate(visitor.ip_address, language=translation.get_language() or "en"),
        "language": visitor.language,
        "timezone": visitor.timezone,
        "referrer": visitor.referrer,
        "page_url": visitor.page_url,
        "user_agent": visitor.user_agent,
        **device(visitor.user_agent),
        "first_seen": visitor.created_at.isoformat(),
        "last_seen": visitor.last_seen_at.isoformat(),
        "tags": list(visitor.tags.order_by("name").values_list("name", flat=True)),
        "external_id": visitor.external_id,
        "attributes": visitor.attributes or {},
        "merged_into": visitor.merged_into_id,
        "notes": [
            {
                "id": note.pk,
                "text": note.text,
                "author": note.author.name if note.author else "",
                "created_at": note.created_at.isoformat(),
            }
            for note in visitor.notes.select_related("author")[:50]
        ],
        "trail": [
            {"url": view.url, "title": view.title, "at": view.created_at.isoformat()}
            for view in visitor.page_views.all()[:TRAIL_LIMIT]
        ],
        "conversations": [
            {
                "conversation_id": s.conversation_id,
                "status": s.status,
                "agent": s.agent.name if s.agent else None,
                "workgroup": s.workgroup.name,
                "created_at": s.created_at.isoformat(),
                "closed_at": s.closed_at.isoformat() if s.closed_at else None,
                "csat": s.csat_score,
            }
            for s in sessions
        ],
    }
