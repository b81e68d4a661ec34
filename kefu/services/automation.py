"""Automation of visitor conversations (KF-12): keyword auto-replies at once, and timers that a
Celery beat task runs every few seconds (:func:`timers_scan`, with the queue limits of
:mod:`kefu.services.queue` and the transfer expiry of :mod:`kefu.services.transfers`):

- **reminder** — a visitor has waited ``remind_after_s`` seconds for an answer (their last message
  is newer than the agent's): the agent gets ``session.reminder`` (a toast and a desktop
  notification in the inbox), once per unanswered message;
- **re-assignment** — after ``reassign_after_s`` seconds the conversation goes to another
  available agent of the workgroup (never back to the same one); the visitor reads a line about it;
- **idle close** — no message from either side for ``idle_close_after_min`` minutes: the closing
  message is posted and the conversation ends.

The clocks are ``Session.last_visitor_at`` / ``last_agent_at``, set as messages are stored.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from im import senders as im_senders
from im.services import messages as im_messages
from kefu import syslines
from kefu.channels.delivery import session_line_post
from kefu.models import AgentState, AutoReply, LabelRule, Session, Workgroup
from kefu.senders import robot_sender_for
from kefu.services.routing import workgroup_dispatch
from kefu.services.sessions import session_close
from kefu.services.transfers import agent_leave
from weiyu.realtime import publish_event_on_commit

#: seconds a process keeps a tenant's auto-reply and label-rule lists before reading them again
CACHE_S = 10.0
_cache: dict[str, tuple[float, list[AutoReply], list[LabelRule]]] = {}


def _rules() -> tuple[float, list[AutoReply], list[LabelRule]]:
    schema = connection.schema_name
    cached = _cache.get(schema)
    now = time.monotonic()
    if cached is None or now - cached[0] > CACHE_S:
        cached = (
            now,
            list(AutoReply.objects.filter(is_active=True)),
            list(LabelRule.objects.filter(is_active=True)),
        )
        _cache[schema] = cached
    return cached


def auto_replies() -> list[AutoReply]:
    """The current tenant's active auto-replies (cached per process for :data:`CACHE_S`)."""
    return _rules()[1]


def label_rules() -> list[LabelRule]:
    """The current tenant's active label rules (cached with the auto-replies)."""
    return _rules()[2]


def auto_reply_for(*, channel_id: int, content: str) -> AutoReply | None:
    """The first auto-reply (by keyword) of the channel, or of every channel, matching the
    visitor's text (case-insensitive; ``equals`` ignores surrounding space). No query while the
    tenant's rules are cached (:func:`auto_replies`)."""
    text = content.strip().lower()
    for rule in auto_replies():
        if rule.channel_id not in (None, channel_id):
            continue
        keyword = rule.keyword.strip().lower()
        if not keyword:
            continue
        if (rule.match == AutoReply.Match.EQUALS and text == keyword) or (
            rule.match == AutoReply.Match.CONTAINS and keyword in text
        ):
            return rule
    return None


def auto_reply_post(*, session: Session, rule: AutoReply) -> None:
    """Answer with an auto-reply, as the channel's robot name (``meta.auto_reply``: its id)."""
    im_messages.message_send(
        conversation_id=session.conversation_id,
        sender=robot_sender_for(session),
        content=rule.reply,
        meta={"auto_reply": rule.pk},
    )


def _waiting(now: Any, seconds_field: str) -> Q:
    """Open sessions whose visitor has waited at least the workgroup's ``seconds_field``."""
    return Q(
        status=Session.Status.OPEN,
        last_visitor_at__isnull=False,
        **{f"workgroup__{seconds_field}__gt": 0},
    ) & (Q(last_agent_at__isnull=True) | Q(last_agent_at__lt=F("last_visitor_at")))


