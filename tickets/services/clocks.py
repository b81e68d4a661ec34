"""SLA clocks (TK-2): start, pause, resume, meet and re-target the targets of a ticket.

Called by the ticket and comment services (:mod:`tickets.services.tickets`,
:mod:`tickets.services.comments`) inside their transaction; the scanner that acts on what is due
is :mod:`tickets.services.sla`.

Rules (after Zendesk's SLA policies, "Defining SLA policies"):

* **First response** starts when the ticket is created and is met by the first public reply of a
  staff member. **Resolution** starts at creation and is met when the ticket is solved; it runs
  on again, with the time already counted, if the ticket is reopened. **Next response** starts
  when the requester writes after a staff reply and is met by the next public staff reply.
* Every running clock pauses while the ticket is *pending* or *on hold* and resumes, with what
  it had counted, when it leaves those states. Closing or merging cancels what has not been met.
* Time is counted in the policy's business calendar (or around the clock); ``due_at`` and
  ``warn_at`` are stored when a run starts, so the scanner (:mod:`tickets.services.sla`) needs only the
  database. The warning comes at ``warning_percent`` of the target.
* A clock met after its due instant counts as breached (``breached_at`` = ``due_at``), whether or
  not the scanner had seen it yet.

Every function here runs inside the caller's transaction and takes ``now`` explicitly.
"""

from __future__ import annotations

import datetime as dt

from org import business_hours
from org.models import BusinessCalendar
from tenants import fanout
from tickets.models import SlaClock, SlaPolicy, SlaTarget, Ticket

PAUSED = frozenset({Ticket.Status.PENDING, Ticket.Status.ON_HOLD})
DONE = frozenset({Ticket.Status.SOLVED, Ticket.Status.CLOSED, Ticket.Status.MERGED})
TARGET_FIELD = {
    SlaClock.Kind.FIRST_RESPONSE: "first_response_s",
    SlaClock.Kind.NEXT_RESPONSE: "next_response_s",
    SlaClock.Kind.RESOLUTION: "resolution_s",
}


def policy_for(ticket: Ticket) -> SlaPolicy | None:
    """The workgroup's policy (lowest id when several), else the default one, else none."""
    if ticket.workgroup_id:
        policy = SlaPolicy.objects.filter(workgroups=ticket.workgroup_id).order_by("pk").first()
        if policy is not None:
            return policy
    return SlaPolicy.objects.filter(is_default=True).first()


class _Context:
    """The policy, its calendar and the ticket's targets, loaded once per operation."""

    def __init__(self, ticket: Ticket) -> None:
        self.policy = ticket.sla_policy
        self.calendar = _calendar(self.policy.calendar_id) if self.policy else None
        target = (
            SlaTarget.objects.filter(policy=self.policy, priority=ticket.priority).first()
            if self.policy
            else None
        )
        self.targets = {
            kind: getattr(target, name) if target else None for kind, name in TARGET_FIELD.items()
        }

    @property
    def warn_ratio(self) -> float:
        return (self.policy.warning_percent if self.policy else 75) / 100


def _calendar(calendar_id: int | None) -> business_hours.Calendar | None:
    if calendar_id is None:
        return None
    return (
        BusinessCalendar.objects.prefetch_related("hours", "holidays")
        .get(pk=calendar_id)
        .as_calendar()
    )


def _run(clock: SlaClock, ctx: _Context, now: dt.datetime) -> None:
    """Start a run at ``now`` with what the clock has counted so far."""
    left = max(0.0, clock.target_s - clock.elapsed_s)
    clock.running_since = now
    clock.due_at = business_hours.add(ctx.calendar, now, left)
    if clock.warned_at is None:
        warn_left = max(0.0, clock.target_s * ctx.warn_ratio - clock.elapsed_s)
        clock.warn_at = business_hours.add(ctx.calendar, now, warn_left)
    else:
        clock.warn_at = None


def _stop_run(clock: SlaClock, ctx: _Context, now: dt.datetime) -> None:
    if clock.running_since is not None:
        clock.elapsed_s += business_hours.between(ctx.calendar, clock.running_since, now)
    clock.running_since = None


def _meet(clock: SlaClock, ctx: _Context, now: dt.datetime) -> None:
    if clock.due_at is not None and now > clock.due_at and clock.breached_at is None:
        clock.breached_at = clock.due_at
    _stop_run(clock, ctx, now)
    clock.met_at = now
    clock.warn_at = None
    clock.next_escalation_at = None


def _open_clocks(ticket: Ticket) -> list[SlaClock]:
    return list(
        SlaClock.objects.select_for_update().filter(
            ticket=ticket, met_at__isnull=True, cancelled=False
        )
    )


def _save(clocks: list[SlaClock]) -> None:
    fields = [
        "target_s",
        "elapsed_s",
        "running_since",
        "due_at",
        "warn_at",
        "met_at",
        "breached_at",
        "next_escalation_at",
        "cancelled",
    ]
    SlaClock.objects.bulk_update(clocks, fields)
    if any(c.met_at is None and not c.cancelled for c in clocks):
        fanout.live_mark("sla")  # the scanner watches this tenant again (tenants/fanout.py)


