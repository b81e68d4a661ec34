"""The SLA scanner (DESIGN.md §7): due times live in the database; a beat task
(:func:`tickets.tasks.sla_scan_task`) calls :func:`sla_scan`, which acts on what is due, exactly
once per warning, breach and escalation step.

Each step takes a batch of due clocks with ``SELECT … FOR UPDATE SKIP LOCKED``, marks them and
writes their notifications in the same transaction. A second scanner running at the same time
skips the locked rows; a worker killed mid-batch leaves an uncommitted transaction that PostgreSQL
rolls back, so the next scan does the whole batch again — never half of it, never twice.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from org.models import User
from tickets.models import Notification, SlaClock
from tickets.services.events import sla_breached_emit
from tickets.services.notifications import notifications_create
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


def _first_contact(clock: SlaClock) -> User | None:
    """Who hears first: the assignee, else the workgroup lead, else the policy's supervisor."""
    ticket = clock.ticket
    lead = ticket.workgroup.lead if ticket.workgroup_id else None
    supervisor = ticket.sla_policy.supervisor if ticket.sla_policy_id else None
    return ticket.assignee or lead or supervisor


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


def sla_clock_warn(*, clock: SlaClock, now: dt.datetime) -> None:
    """The clock passed its warning instant: mark ``warned_at`` and notify the first contact
    (assignee, else workgroup lead, else supervisor). Runs inside the scan's transaction on a
    locked clock whose ticket, workgroup lead and policy supervisor are loaded."""
    clock.warned_at = now
    clock.save(update_fields=["warned_at"])
    notifications_create(
        recipients=[_first_contact(clock)],
        kind=Notification.Kind.SLA_WARNING,
        text=_("#%(number)s %(subject)s: %(target)s target is close") % _label(clock),
        ticket=clock.ticket,
        clock=clock,
    )


def sla_clock_breach(*, clock: SlaClock, now: dt.datetime) -> None:
    """The clock is past due (or was found late while pausing): record ``breached_at`` (the due
    instant), ``breach_notified_at`` and the first escalation's time, and notify the first
    contact and the ticket's watchers. Same preconditions as :func:`sla_clock_warn`, plus the
    ticket's watchers prefetched."""
    clock.breached_at = clock.breached_at or clock.due_at
    clock.breach_notified_at = now
    step = _next_escalation(clock)
    clock.next_escalation_at = step[1] if step else None
    clock.save(update_fields=["breached_at", "breach_notified_at", "next_escalation_at"])
    notifications_create(
        recipients=[_first_contact(clock), *clock.ticket.watchers.all()],
        kind=Notification.Kind.SLA_BREACH,
        text=_("#%(number)s %(subject)s: %(target)s target breached") % _label(clock),
        ticket=clock.ticket,
        clock=clock,
    )
    sla_breached_emit(clock=clock)


def sla_clock_escalate(*, clock: SlaClock, now: dt.datetime) -> None:
    """The next escalation step is due: raise ``escalation_level`` (1 the workgroup lead, 2 the
    policy's supervisor), notify that person and schedule the step after it, if any. A clock with
    no step left only clears ``next_escalation_at``. Same preconditions as
    :func:`sla_clock_warn`."""
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
    notifications_create(
        recipients=[recipient],
        kind=Notification.Kind.SLA_ESCALATION,
        text=_("Escalated to you: #%(number)s %(subject)s, %(target)s target breached")
        % _label(clock),
        ticket=ticket,
        clock=clock,
    )


ACTIONS: dict[str, Callable[..., None]] = {
    "warning": sla_clock_warn,
    "breach": sla_clock_breach,
    "escalation": sla_clock_escalate,
}


def sla_clocks_live() -> bool:
    """Whether the current tenant has an SLA clock still to watch (not met, not cancelled): the
    scan keeps the tenant in its live set (tenants/fanout.py) while it has one."""
    return SlaClock.objects.filter(met_at__isnull=True, cancelled=False).exists()


def sla_scan(*, now: dt.datetime) -> dict[str, int]:
    """Act on every SLA clock of the current tenant that is due at ``now`` (aware): warnings,
    then breaches, then escalations, in transactions of :data:`BATCH` clocks each. Returns
    ``{"warning": n, "breach": n, "escalation": n}``, how many were handled. Safe to run twice at
    once (the second skips the rows the first holds)."""
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
                    ACTIONS[step](clock=clock, now=now)
            if events:
                async_to_sync(realtime.send_batch)(events)
            done[step] += len(batch)
            if len(batch) < BATCH:
                break
    return done
