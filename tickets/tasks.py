"""The SLA scanner (DESIGN.md §7): due times live in the database; this beat task acts on what
is due, exactly once per warning, breach and escalation step.

Each step takes a batch of due clocks with ``SELECT … FOR UPDATE SKIP LOCKED``, marks them and
writes their notifications in the same transaction. A second scanner running at the same time
skips the locked rows; a worker killed mid-batch leaves an uncommitted transaction that PostgreSQL
rolls back, so the next scan does the whole batch again — never half of it, never twice.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_tenants.utils import get_tenant_model, schema_context

from tickets.models import Notification, SlaClock
from tickets.notify import notify
from weiyu import realtime

#: clocks per transaction (``SLA_SCAN_BATCH``): one batch is marked and notified atomically
BATCH = int(os.environ.get("SLA_SCAN_BATCH", "500"))
#: escalation levels: 0 none yet, 1 workgroup lead, 2 supervisor
LEAD, SUPERVISOR = 1, 2


def _due(now: dt.datetime) -> dict[str, Q]:
    live = Q(met_at__isnull=True, cancelled=False)
    return {
        "warning": live & Q(running_since__isnull=False, warned_at__isnull=True, warn_at__lte=now),
        # due and unseen, or found late while pausing (the ticket went pending after its due time)
        "breach": live
        & Q(breach_notified_at__isnull=True)
        & (Q(due_at__lte=now) | Q(breached_at__isnull=False)),
        "escalation": Q(next_escalation_at__lte=now, met_at__isnull=True, cancelled=False),
    }


def _label(clock: SlaClock) -> dict[str, Any]:
    ticket = clock.ticket
    return {"number": ticket.number, "subject": ticket.subject, "target": clock.get_kind_display()}


def _first_contact(clock: SlaClock) -> Any:
    """Who hears first: the assignee, else the workgroup lead, else the policy's supervisor."""
    ticket = clock.ticket
    lead = ticket.workgroup.lead if ticket.workgroup_id else None
    supervisor = ticket.sla_policy.supervisor if ticket.sla_policy_id else None
    return ticket.assignee or lead or supervisor


def _warn(clock: SlaClock, now: dt.datetime) -> None:
    clock.warned_at = now
    clock.save(update_fields=["warned_at"])
    notify(
        recipients=[_first_contact(clock)],
        kind=Notification.Kind.SLA_WARNING,
        text=_("#%(number)s %(subject)s: %(target)s target is close") % _label(clock),
        ticket=clock.ticket,
        clock=clock,
    )


def _next_escalation(clock: SlaClock) -> tuple[int, dt.datetime] | None:
    """The next escalation step after ``clock.escalation_level`` and when it is due."""
    ticket = clock.ticket
    policy = ticket.sla_policy
    if policy is None or clock.breached_at is None:
        return None
    lead = ticket.workgroup.lead if ticket.workgroup_id else None
    if clock.escalation_level < LEAD and lead is not None:
        return LEAD, clock.breached_at + dt.timedelta(seconds=policy.escalate_lead_after_s)
    if clock.escalation_level < SUPERVISOR and policy.supervisor_id:
        return SUPERVISOR, clock.breached_at + dt.timedelta(
            seconds=policy.escalate_supervisor_after_s
        )
    return None


def _breach(clock: SlaClock, now: dt.datetime) -> None:
    clock.breached_at = clock.breached_at or clock.due_at
    clock.breach_notified_at = now
    step = _next_escalation(clock)
    clock.next_escalation_at = step[1] if step else None
    clock.save(update_fields=["breached_at", "breach_notified_at", "next_escalation_at"])
    notify(
        recipients=[_first_contact(clock), *clock.ticket.watchers.all()],
        kind=Notification.Kind.SLA_BREACH,
        text=_("#%(number)s %(subject)s: %(target)s target breached") % _label(clock),
        ticket=clock.ticket,
        clock=clock,
    )


def _escalate(clock: SlaClock, now: dt.datetime) -> None:
    step = _next_escalation(clock)
    if step is None:
        clock.next_escalation_at = None
        clock.save(update_fields=["next_escalation_at"])
        return
    level, _at = step
    ticket = clock.ticket
    recipient = ticket.workgroup.lead if level == LEAD else ticket.sla_policy.supervisor
    clock.escalation_level = level
    following = _next_escalation(clock)
    clock.next_escalation_at = following[1] if following else None
    clock.save(update_fields=["escalation_level", "next_escalation_at"])
    notify(
        recipients=[recipient],
        kind=Notification.Kind.SLA_ESCALATION,
        text=_("Escalated to you: #%(number)s %(subject)s, %(target)s target breached")
        % _label(clock),
        ticket=ticket,
        clock=clock,
    )


