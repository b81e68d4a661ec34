"""Visitors: the signed widget token, starting or resuming a visitor, the page trail, and the
changes agents and the back office make to what is known of them (KF-11): details, tags and
notes, each followed by ``visitor.updated`` to the agents serving the visitor."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zoneinfo
from datetime import timedelta
from typing import Any

from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kefu import selectors, webhooks
from kefu.models import (
    AttributeDefinition,
    Channel,
    Visitor,
    VisitorNote,
    VisitorPageView,
    VisitorTag,
)
from kefu.senders import language_for
from kefu.services import attributes, contacts
from kefu.services.events import visitor_changed_publish
from kefu.visitors import NOTE_MAX, TAG_MAX, staff_require, visitor_get
from org.models import User
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
    if visitor.merged_into_id is not None:
        # merged into another contact (kefu.services.contacts): the browser is that one now
        visitor = contacts.contact_final(visitor)
    return visitor


def _clip(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _known_zone(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        return ""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ""
    return value


def visitor_start(
    *,
    channel: Channel,
    token: object = None,
    ip_address: str | None = None,
    user_agent: str = "",
    page_url: object = "",
    referrer: object = "",
    language: object = "",
    zone: object = "",
) -> tuple[Visitor, str]:
    """Resume the visitor named by ``token`` on this channel, or create a new one.
    ``zone``: the browser's IANA time zone (kept when it is a known one, else ignored).

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
        "timezone": _known_zone(zone),
    }
    if visitor is None:
        visitor = Visitor.objects.create(channel=channel, name="", **fields)
        with translation.override(language_for(visitor)):
            visitor.name = _("Visitor %(number)04d") % {"number": visitor.pk % 10000}
        visitor.save(update_fields=["name"])
        webhooks.contact_emit("contact.created", visitor_id=visitor.pk)
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


def contact_attributes_set(*, user: User, visitor_id: object, values: object) -> dict[str, Any]:
    """Write custom contact attributes (an agent: the visitor panel, the API): ``values``
    ``{key: value | null}`` checked against the definitions
    (:func:`kefu.services.attributes.values_clean`). Returns the contact's attributes; sends
    ``visitor.updated`` and ``contact.updated`` when they changed. Raises ``ServiceError``:
    ``forbidden`` (not an agent), ``invalid`` (``field`` ``attributes.<key>``), ``not_found``."""
    staff_require(user)
    clean = attributes.values_clean(AttributeDefinition.AppliesTo.CONTACT, values)
    with transaction.atomic():
        visitor = Visitor.objects.select_for_update().get(pk=visitor_get(visitor_id).pk)
        updated = attributes.values_apply(visitor.attributes, clean)
        if updated != visitor.attributes:
            visitor.attributes = updated
            visitor.save(update_fields=["attributes"])
            visitor_changed_publish(visitor)
    return updated


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


# --- known customers: Weiyu.identify (docs/protocol.md, "Known customers") --------------------

IDENTITY_ID_MAX = 128


