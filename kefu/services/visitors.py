"""Visitors: the signed widget token, and starting or resuming a visitor."""

from __future__ import annotations

from django.core import signing
from django.db import connection
from django.utils import translation
from django.utils.translation import gettext as _

from kefu.models import Channel, Visitor
from kefu.senders import language_for as _language_for
from weiyu.errors import ServiceError

VISITOR_TOKEN_SALT = "weiyu.kefu.visitor"  # noqa: S105 - a salt, not a secret
VISITOR_TOKEN_MAX_AGE = 365 * 24 * 3600  # seconds


def visitor_token_make(visitor: Visitor) -> str:
    """A signed token naming the visitor *and the tenant schema*, so it is refused elsewhere."""
    return signing.dumps(
        {"v": visitor.pk, "s": connection.schema_name}, salt=VISITOR_TOKEN_SALT, compress=True
    )


def visitor_from_token(token: object) -> Visitor:
    """The visitor a token names. Raises ``ServiceError("invalid_token")`` for a malformed,
    tampered, expired (1 year) or other-tenant token, or a visitor that no longer exists."""
    error = ServiceError(
        "invalid_token", _("Your chat session is not valid here. Please reload the page.")
    )
    if not isinstance(token, str) or len(token) > 512:
        raise error
    try:
        data = signing.loads(token, salt=VISITOR_TOKEN_SALT, max_age=VISITOR_TOKEN_MAX_AGE)
    except signing.BadSignature as exc:
        raise error from exc
    if not isinstance(data, dict) or data.get("s") != connection.schema_name:
        raise error
    visitor = Visitor.objects.select_related("channel").filter(pk=data.get("v")).first()
    if visitor is None:
        raise error
    return visitor


def _clip(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def visitor_start(
    *,
    channel: Channel,
    token: object = None,
    ip_address: str | None = None,
    user_agent: str = "",
    page_url: object = "",
    referrer: object = "",
    language: object = "",
) -> tuple[Visitor, str]:
    """Resume the visitor named by ``token`` on this channel, or create a new one.

    Returns ``(visitor, token)``. A bad or foreign token is not an error: a new visitor is made.
    """
    visitor = None
    if token:
        try:
            visitor = visitor_from_token(token)
        except ServiceError:
            visitor = None
        if visitor is not None and visitor.channel_id != channel.pk:
            visitor = None
    fields = {
        "ip_address": ip_address,
        "user_agent": _clip(user_agent, 500),
        "page_url": _clip(page_url, 2000),
        "referrer": _clip(referrer, 2000),
        "language": _clip(language, 16),
    }
    if visitor is None:
        visitor = Visitor.objects.create(channel=channel, name="", **fields)
        with translation.override(_language_for(visitor)):
            visitor.name = _("Visitor %(number)04d") % {"number": visitor.pk % 10000}
        visitor.save(update_fields=["name"])
    else:
        for key, value in fields.items():
            if value or key == "ip_address":
                setattr(visitor, key, value)
        visitor.save(update_fields=[*fields, "last_seen_at"])
    return visitor, visitor_token_make(visitor)
