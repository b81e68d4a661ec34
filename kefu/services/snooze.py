"""Snoozing a customer conversation (issue 17, "Snooze"): the agent serving it puts it aside
until a time or until the customer replies; it comes back by itself.

- :func:`conversation_snooze` sets ``Session.snoozed_at`` (and ``snoozed_until``, or None for
  "until the customer replies") and posts an internal line (agents only, :mod:`kefu.syslines`).
- It comes back when the beat's scan (:func:`snooze_wake_scan`, every ``KEFU_TIMER_INTERVAL_S``
  with the other service timers) finds ``snoozed_until`` passed, when the customer writes
  (:class:`kefu.services.messages.VisitorConversationHook` clears it in the send's one
  ``UPDATE`` and calls :func:`snooze_woken_publish`), or when an agent un-snoozes it.
- Every change reaches the agents in the conversation as ``conversation.snoozed``
  ``{"conversation_id", "snoozed", "snoozed_at", "snoozed_until"}`` (the same fields as the
  conversation's ``session`` carries; docs/protocol.md), and the agents of its workgroup as
  ``views.changed`` (their views' counts and the conversations' Kanban board move).

Snoozing changes nothing for the visitor, the queue or the agent's load: the conversation stays
open and assigned; snoozing only says "not now" to the agents' lists.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.services import messages as im_messages
from kefu import syslines
from kefu.models import Session
from kefu.services.events import views_changed_publish
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: the longest snooze (days): a conversation put aside for longer should be closed instead
MAX_SNOOZE_DAYS = 365


def _staff_keys(conversation_id: int) -> list[str]:
    return [
        k
        for k in im_selectors.active_member_keys(conversation_id=conversation_id)
        if not im_selectors.is_visitor_key(k)
    ]


def _publish(session: Session) -> None:
    # colleagues of the workgroup count snoozed conversations in their views and boards too
    views_changed_publish(workgroup_id=session.workgroup_id)
    publish_event_on_commit(
        {
            "type": "conversation.snoozed",
            "conversation_id": session.conversation_id,
            "snoozed": session.snoozed_at is not None,
            "snoozed_at": session.snoozed_at.isoformat() if session.snoozed_at else None,
            "snoozed_until": session.snoozed_until.isoformat() if session.snoozed_until else None,
        },
        _staff_keys(session.conversation_id),
    )


def _served_session(user: User, conversation_id: object) -> Session:
    """The open session of a conversation ``user`` is in (locked); ``not_found`` when they are
    not (or no longer: ``left_at``) in it, ``conflict`` when it is not open."""
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    im_selectors.participant_get(conversation_id=conversation_id, member_key=user.member_key)
    session = (
        Session.objects.select_for_update(of=("self",))
        .filter(conversation_id=conversation_id)
        .first()
    )
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    if session.status != Session.Status.OPEN:
        raise ServiceError("conflict", _("Only an open conversation can be snoozed."))
    return session


def _until(value: object, now: dt.datetime) -> dt.datetime | None:
    until = parsing.optional_datetime(value, "until")
    if until is None:
        return None
    if until <= now:
        raise ServiceError("invalid", _("Choose a time in the future."), field="until")
    if until > now + dt.timedelta(days=MAX_SNOOZE_DAYS):
        raise ServiceError(
            "invalid",
            _("A conversation can be snoozed for at most %(days)d days.")
            % {"days": MAX_SNOOZE_DAYS},
            field="until",
        )
    return until


def _local(value: dt.datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")


def conversation_snooze(*, user: User, conversation_id: object, until: object) -> Session:
    """Snooze the open customer conversation ``user`` is in until ``until`` (an ISO 8601
    date-time with a zone, in the future, at most :data:`MAX_SNOOZE_DAYS` ahead) or, with
    ``until`` None, until the customer replies. Snoozing again replaces the time.

    Writes the session's ``snoozed_*`` fields, an internal line "… snoozed the conversation
    until …" (the time in the tenant's zone), and publishes ``conversation.snoozed`` to the
    agents in it. Raises ``ServiceError``: ``invalid`` (``until``), ``not_found`` (no such
    conversation, or the caller is not or no longer in it), ``conflict`` (not open).
    """
    now = timezone.now()
    snooze_until = _until(until, now)
    with transaction.atomic():
        session = _served_session(user, conversation_id)
        session.snoozed_at = now
        session.snoozed_until = snooze_until
        session.snoozed_by = user
        session.save(update_fields=["snoozed_at", "snoozed_until", "snoozed_by"])
        if snooze_until is None:
            code, params = syslines.SNOOZED_UNTIL_REPLY, {"agent": user.name}
        else:
            code, params = syslines.SNOOZED, {"agent": user.name, "until": _local(snooze_until)}
        im_messages.system_message_post(
            conversation_id=session.conversation_id, code=code, params=params, internal=True
        )
        _publish(session)
    return session


def conversation_unsnooze(*, user: User, conversation_id: object) -> Session:
    """Bring a snoozed conversation back now (an agent in it); a conversation that is not
    snoozed is returned unchanged. Errors as :func:`conversation_snooze`."""
    with transaction.atomic():
        session = _served_session(user, conversation_id)
        if session.snoozed_at is None:
            return session
        _wake(session, code=syslines.SNOOZE_ENDED)
    return session


def _wake(session: Session, *, code: str) -> None:
    session.snoozed_at = None
    session.snoozed_until = None
    session.snoozed_by = None
    session.save(update_fields=["snoozed_at", "snoozed_until", "snoozed_by"])
    if session.status != Session.Status.CLOSED:
        im_messages.system_message_post(
            conversation_id=session.conversation_id, code=code, internal=True
        )
        _publish(session)


def snooze_woken_publish(*, session_id: int) -> None:
    """The customer replied to a snoozed conversation (the send's hook already cleared its
    ``snoozed_*`` fields, inside the send's transaction): the internal line "The customer
    replied" and ``conversation.snoozed`` to the agents."""
    session = Session.objects.get(pk=session_id)
    im_messages.system_message_post(
        conversation_id=session.conversation_id, code=syslines.SNOOZE_ENDED_REPLY, internal=True
    )
    _publish(session)


def snooze_wake_scan(*, now: dt.datetime | None = None, limit: int = 200) -> int:
    """Beat: bring back every conversation whose ``snoozed_until`` has passed (a closed one is
    only cleared); returns how many. Rows another worker holds are skipped (``SKIP LOCKED``) and
    taken by the next scan, so two workers never wake one twice."""
    now = now or timezone.now()
    woken = 0
    with transaction.atomic():
        due = list(
            Session.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(snoozed_until__isnull=False, snoozed_until__lte=now)
            .order_by("snoozed_until")[:limit]
        )
        for session in due:
            _wake(session, code=syslines.SNOOZE_ENDED)
            woken += 1
    return woken