def identity_hmac(*, secret: str, external_id: str) -> str:
    """Hex HMAC-SHA256 of the customer's id (UTF-8) under the channel's identity secret: what
    the tenant's server computes and passes to ``Weiyu.identify(identity, hmac)``."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def channel_identity_secret_rotate(*, channel: Channel) -> str:
    """A new identity verification secret for the channel (returned to be shown once); HMACs
    made with the old one stop verifying at once."""
    secret = secrets.token_hex(32)
    channel.identity_secret = secret
    channel.save(update_fields=["identity_secret"])
    return secret


def _identity_fields(identity: object) -> dict[str, Any]:
    if not isinstance(identity, dict):
        raise ServiceError("invalid", _("The identity must be an object."), field="identity")
    raw_id = identity.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip() or len(raw_id) > IDENTITY_ID_MAX:
        raise ServiceError(
            "invalid",
            _("The identity needs an id of 1 to %(n)d characters.") % {"n": IDENTITY_ID_MAX},
            field="id",
        )
    fields: dict[str, Any] = {"external_id": raw_id}
    for name in ("name", "email", "phone"):
        value = identity.get(name)
        if value in (None, ""):
            continue
        limit = Visitor._meta.get_field(name).max_length
        if not isinstance(value, str) or len(value.strip()) > limit:
            raise ServiceError("invalid", _("Please check this field."), field=name)
        fields[name] = value.strip()
    if "email" in fields:
        try:
            validate_email(fields["email"])
        except ValidationError:
            raise ServiceError(
                "invalid", _("Please enter a valid e-mail address."), field="email"
            ) from None
    values = identity.get("attributes")
    if values is not None:
        # checked against the tenant's contact attribute definitions (unknown keys refused)
        fields["attributes"] = attributes.values_clean(
            AttributeDefinition.AppliesTo.CONTACT, values
        )
    return fields


def _profile_apply(contact: Visitor, fields: dict[str, Any]) -> list[str]:
    changed = []
    for name in ("name", "email", "phone"):
        if name in fields and getattr(contact, name) != fields[name]:
            setattr(contact, name, fields[name])
            changed.append(name)
    if "name" in fields and not contact.name_given:
        contact.name_given = True
        changed.append("name_given")
    if "attributes" in fields:
        merged = attributes.values_apply(contact.attributes, fields["attributes"])
        if merged != contact.attributes:
            contact.attributes = merged
            changed.append("attributes")
    return changed


def visitor_identify(
    *, visitor: Visitor, identity: object, hmac_hex: object = None
) -> tuple[Visitor, str]:
    """The host page says who its logged-in customer is (``Weiyu.identify({id, name, email,
    phone, attributes}, hmac)``). Returns the contact this browser now is, and its token.

    With a valid ``hmac_hex`` (hex HMAC-SHA256 of ``id`` under the channel's identity secret,
    :func:`identity_hmac`) the identity is *verified*: the channel's contact with that id is
    returned (the same on every browser and device, with its conversations); when there is none
    yet, this browser's anonymous visitor becomes it. Without one, on a channel whose
    ``identity_required`` is off, only this browser's visitor gets the name, e-mail, phone and
    attributes (nobody can take over another customer's history by naming their id).

    Raises ``ServiceError``: ``forbidden`` (``field`` = ``hmac``) for an HMAC that does not
    verify, or none on a channel that requires it; ``invalid`` with ``field`` for bad input
    (id 1-128 characters, name ≤ 100, e-mail, phone ≤ 32, at most 50 attributes, each defined
    by an administrator and of its kind: ``kefu.services.attributes``; ``null`` removes one). The rule
    follows Chatwoot's identity validation (``setUser`` + ``identifier_hash``)."""
    fields = _identity_fields(identity)
    channel = Channel.objects.get(pk=visitor.channel_id)
    external_id = fields.pop("external_id")
    verified = False
    if hmac_hex not in (None, ""):
        expected = identity_hmac(secret=channel.identity_secret, external_id=external_id)
        verified = (
            bool(channel.identity_secret)
            and isinstance(hmac_hex, str)
            and hmac.compare_digest(expected, hmac_hex.strip().lower())
        )
        if not verified:
            raise ServiceError(
                "forbidden", _("The customer's identity could not be verified."), field="hmac"
            )
    if channel.identity_required and not verified:
        raise ServiceError(
            "forbidden",
            _("This chat requires a verified identity (an HMAC of the customer's id)."),
            field="hmac",
        )
    for _attempt in range(2):  # a second browser of a new customer may create it at the same time
        try:
            with transaction.atomic():
                return _identify(visitor, channel, external_id, fields, verified=verified)
        except IntegrityError:
            continue
    raise ServiceError("conflict", _("Please try again."))


def _identify(
    visitor: Visitor, channel: Channel, external_id: str, fields: dict[str, Any], *, verified: bool
) -> tuple[Visitor, str]:
    contact = visitor
    created = False
    if verified:
        found = (
            Visitor.objects.select_for_update()
            .filter(channel=channel, external_id=external_id)
            .first()
        )
        if found is not None:
            contact = contacts.contact_final(found)
            # this browser's anonymous visitor's earlier conversations join the contact's
            contacts.visitor_absorb(contact=contact, visitor=visitor)
            contact.refresh_from_db()
        elif visitor.external_id and visitor.external_id != external_id:
            # another customer signs in on this browser: a contact of their own
            contact = Visitor.objects.create(
                channel=channel,
                name=fields.get("name") or external_id[:100],
                external_id=external_id,
                ip_address=visitor.ip_address,
                user_agent=visitor.user_agent,
                language=visitor.language,
                page_url=visitor.page_url,
                referrer=visitor.referrer,
            )
            created = True
        else:
            contact = Visitor.objects.select_for_update().get(pk=visitor.pk)
            contact.external_id = external_id  # the anonymous visitor becomes the contact
    changed = _profile_apply(contact, fields)
    if contact.external_id != visitor.external_id and contact.pk == visitor.pk:
        changed.append("external_id")
    if changed:
        contact.save(update_fields=changed)
    if created:
        webhooks.contact_emit("contact.created", visitor_id=contact.pk)
    elif changed:
        visitor_changed_publish(contact)
    return contact, visitor_token_make(contact)