def _remind(now: Any) -> int:
    due = (
        Session.objects.filter(_waiting(now, "remind_after_s"))
        .filter(Q(reminded_at__isnull=True) | Q(reminded_at__lt=F("last_visitor_at")))
        .select_related("workgroup", "visitor")
    )
    done = 0
    for session in due:
        waited = (now - session.last_visitor_at).total_seconds()
        if waited < session.workgroup.remind_after_s or session.agent_id is None:
            continue
        with transaction.atomic():
            updated = Session.objects.filter(
                Q(reminded_at__isnull=True) | Q(reminded_at__lt=F("last_visitor_at")),
                pk=session.pk,
                status=Session.Status.OPEN,
            ).update(reminded_at=now)
            if not updated:
                continue
            publish_event_on_commit(
                {
                    "type": "session.reminder",
                    "conversation_id": session.conversation_id,
                    "visitor": {"id": session.visitor_id, "name": session.visitor.name},
                    "waiting_s": int(waited),
                },
                [f"u:{session.agent_id}"],
            )
            done += 1
    return done


def _someone_else_free(session: Session) -> bool:
    return (
        AgentState.objects.filter(
            user__workgroups=session.workgroup_id,
            user__is_active=True,
            status=AgentState.Status.ONLINE,
            connected=True,
            open_count__lt=F("max_concurrent"),
        )
        .exclude(user_id=session.agent_id)
        .exists()
    )


def _reassign(now: Any) -> int:
    due = Session.objects.filter(_waiting(now, "reassign_after_s")).select_related("workgroup")
    done = 0
    for candidate in due:
        waited = (now - candidate.last_visitor_at).total_seconds()
        if waited < candidate.workgroup.reassign_after_s or not _someone_else_free(candidate):
            continue
        with transaction.atomic():
            session = (
                Session.objects.select_for_update(skip_locked=True)
                .select_related("visitor")
                .filter(pk=candidate.pk, status=Session.Status.OPEN, agent_id=candidate.agent_id)
                .first()
            )
            if session is None or session.agent_id is None:
                continue
            previous = session.agent_id
            Session.objects.filter(pk=session.pk).update(
                status=Session.Status.QUEUED,
                agent=None,
                queued_at=session.last_visitor_at,
                assigned_at=None,
                reassigned_from_id=previous,
            )
            agent_leave(session=session, user_id=previous)
            session_line_post(session=session, code=syslines.REQUEUED)
            workgroup_id = session.workgroup_id
            transaction.on_commit(lambda wid=workgroup_id: workgroup_dispatch(workgroup_id=wid))
            done += 1
    return done


def _idle_close(now: Any) -> int:
    limits = dict(
        Workgroup.objects.filter(idle_close_after_min__gt=0).values_list(
            "pk", "idle_close_after_min"
        )
    )
    done = 0
    for workgroup_id, minutes in limits.items():
        due = (
            Session.objects.filter(
                workgroup_id=workgroup_id,
                status__in=[Session.Status.OPEN, Session.Status.ROBOT],
            )
            .annotate(
                active_at=Greatest(
                    Coalesce("last_visitor_at", "created_at"),
                    Coalesce("last_agent_at", "created_at"),
                    Coalesce("assigned_at", "created_at"),
                )
            )
            .filter(active_at__lte=now - timedelta(minutes=minutes))
            .select_related("visitor", "workgroup")
        )
        for session in due:
            # the workgroup's own text is the tenant's words, in their language: posted as is
            own_text = session.workgroup.idle_close_message
            with transaction.atomic():
                locked = (
                    Session.objects.select_for_update(skip_locked=True)
                    .filter(pk=session.pk, status__in=[Session.Status.OPEN, Session.Status.ROBOT])
                    .first()
                )
                if locked is None:
                    continue
                session_line_post(
                    session=session,
                    code="" if own_text else syslines.IDLE_CLOSED,
                    content=own_text,
                )
                session_close(session_id=session.pk, closed_by=im_senders.SYSTEM)
                done += 1
    return done


def timers_scan(*, now: Any = None) -> int:
    """Reminders, re-assignments and idle closes due in the current tenant; returns how many
    were acted on. Safe to run concurrently."""
    now = now or timezone.now()
    return _remind(now) + _reassign(now) + _idle_close(now)
