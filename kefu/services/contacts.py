"""Merging two contacts (issue 13, "Known customers"): one customer who came as two visitors —
two browsers before signing in, a chat and an e-mail, a typo — is made one.

:func:`contact_merge` (an agent in the inbox's visitor panel, the API, the back office) moves
the other contact's conversations, notes, tags, page trail and attributes to the kept one; the
kept one's own values win, blanks are filled from the other (name, e-mail, phone). The other
contact stays, empty, pointing at the kept one (``Visitor.merged_into``): a browser still holding
its token, or ``Weiyu.identify`` with its customer id, lands on the kept contact. The merge is
recorded in the audit log (``org.audit.MERGE``).

:func:`visitor_absorb` is the same move without an agent: an anonymous visitor who identifies
as a known customer on another browser (``kefu.services.visitors.visitor_identify``) brings
their earlier conversations into the contact's one history.

Conversations keep their messages and ``seq`` numbers; the kept contact joins them as their
visitor member, so its widget lists them (the socket's conversation list reads memberships).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from im.models import Participant
from im.services import conversations as im_conversations
from kefu import webhooks
from kefu.models import Session, Visitor, VisitorNote, VisitorPageView
from kefu.services import attributes
from kefu.services.events import visitor_changed_publish
from kefu.visitors import staff_require
from org import audit
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError

#: contacts a search lists at most
SEARCH_MAX = 20


def contact_final(visitor: Visitor) -> Visitor:
    """The contact ``visitor`` ends up as, following merges (itself when it was not merged)."""
    seen = {visitor.pk}
    while visitor.merged_into_id is not None and visitor.merged_into_id not in seen:
        seen.add(visitor.merged_into_id)
        visitor = Visitor.objects.select_related("channel").get(pk=visitor.merged_into_id)
    return visitor


def contact_search(
    *, user: User, q: object = None, attribute: object = None, exclude: int | None = None
) -> list[dict[str, Any]]:
    """Contacts whose name, e-mail, phone or customer id contains ``q`` (2-100 characters)
    and/or whose custom attribute matches ``attribute`` (``key=value``,
    :func:`kefu.services.attributes.attribute_q`), not merged away, most recently seen first,
    at most :data:`SEARCH_MAX`: ``[{"id", "name", "email", "phone", "external_id", "channel",
    "attributes", "last_seen", "conversations"}]``. ``exclude``: a visitor id left out (the
    panel's own), and only contacts of its channel listed (those that can merge into it).
    Agents only (``forbidden``); ``invalid`` for neither filter, a short or long
    ``q``, or a bad attribute filter."""
    staff_require(user)
    rows = Visitor.objects.filter(merged_into__isnull=True, erased_at__isnull=True)
    if q in (None, "") and attribute in (None, ""):
        raise ServiceError("invalid", _("Type at least 2 characters."), field="q")
    if q not in (None, ""):
        text = parsing.text(q, "q", 100).strip()
        if len(text) < 2:
            raise ServiceError("invalid", _("Type at least 2 characters."), field="q")
        rows = rows.filter(
            Q(name__icontains=text)
            | Q(email__icontains=text)
            | Q(phone__icontains=text)
            | Q(external_id__icontains=text)
        )
    if attribute not in (None, ""):
        rows = rows.filter(attributes.attribute_q(attribute, contact="", conversation=None))
    rows = rows.select_related("channel").order_by("-last_seen_at")
    if exclude is not None:
        channel_id = Visitor.objects.filter(pk=exclude).values_list("channel_id", flat=True)
        rows = rows.exclude(pk=exclude).filter(channel_id__in=channel_id)
    found = list(rows[:SEARCH_MAX])
    counts: dict[int, int] = {}
    for visitor_id in Session.objects.filter(visitor__in=found).values_list(
        "visitor_id", flat=True
    ):
        counts[visitor_id] = counts.get(visitor_id, 0) + 1
    return [
        {
            "id": v.pk,
            "name": v.name,
            "email": v.email,
            "phone": v.phone,
            "external_id": v.external_id,
            "channel": v.channel.name,
            "attributes": v.attributes or {},
            "last_seen": v.last_seen_at.isoformat(),
            "conversations": counts.get(v.pk, 0),
        }
        for v in found
    ]


def _move(kept: Visitor, other: Visitor) -> list[int]:
    """Move ``other``'s belongings to ``kept`` (both locked by the caller); returns the
    conversation ids moved. A live conversation of ``other`` stays with it when ``kept`` has
    one too (a visitor has one live conversation at a time); it moves once it is closed."""
    sessions = Session.objects.filter(visitor=other)
    if Session.objects.filter(visitor=kept).exclude(status=Session.Status.CLOSED).exists():
        sessions = sessions.filter(status=Session.Status.CLOSED)
    moved = list(sessions.values_list("conversation_id", flat=True))
    sessions.update(visitor=kept)
    for conversation_id in moved:
        im_conversations.participant_add(
            conversation_id=conversation_id,
            member_key=kept.member_key,
            name=kept.name,
            role=Participant.Role.VISITOR,
        )
    VisitorNote.objects.filter(visitor=other).update(visitor=kept)
    VisitorPageView.objects.filter(visitor=other).update(visitor=kept)
    kept.tags.add(*other.tags.all())
    fields = []
    merged = {**(other.attributes or {}), **(kept.attributes or {})}
    if merged != kept.attributes:
        kept.attributes = merged
        fields.append("attributes")
    for name in ("email", "phone"):
        if not getattr(kept, name) and getattr(other, name):
            setattr(kept, name, getattr(other, name))
            fields.append(name)
    if other.name_given and not kept.name_given:
        kept.name, kept.name_given = other.name, True
        fields += ["name", "name_given"]
    if fields:
        kept.save(update_fields=fields)
    other.merged_into = kept
    other.save(update_fields=["merged_into"])
    return moved


def _locked_pair(kept_id: int, other_id: int) -> tuple[Visitor, Visitor]:
    rows = {
        v.pk: v
        for v in Visitor.objects.select_for_update()
        .filter(pk__in=(kept_id, other_id))
        .order_by("pk")
    }
    if kept_id not in rows or other_id not in rows:
        raise ServiceError("not_found", _("No such visitor."), field="other_id")
    return rows[kept_id], rows[other_id]


def contact_merge(*, user: User, visitor_id: object, other_id: object) -> Visitor:
    """Merge contact ``other_id`` into ``visitor_id`` (kept) by hand; returns the kept contact.

    Moves the other's conversations (a live one only when the kept contact has none live),
    notes, tags, page trail, attributes (the kept one's win) and fills the kept one's blank
    e-mail, phone and name; the other points at the kept one. Sends ``visitor.updated`` and
    ``contact.updated`` for the kept contact and writes the audit entry.

    Who: agents (``forbidden`` otherwise). Raises ``ServiceError``: ``invalid`` (the same
    contact, or one of another channel — a contact's widget token and customer id belong to its
    channel; ``field`` ``other_id``), ``not_found`` (either unknown, or another tenant's),
    ``conflict`` (either was merged already, or erased)."""
    staff_require(user)
    kept_id = parsing.positive_int(visitor_id, "visitor_id")
    other_pk = parsing.positive_int(other_id, "other_id")
    if kept_id == other_pk:
        raise ServiceError("invalid", _("Choose another contact."), field="other_id")
    with transaction.atomic():
        kept, other = _locked_pair(kept_id, other_pk)
        if kept.channel_id != other.channel_id:
            raise ServiceError(
                "invalid",
                _("Only contacts of the same channel can be merged."),
                field="other_id",
            )
        if kept.merged_into_id or other.merged_into_id or kept.erased_at or other.erased_at:
            raise ServiceError("conflict", _("One of these contacts was merged or erased."))
        moved = _move(kept, other)
        audit.audit_record(
            actor=user,
            action=audit.MERGE,
            target=kept,
            data={
                "kept": kept.pk,
                "merged": other.pk,
                "merged_name": other.name,
                "conversations": moved,
            },
        )
        visitor_changed_publish(kept)
        webhooks.contact_emit("contact.updated", visitor_id=other.pk)
    return kept


def visitor_absorb(*, contact: Visitor, visitor: Visitor) -> list[int]:
    """An anonymous ``visitor`` (this browser's) identified as the known ``contact``: its
    conversations and the rest join the contact (:func:`contact_merge` without an agent; the
    audit entry names no actor). Call inside the identify transaction. Returns the
    conversation ids moved; nothing happens for a visitor that already is a contact or was
    merged."""
    if visitor.pk == contact.pk or visitor.external_id or visitor.merged_into_id:
        return []
    kept, other = _locked_pair(contact.pk, visitor.pk)
    moved = _move(kept, other)
    audit.audit_record(
        actor=None,
        action=audit.MERGE,
        target=kept,
        data={"kept": kept.pk, "merged": other.pk, "conversations": moved, "by": "identify"},
    )
    return moved
