"""Read receipts and typing: how far each member has received and read, and the ``typing``
relay (not stored).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils.translation import gettext as _

from im import selectors
from im.models import Conversation, Message, Participant
from im.senders import SYSTEM
from im.serializers import member_payload, receipt_payload
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_now, publish_event_on_commit


def _parse_seq(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ServiceError(
            "invalid",
            _("%(field)s must be a non-negative integer.") % {"field": field},
            field=field,
        )
    return value


def receipt_update(
    *, conversation_id: int, member_key: str, delivered_seq: object = None, read_seq: object = None
) -> Participant:
    """Move a member's ``delivered_seq``/``read_seq`` forward (never back, never past ``last_seq``)
    and publish ``read.state`` when something moved: to every participant, except in groups,
    where only the reader's sockets and the senders of the newly read messages get it.

    Raises ``ServiceError``: ``invalid`` (not integers, or neither given), ``not_found``.
    """
    delivered = _parse_seq(delivered_seq, "delivered_seq")
    read = _parse_seq(read_seq, "read_seq")
    if delivered is None and read is None:
        raise ServiceError("invalid", _("Give delivered_seq or read_seq."), field="read_seq")
    participant = selectors.participant_get(conversation_id=conversation_id, member_key=member_key)
    last_seq = participant.conversation.last_seq
    read = min(read, last_seq) if read is not None else None
    delivered = max(min(delivered, last_seq) if delivered is not None else 0, read or 0)
    if delivered <= participant.delivered_seq and (read is None or read <= participant.read_seq):
        return participant
    updates = {"delivered_seq": Greatest(F("delivered_seq"), delivered)}
    if read is not None:
        updates["read_seq"] = Greatest(F("read_seq"), read)
    old_read = participant.read_seq
    with transaction.atomic():
        Participant.objects.filter(pk=participant.pk).update(**updates)
        participant.refresh_from_db(fields=["delivered_seq", "read_seq"])
        if participant.conversation.kind == Conversation.Kind.GROUP:
            # "read by N" concerns only the senders of the newly read messages (and the reader's
            # other tabs); telling all 500 members about every read would be 500 x 500 events.
            recipients = [member_key]
            if participant.read_seq > old_read:
                recipients += list(
                    Message.objects.filter(
                        conversation_id=conversation_id,
                        seq__gt=old_read,
                        seq__lte=participant.read_seq,
                    )
                    .exclude(sender_key__in=[member_key, SYSTEM.key])
                    .values_list("sender_key", flat=True)
                    .distinct()
                )
        else:
            recipients = selectors.active_member_keys(conversation_id=conversation_id)
        publish_event_on_commit(
            {
                "type": "read.state",
                "conversation_id": conversation_id,
                **receipt_payload(participant),
            },
            recipients,
        )
    return participant


def typing_notify(*, conversation_id: int, member_key: str, state: str) -> None:
    """Relay ``typing`` (``state`` ``start``/``stop``) to the other participants. Not stored."""
    if state not in ("start", "stop"):
        raise ServiceError("invalid", _("Unknown typing state."), field="state")
    participant = selectors.participant_get(conversation_id=conversation_id, member_key=member_key)
    others = [
        k for k in selectors.active_member_keys(conversation_id=conversation_id) if k != member_key
    ]
    publish_event_now(
        {
            "type": "typing",
            "conversation_id": conversation_id,
            "member": member_payload(member_key, participant.name),
            "state": state,
        },
        others,
    )
