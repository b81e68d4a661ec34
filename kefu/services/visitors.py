"""Visitors: the signed widget token, starting or resuming a visitor, the page trail, and the
changes agents and the back office make to what is known of them (KF-11): details, tags and
notes, each followed by ``visitor.updated`` to the agents serving the visitor."""

from __future__ import annotations

from datetime import timedelta

from django.core import signing
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kefu import selectors
from kefu.models import Channel, Session, Visitor, VisitorNote, VisitorPageView, VisitorTag
from kefu.senders import language_for
from kefu.visitors import NOTE_MAX, TAG_MAX, staff_require, visitor_get
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

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
    return visitor_from_signed(token, salt=VISITOR_TOKEN_SALT, max_age=VISITOR_TOKEN_MAX_AGE)


def visitor_from_signed(token: object, *, salt: str, max_age: int) -> Visitor:
    """The visitor a signed ``{"v": visitor id, "s": schema}`` token names (``salt`` tells
    which kind of token; ``max_age`` in s). Raises ``ServiceError("invalid_token")`` for a
    malformed (not a string, or over 512 characters), tampered, expired or other-tenant token,
    or a visitor that no longer exists."""
    error = ServiceError(
        "invalid_token", _("Your chat session is not valid here. Please reload the page.")
    )
    if not isinstance(token, str) or len(token) > 512:
        raise error
    try:
        data = signing.loads(token, salt=salt, max_age=max_age)
    except signing.BadSignature as exc:
        raise error from exc
    if not isinstance(data, dict) or data.get("s") != connection.schema_name:
        raise error
    visitor_id = data.get("v")
    if isinstance(visitor_id, bool) or not isinstance(visitor_id, int):
        raise error
    visitor = selectors.visitor_with_channel(visitor_id=visitor_id)
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
        with translation.override(language_for(visitor)):
            visitor.name = _("Visitor %(number)04d") % {"number": visitor.pk % 10000}
        visitor.save(update_fields=["name"])
    else:
        for key, value in fields.items():
            if value or key == "ip_address":
                setattr(visitor, key, value)
        visitor.save(update_fields=[*fields, "last_seen_at"])
    return visitor, visitor_token_make(visitor)


def page_view_record(*, visitor: Visitor, url: object, title: object = "") -> None:
    """Add a page to the visitor's trail (ignored when empty, or the same page within a minute)."""
    if not isinstance(url, str) or not url.strip():
        return
    url = url.strip()[:2000]
    recent = VisitorPageView.objects.filter(
        visitor=visitor, url=url, created_at__gte=timezone.now() - timedelta(minutes=1)
    ).exists()
    if not recent:
        VisitorPageView.objects.create(
            visitor=visitor, url=url, title=title[:200] if isinstance(title, str) else ""
        )


def visitor_changed_publish(visitor: Visitor) -> None:
    """Tell the agents serving the visitor that the profile changed (``visitor.updated``)."""
    agents = set(
        Session.objects.filter(visitor=visitor, agent__isnull=False)
        .exclude(status=Session.Status.CLOSED)
        .values_list("agent_id", flat=True)
    )
    publish_event_on_commit(
        {"type": "visitor.updated", "visitor_id": visitor.pk}, [f"u:{a}" for a in agents]
    )


def tag_add(*, user: User, visitor_id: object, name: object) -> list[str]:
    """Tag the visitor (the tag is created when new; case as typed, matched case-insensitively).
    Returns the visitor's tags. ``ServiceError("invalid")`` for an empty or too long name."""
    staff_require(user)
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > TAG_MAX:
        raise ServiceError("invalid", _("A tag is 1 to 64 characters."), field="name")
    with transaction.atomic():
        visitor = visitor_get(visitor_id)
        clean = name.strip()
        tag = VisitorTag.objects.filter(name__iexact=clean).first()
        if tag is None:
            tag, _created = VisitorTag.objects.get_or_create(name=clean)
        visitor.tags.add(tag)
        visitor_changed_publish(visitor)
        return list(visitor.tags.order_by("name").values_list("name", flat=True))


