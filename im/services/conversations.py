"""Conversations and their members: create, add, remove, rename, close, announce a new member,
and a member's own settings (pin, do-not-disturb, archive). Writes in one transaction and
publishes realtime events after commit (weiyu/realtime.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors
from im.models import Conversation, Participant
from im.senders import Sender
from im.serializers import member_payload, member_state_payload
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit


@dataclass(frozen=True)
class Member:
    """A first member of a new conversation (:func:`conversation_create`)."""

    key: str
    name: str
    role: str
    user_id: int | None = None


def conversation_create(
    *, kind: str, title: str = "", members: tuple[Member, ...] = ()
) -> Conversation:
    """Create a conversation (``last_seq`` 0) with its first ``members`` (one insert for all of
    them, none when there are none; call inside the caller's transaction). Later members are
    added with :func:`participant_add`."""
    conversation = Conversation.objects.create(kind=kind, title=title[:200])
    if members:
        Participant.objects.bulk_create(
            Participant(
                conversation=conversation,
                member_key=m.key,
                name=m.name[:100],
                role=m.role,
                user_id=m.user_id,
            )
            for m in members
        )
    return conversation


def participant_add(
    *,
    conversation: Conversation | None = None,
    conversation_id: int | None = None,
    member_key: str,
    name: str,
    role: str,
    user_id: int | None = None,
) -> Participant:
    """Add a member, or bring back one who left (with ``role``, unmuted); an active member stays
    as they are. A new member's cursors start at 0, so what was said before they joined counts as
    unread (an agent taking a visitor chat must read it). One statement (:data:`_JOIN_SQL`) when
    the member is new or returning, a second one to read an active member's row."""
    conversation_id = conversation.pk if conversation is not None else conversation_id
    fields = Participant._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(
            _JOIN_SQL.format(columns=", ".join(f"im_participant.{f.column}" for f in fields)),
            {
                "conversation_id": conversation_id,
                "member_key": member_key,
                "user_id": user_id,
                "name": name[:100],
                "role": role,
                "now": timezone.now(),
            },
        )
        row = cursor.fetchone()
    if row is None:  # already an active member
        return Participant.objects.get(conversation_id=conversation_id, member_key=member_key)
    return Participant.from_db(connection.alias, [f.attname for f in fields], row)


#: Insert a member, or bring back one who left; returns the row unless the member was active
#: already (then nothing changes). The column defaults are the model's.
_JOIN_SQL = """
INSERT INTO im_participant (
    conversation_id, member_key, user_id, name, role, delivered_seq, read_seq, mention_seq,
    notifications_off, joined_at
)
VALUES (
    %(conversation_id)s, %(member_key)s, %(user_id)s, %(name)s, %(role)s, 0, 0, 0, false, %(now)s
)
ON CONFLICT (conversation_id, member_key) DO UPDATE
    SET left_at = NULL, role = EXCLUDED.role, muted_until = NULL
    WHERE im_participant.left_at IS NOT NULL
RETURNING {columns}
"""


def participant_remove(*, conversation_id: int, member_key: str) -> None:
    """Mark a member as gone: they stop receiving events at once and can no longer send."""
    Participant.objects.filter(
        conversation_id=conversation_id, member_key=member_key, left_at__isnull=True
    ).update(left_at=timezone.now())


def conversation_added_publish(conversation_id: int, member_keys: list[str]) -> None:
    """``conversation.added`` to each new member after commit, with the conversation as they see
    it (call inside the transaction that added them)."""
    for key in member_keys:
        payload = selectors.conversation_payload_for_member(
            conversation_id=conversation_id, member_key=key
        )
        publish_event_on_commit({"type": "conversation.added", "conversation": payload}, [key])


def conversation_close(*, conversation_id: int, closed_by: Sender) -> Conversation:
    """Close a conversation: no further messages are accepted. Publishes ``conversation.closed``
    to every participant after commit. Closing a closed conversation is a no-op.
    """
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.closed_at is not None:
            return conversation
        conversation.closed_at = timezone.now()
        conversation.save(update_fields=["closed_at"])
        by = member_payload(closed_by.key, closed_by.name)
        by["type"] = closed_by.type
        publish_event_on_commit(
            {
                "type": "conversation.closed",
                "conversation_id": conversation_id,
                "closed_by": by,
                "closed_at": conversation.closed_at.isoformat(),
            },
            selectors.active_member_keys(conversation_id=conversation_id),
        )
    return conversation


def member_settings_update(
    *,
    conversation_id: int,
    member_key: str,
    pinned: object = None,
    notifications_off: object = None,
    archived: object = None,
) -> Participant:
    """Change the member's own view of a conversation (IM-8): pin, do-not-disturb, archive.

    Each argument is ``True``/``False`` or ``None`` (unchanged). Publishes ``member.state`` to the
    member's sockets (all tabs) after commit. Raises ``ServiceError("invalid"|"not_found")``.
    """
    participant = selectors.participant_get(conversation_id=conversation_id, member_key=member_key)
    now = timezone.now()
    fields: list[str] = []
    for name, value in (
        ("pinned", pinned),
        ("notifications_off", notifications_off),
        ("archived", archived),
    ):
        if value is None:
            continue
        parsing.boolean(value, name)
        if name == "pinned":
            participant.pinned_at = (participant.pinned_at or now) if value else None
            fields.append("pinned_at")
        elif name == "archived":
            participant.archived_at = now if value else None
            fields.append("archived_at")
        else:
            participant.notifications_off = value
            fields.append("notifications_off")
    if not fields:
        raise ServiceError("invalid", _("Nothing to change."))
    with transaction.atomic():
        participant.save(update_fields=fields)
        publish_event_on_commit(
            {"type": "member.state", **member_state_payload(participant)}, [member_key]
        )
    return participant


# --- for apps built on conversations (kefu) --------------------------------------------------------


def participant_rename(*, member_key: str, name: str) -> int:
    """Show a member under a new name in every conversation they are in (a visitor who gave
    their name in the pre-chat form). Past messages keep the ``sender_name`` they were sent with.
    Sends no event: the caller tells whoever must know. Returns the rows changed."""
    return Participant.objects.filter(member_key=member_key).update(name=name)
