"""Scheduled messages (issue 17): an agent writes a reply now and it is sent at a chosen time.

- :func:`scheduled_create`, :func:`scheduled_update`, :func:`scheduled_cancel`: the author
  (an agent in the customer conversation) writes, edits or withdraws it while it is
  ``pending``.
- :func:`scheduled_due_send` (the beat, every ``KEFU_TIMER_INTERVAL_S`` with the service
  timers, ``kefu.tasks.timers_scan_task``) sends what is due through the send path of every agent
  reply (:func:`kefu.services.messages.agent_message_send`), so the visitor's widget gets it
  live like any reply, with the sensitive-word filter and the session's clocks.

Exactly once, even when a worker dies: each row is claimed with ``SELECT … FOR UPDATE SKIP
LOCKED`` and moved to ``sent`` in the same transaction that writes the message, whose
``client_msg_id`` is ``scheduled-<id>`` (the message table's unique key per sender). A worker
killed before that transaction commits leaves nothing written and the row ``pending`` (PostgreSQL
rolls back the dead connection's transaction), so the next scan sends it; a row another worker
holds is skipped, never sent twice; a redelivered task finds it ``sent``.

Events: ``scheduled.updated`` ``{"scheduled": payload}`` to the agents in the conversation on
every change (created, edited, cancelled, sent, failed).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.models import Conversation
from kefu.models import ScheduledMessage, Session, Visitor
from kefu.services.messages import agent_message_send
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: how far ahead a message can be scheduled (days)
MAX_AHEAD_DAYS = 365
#: pending messages one agent may hold in one conversation
MAX_PENDING_PER_CONVERSATION = 20


def client_msg_id_for(scheduled_id: int) -> str:
    """The idempotency key of a scheduled message's send (``im_message`` is unique on sender and
    ``client_msg_id``)."""
    return f"scheduled-{scheduled_id}"


def scheduled_payload(item: ScheduledMessage) -> dict[str, Any]:
    """``{"id", "conversation_id", "author": {"id", "name"}, "content", "send_at" (ISO 8601),
    "timezone" (IANA name or ""), "state" (pending|sent|cancelled|failed), "error",
    "message_id", "created_at", "sent_at"}``."""
    return {
        "id": item.pk,
        "conversation_id": item.conversation_id,
        "author": {"id": item.author_id, "name": item.author.name},
        "content": item.content,
        "send_at": item.send_at.isoformat(),
        "timezone": item.timezone,
        "state": item.state,
        "error": item.error,
        "message_id": item.message_id,
        "created_at": item.created_at.isoformat(),
        "sent_at": item.sent_at.isoformat() if item.sent_at else None,
    }


def _publish(item: ScheduledMessage) -> None:
    keys = [
        k
        for k in im_selectors.active_member_keys(conversation_id=item.conversation_id)
        if not im_selectors.is_visitor_key(k)
    ]
    if item.author.member_key not in keys:
        keys.append(item.author.member_key)
    publish_event_on_commit(
        {"type": "scheduled.updated", "scheduled": scheduled_payload(item)}, keys
    )


def _send_at(value: object, now: dt.datetime) -> dt.datetime:
    send_at = parsing.optional_datetime(value, "send_at")
    if send_at is None:
        raise ServiceError("invalid", _("send_at is required."), field="send_at")
    if send_at <= now:
        raise ServiceError("invalid", _("Choose a time in the future."), field="send_at")
    if send_at > now + dt.timedelta(days=MAX_AHEAD_DAYS):
        raise ServiceError(
            "invalid",
            _("A message can be scheduled at most %(days)d days ahead.") % {"days": MAX_AHEAD_DAYS},
            field="send_at",
        )
    return send_at


def _content(value: object) -> str:
    content = parsing.text(value, "content", settings.WEIYU_MESSAGE_MAX_CHARS).strip()
    if not content:
        raise ServiceError("invalid", _("Write the message first."), field="content")
    return content


def _zone(value: object) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > 64:
        raise ServiceError("invalid", _("Unknown time zone."), field="timezone")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ServiceError("invalid", _("Unknown time zone."), field="timezone") from exc
    return value


def _open_conversation(user: User, conversation_id: object) -> Session:
    """The open customer session of a conversation ``user`` is in; ``not_found`` when they are
    not (or no longer) in it or it is not a customer conversation, ``conversation_closed``."""
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    participant = im_selectors.participant_get(
        conversation_id=conversation_id, member_key=user.member_key
    )
    session = (
        Session.objects.select_related("visitor").filter(conversation_id=conversation_id).first()
    )
    if participant.conversation.kind != Conversation.Kind.VISITOR or session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    if participant.conversation.closed_at is not None or session.status == Session.Status.CLOSED:
        raise ServiceError("conversation_closed", _("This conversation is closed."))
    return session


def scheduled_create(
    *, user: User, conversation_id: object, content: object, send_at: object, zone: object = None
) -> ScheduledMessage:
    """Schedule ``content`` (1-5,000 characters) to be sent by ``user`` into a customer
    conversation they are in at ``send_at`` (ISO 8601 with a zone, in the future, at most
    :data:`MAX_AHEAD_DAYS` ahead). ``zone``: the IANA time zone the time was chosen in (default:
    the visitor's, when their browser told it). At most
    :data:`MAX_PENDING_PER_CONVERSATION` pending per author and conversation.

    Raises ``ServiceError``: ``invalid`` (content, send_at, timezone, too many), ``not_found``
    (not in the conversation, or a former participant), ``conversation_closed``.
    """
    now = timezone.now()
    text = _content(content)
    when = _send_at(send_at, now)
    chosen_zone = _zone(zone)
    with transaction.atomic():
        session = _open_conversation(user, conversation_id)
        pending = ScheduledMessage.objects.filter(
            conversation_id=session.conversation_id,
            author=user,
            state=ScheduledMessage.State.PENDING,
        ).count()
        if pending >= MAX_PENDING_PER_CONVERSATION:
            raise ServiceError(
                "invalid",
                _("At most %(n)d messages can wait to be sent in one conversation.")
                % {"n": MAX_PENDING_PER_CONVERSATION},
            )
        item = ScheduledMessage.objects.create(
            conversation_id=session.conversation_id,
            author=user,
            content=text,
            send_at=when,
            timezone=chosen_zone or session.visitor.timezone,
        )
        _publish(item)
    return item


def _own_pending(user: User, scheduled_id: object) -> ScheduledMessage:
    """The caller's scheduled message, locked (a send in progress holds the lock: we wait for it
    and then see it ``sent``). ``not_found`` for someone else's, ``conflict`` once not pending."""
    scheduled_id = parsing.positive_int(scheduled_id, "id")
    item = (
        ScheduledMessage.objects.select_for_update(of=("self",))
        .select_related("author")
        .filter(pk=scheduled_id, author=user)
        .first()
    )
    if item is None:
        raise ServiceError("not_found", _("No such scheduled message."))
    if item.state != ScheduledMessage.State.PENDING:
        raise ServiceError("conflict", _("This message has already been sent or cancelled."))
    return item