def _new_clock(ticket: Ticket, kind: str, ctx: _Context, now: dt.datetime) -> SlaClock | None:
    target = ctx.targets.get(kind)
    if not target:
        return None
    clock = SlaClock(ticket=ticket, kind=kind, target_s=target, started_at=now)
    if ticket.status not in PAUSED:
        _run(clock, ctx, now)
    clock.save()
    fanout.live_mark("sla")  # the scanner watches this tenant (tenants/fanout.py)
    return clock


def sla_clocks_start(*, ticket: Ticket, now: dt.datetime) -> list[SlaClock]:
    """A new ticket: pick its policy and start first response and resolution."""
    ticket.sla_policy = policy_for(ticket)
    Ticket.objects.filter(pk=ticket.pk).update(sla_policy=ticket.sla_policy)
    ctx = _Context(ticket)
    started = [
        _new_clock(ticket, SlaClock.Kind.FIRST_RESPONSE, ctx, now),
        _new_clock(ticket, SlaClock.Kind.RESOLUTION, ctx, now),
    ]
    return [c for c in started if c is not None]


def sla_clocks_status_changed(*, ticket: Ticket, old: str, now: dt.datetime) -> None:  # noqa: PLR0912
    """``ticket.status`` changed from ``old``: pause, resume, meet or cancel clocks."""
    new = ticket.status
    ctx = _Context(ticket)
    changed: list[SlaClock] = []
    if new in (Ticket.Status.CLOSED, Ticket.Status.MERGED):
        for clock in _open_clocks(ticket):
            _stop_run(clock, ctx, now)
            clock.cancelled = True
            clock.due_at = clock.warn_at = clock.next_escalation_at = None
            changed.append(clock)
    elif new == Ticket.Status.SOLVED:
        for clock in _open_clocks(ticket):
            _meet(clock, ctx, now)
            changed.append(clock)
    elif new in PAUSED:
        for clock in _open_clocks(ticket):
            if clock.running_since is not None:
                if clock.due_at is not None and now >= clock.due_at and not clock.breached_at:
                    clock.breached_at = clock.due_at  # late already; the scanner still tells
                _stop_run(clock, ctx, now)
                clock.due_at = clock.warn_at = None
                changed.append(clock)
    else:  # new or open
        if old == Ticket.Status.SOLVED:  # reopened: resolution runs on
            resolution = (
                SlaClock.objects.select_for_update()
                .filter(ticket=ticket, kind=SlaClock.Kind.RESOLUTION, cancelled=False)
                .order_by("-started_at")
                .first()
            )
            if resolution is not None and resolution.met_at is not None:
                resolution.met_at = None
                _run(resolution, ctx, now)
                _save([resolution])
        for clock in _open_clocks(ticket):
            if clock.running_since is None:
                _run(clock, ctx, now)
                changed.append(clock)
    _save(changed)


def sla_clocks_staff_replied(*, ticket: Ticket, now: dt.datetime) -> None:
    """A public reply by staff meets first response and any running next response."""
    ctx = _Context(ticket)
    met = [
        clock
        for clock in _open_clocks(ticket)
        if clock.kind in (SlaClock.Kind.FIRST_RESPONSE, SlaClock.Kind.NEXT_RESPONSE)
    ]
    for clock in met:
        _meet(clock, ctx, now)
    _save(met)


def sla_clocks_requester_replied(*, ticket: Ticket, now: dt.datetime) -> None:
    """The requester wrote after a staff reply: a next-response clock starts (one at a time)."""
    if ticket.first_responded_at is None or ticket.status in DONE:
        return
    waiting = SlaClock.objects.filter(
        ticket=ticket, kind=SlaClock.Kind.NEXT_RESPONSE, met_at__isnull=True, cancelled=False
    ).exists()
    if not waiting:
        _new_clock(ticket, SlaClock.Kind.NEXT_RESPONSE, _Context(ticket), now)


def sla_clocks_retarget(*, ticket: Ticket, now: dt.datetime) -> None:
    """Priority or workgroup changed: take the (maybe new) policy's targets for the clocks that
    are still open, keeping what they have counted; a clock whose target disappears is
    cancelled."""
    ticket.sla_policy = policy_for(ticket)
    Ticket.objects.filter(pk=ticket.pk).update(sla_policy=ticket.sla_policy)
    ctx = _Context(ticket)
    changed = []
    for clock in _open_clocks(ticket):
        running = clock.running_since is not None
        _stop_run(clock, ctx, now)
        target = ctx.targets.get(clock.kind)
        if not target:
            clock.cancelled = True
            clock.due_at = clock.warn_at = clock.next_escalation_at = None
        else:
            clock.target_s = target
            if running:
                _run(clock, ctx, now)
        changed.append(clock)
    _save(changed)
    if ticket.status not in DONE:  # targets the old policy did not have
        kinds = {c.kind for c in SlaClock.objects.filter(ticket=ticket)}
        for kind in (SlaClock.Kind.FIRST_RESPONSE, SlaClock.Kind.RESOLUTION):
            if kind not in kinds and not (
                kind == SlaClock.Kind.FIRST_RESPONSE and ticket.first_responded_at
            ):
                _new_clock(ticket, kind, ctx, now)