def tag_remove(*, user: User, visitor_id: object, name: object) -> list[str]:
    """Take a tag off the visitor; returns the visitor's tags."""
    staff_require(user)
    with transaction.atomic():
        visitor = visitor_get(visitor_id)
        if isinstance(name, str):
            visitor.tags.remove(*VisitorTag.objects.filter(name__iexact=name.strip()))
        visitor_changed_publish(visitor)
        return list(visitor.tags.order_by("name").values_list("name", flat=True))


def note_add(*, user: User, visitor_id: object, text: object) -> VisitorNote:
    """Keep a note about the visitor. ``ServiceError("invalid")`` for empty or over 2,000
    characters."""
    staff_require(user)
    if not isinstance(text, str) or not text.strip() or len(text) > NOTE_MAX:
        raise ServiceError("invalid", _("A note is 1 to 2,000 characters."), field="text")
    with transaction.atomic():
        visitor = visitor_get(visitor_id)
        note = VisitorNote.objects.create(visitor=visitor, author=user, text=text.strip())
        visitor_changed_publish(visitor)
    return note


VISITOR_EDITABLE = ("name", "email", "phone")


def visitor_update(*, user: User, visitor_id: object, changes: dict[str, object]) -> Visitor:
    """Change a visitor's ``name``, ``email`` or ``phone`` (the back office). Other keys are
    refused. Publishes ``visitor.updated``. Raises ``ServiceError``: ``forbidden``, ``invalid``,
    ``not_found``."""
    staff_require(user)
    fields = []
    with transaction.atomic():
        visitor = visitor_get(visitor_id)
        for field, value in changes.items():
            limit = Visitor._meta.get_field(field).max_length if field in VISITOR_EDITABLE else 0
            if not isinstance(value, str) or len(value) > limit or (field == "name" and not value):
                raise ServiceError("invalid", _("Please check this field."), field=field)
            setattr(visitor, field, value)
            fields.append(field)
        if fields:
            visitor.save(update_fields=fields)
            visitor_changed_publish(visitor)
    return visitor


def visitor_tags_set(*, user: User, visitor_id: object, tag_ids: list[int]) -> list[str]:
    """Give the visitor exactly these tags (the back office's tag picker); returns their names.
    Publishes ``visitor.updated`` when they changed."""
    staff_require(user)
    with transaction.atomic():
        visitor = visitor_get(visitor_id)
        wanted = set(VisitorTag.objects.filter(pk__in=tag_ids).values_list("pk", flat=True))
        if wanted != set(visitor.tags.values_list("pk", flat=True)):
            visitor.tags.set(wanted)
            visitor_changed_publish(visitor)
        return list(visitor.tags.order_by("name").values_list("name", flat=True))


def _note(user: User, note_id: object) -> VisitorNote:
    staff_require(user)
    note = VisitorNote.objects.select_related("visitor").filter(pk=note_id).first()
    if note is None:
        raise ServiceError("not_found", _("No such note."), field="note_id")
    return note


def note_update(*, user: User, note_id: object, text: object) -> VisitorNote:
    """Correct a note (the back office). ``ServiceError``: ``invalid`` (empty or over 2,000
    characters), ``not_found``. Publishes ``visitor.updated``."""
    if not isinstance(text, str) or not text.strip() or len(text) > NOTE_MAX:
        raise ServiceError("invalid", _("A note is 1 to 2,000 characters."), field="text")
    with transaction.atomic():
        note = _note(user, note_id)
        note.text = text.strip()
        note.save(update_fields=["text"])
        visitor_changed_publish(note.visitor)
    return note


def note_delete(*, user: User, note_id: object) -> None:
    """Delete a note (the back office). Publishes ``visitor.updated``."""
    with transaction.atomic():
        note = _note(user, note_id)
        note.delete()
        visitor_changed_publish(note.visitor)