ACTIONS = {"warning": _warn, "breach": _breach, "escalation": _escalate}


def sla_scan(now: dt.datetime | None = None) -> dict[str, int]:
    """Act on every SLA clock of the current tenant that is due at ``now`` (default: now).
    Returns how many warnings, breaches and escalations were handled."""
    now = now or timezone.now()
    done = {"warning": 0, "breach": 0, "escalation": 0}
    for step, condition in _due(now).items():
        while True:
            events: realtime.Batch = []
            # the batch's notifications are pushed together once it is committed: one trip to
            # the channel layer per batch rather than per notification
            with realtime.deferred(events), transaction.atomic():
                batch = list(
                    SlaClock.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related(
                        "ticket",
                        "ticket__assignee",
                        "ticket__workgroup__lead",
                        "ticket__sla_policy__supervisor",
                    )
                    .prefetch_related("ticket__watchers")
                    .filter(condition)
                    .order_by("pk")[:BATCH]
                )
                for clock in batch:
                    ACTIONS[step](clock, now)
            if events:
                async_to_sync(realtime.send_batch)(events)
            done[step] += len(batch)
            if len(batch) < BATCH:
                break
    return done


@shared_task
def sla_scan_task(schema: str) -> dict[str, int]:
    """Scan one tenant (see :func:`sla_scan`)."""
    with schema_context(schema):
        return sla_scan()


@shared_task
def sla_scan_all_task() -> int:
    """Beat (every 10 s): one :func:`sla_scan_task` per active tenant; returns how many."""
    schemas = list(
        get_tenant_model()
        .objects.filter(is_active=True)
        .exclude(schema_name="public")
        .values_list("schema_name", flat=True)
    )
    for schema in schemas:
        sla_scan_task.delay(schema)
    return len(schemas)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def reply_email_task(schema: str, comment_id: int) -> bool:
    """E-mail a public staff reply to the ticket's requester, once: the comment is locked and
    marked ``emailed_at`` in the same transaction as the send (a worker killed between the send
    and the commit may send it again — at least once, never lost). SMTP errors retry with
    back-off (``OSError``). Written in the visitor's language when we speak it. Returns whether
    a mail was sent."""
    from tickets.models import Comment
    from tickets.services import requester_address

    with schema_context(schema), transaction.atomic():
        comment = (
            Comment.objects.select_for_update(of=("self",))
            .select_related(
                "ticket", "ticket__requester_user", "ticket__requester_visitor", "author_user"
            )
            .filter(pk=comment_id, emailed_at__isnull=True, public=True)
            .first()
        )
        if comment is None:
            return False
        ticket = comment.ticket
        address = requester_address(ticket)
        if not address:
            return False
        with translation.override(_requester_language(ticket)):
            _send_reply(comment, ticket, address)
        comment.emailed_at = timezone.now()
        comment.save(update_fields=["emailed_at"])
        return True


def _requester_language(ticket: Any) -> str:
    """The visitor's browser language when we speak it, else the site's default."""
    wanted = ticket.requester_visitor.language if ticket.requester_visitor_id else ""
    try:
        return translation.get_supported_language_variant(wanted.lower()) if wanted else ""
    except LookupError:
        return ""


def _send_reply(comment: Any, ticket: Any, address: str) -> None:
    """Compose and send one reply (in the active language)."""
    from django.core.mail import EmailMessage

    lines = [comment.body, ""]
    files = list(comment.attachments.all())
    if files:
        lines += [_("Attached files (see the ticket):")] + [f"- {a.name}" for a in files] + [""]
    lines.append(
        _("— %(name)s, ticket #%(number)s. Reply to us in the chat on our website.")
        % {"name": comment.author_name, "number": ticket.number}
    )
    EmailMessage(
        subject=_("Re: [#%(number)s] %(subject)s")
        % {"number": ticket.number, "subject": ticket.subject},
        body="\n".join(lines),
        to=[address],
    ).send()