def scheduled_update(*, user: User, scheduled_id: object, changes: object) -> ScheduledMessage:
    """Edit a pending scheduled message of one's own: ``changes`` ``{"content"?, "send_at"?,
    "timezone"?}`` validated as in :func:`scheduled_create`. Raises ``ServiceError``:
    ``invalid``, ``not_found``, ``conflict`` (already sent, failed or cancelled)."""
    if not isinstance(changes, dict) or not changes:
        raise ServiceError("invalid", _("A JSON object is expected."))
    unknown = set(changes) - {"content", "send_at", "timezone"}
    if unknown:
        raise ServiceError("invalid", _("Unknown field."), field=sorted(unknown)[0])
    now = timezone.now()
    with transaction.atomic():
        item = _own_pending(user, scheduled_id)
        _open_conversation(user, item.conversation_id)
        fields = ["updated_at"]
        if "content" in changes:
            item.content = _content(changes["content"])
            fields.append("content")
        if "send_at" in changes:
            item.send_at = _send_at(changes["send_at"], now)
            fields.append("send_at")
        if "timezone" in changes:
            item.timezone = _zone(changes["timezone"])
            fields.append("timezone")
        item.save(update_fields=fields)
        _publish(item)
    return item


def scheduled_cancel(*, user: User, scheduled_id: object) -> ScheduledMessage:
    """Withdraw a pending scheduled message of one's own (it is kept as ``cancelled``). Raises
    ``ServiceError``: ``not_found``, ``conflict`` (already sent, failed or cancelled)."""
    with transaction.atomic():
        item = _own_pending(user, scheduled_id)
        item.state = ScheduledMessage.State.CANCELLED
        item.save(update_fields=["state", "updated_at"])
        _publish(item)
    return item


def _send_one(now: dt.datetime) -> bool:
    """Claim the oldest due message no other worker holds and send it, in one transaction;
    False when none is due."""
    with transaction.atomic():
        item = (
            ScheduledMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("author")
            .filter(state=ScheduledMessage.State.PENDING, send_at__lte=now)
            .order_by("send_at", "pk")
            .first()
        )
        if item is None:
            return False
        try:
            with transaction.atomic():
                message, _created = agent_message_send(
                    user=item.author,
                    conversation_id=item.conversation_id,
                    content=item.content,
                    client_msg_id=client_msg_id_for(item.pk),
                )
        except ServiceError as exc:
            item.state = ScheduledMessage.State.FAILED
            item.error = str(exc.message)[:200]
            item.save(update_fields=["state", "error", "updated_at"])
        else:
            item.state = ScheduledMessage.State.SENT
            item.message_id = message.pk
            item.sent_at = timezone.now()
            item.save(update_fields=["state", "message", "sent_at", "updated_at"])
        _publish(item)
    return True


def scheduled_due_send(*, now: dt.datetime | None = None, limit: int = 200) -> int:
    """Beat: send every scheduled message of this tenant whose ``send_at`` has passed (at most
    ``limit`` per call), each in its own transaction; returns how many were handled (sent or
    failed: the author left the conversation, it closed, a forbidden word)."""
    now = now or timezone.now()
    handled = 0
    while handled < limit and _send_one(now):
        handled += 1
    return handled


def visitor_scheduled_export(visitor: Visitor) -> list[dict[str, Any]]:
    """The replies scheduled to ``visitor`` (their conversations), for the visitor's data export
    (``kefu.privacy.visitor_export``, registered in ``KefuConfig.ready``)."""
    items = ScheduledMessage.objects.select_related("author").filter(
        conversation__kefu_session__visitor=visitor
    )
    return [scheduled_payload(i) for i in items.order_by("pk")]


def visitor_scheduled_erase(visitor: Visitor) -> int:
    """The visitor's erasure (``kefu.privacy.visitor_erase``): replies still waiting are
    cancelled, the text of all is blanked, and the browser's time zone is forgotten; returns
    how many scheduled replies were touched."""
    rows = ScheduledMessage.objects.filter(conversation__kefu_session__visitor=visitor)
    rows.filter(state=ScheduledMessage.State.PENDING).update(state=ScheduledMessage.State.CANCELLED)
    Visitor.objects.filter(pk=visitor.pk).update(timezone="")
    return rows.update(content="")
