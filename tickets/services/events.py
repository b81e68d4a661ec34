"""The ``ticket.updated`` event, published by the ticket and comment services after commit, and
the tickets' webhook events (docs/webhooks.md)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from org.webhooks.services import webhook_emit
from tickets.models import SlaClock, Ticket
from tickets.selectors import clock_payload, ticket_payload
from weiyu.realtime import publish_event_on_commit


def _ticket_data(ticket_id: int) -> dict[str, Any]:
    ticket = (
        Ticket.objects.select_related(
            "requester_visitor", "requester_user", "assignee", "workgroup", "category", "sla_policy"
        )
        .prefetch_related("clocks")
        .get(pk=ticket_id)
    )
    return {"ticket": ticket_payload(ticket)}


def ticket_webhook_emit(event: str, *, ticket_id: int) -> None:
    """Webhook ``ticket.created`` / ``ticket.updated`` ``{"ticket": ticket as the REST list shows
    it}``, read after commit, ordered per ticket (key ``ticket:<id>``)."""
    webhook_emit(event=event, key=f"ticket:{ticket_id}", build=lambda: _ticket_data(ticket_id))


def sla_breached_emit(*, clock: SlaClock) -> None:
    """Webhook ``sla.breached`` ``{"ticket": ticket, "clock": {"kind", "state", "target_s",
    "due_at", "breached_at", …}}`` (tickets.selectors.clock_payload), ordered per ticket."""
    ticket_id, clock_id = clock.ticket_id, clock.pk

    def build() -> dict[str, Any]:
        fresh = SlaClock.objects.get(pk=clock_id)
        return {**_ticket_data(ticket_id), "clock": clock_payload(fresh, timezone.now())}

    webhook_emit(event="sla.breached", key=f"ticket:{ticket_id}", build=build)


def ticket_updated_publish(*, ticket: Ticket, webhook_event: str = "ticket.updated") -> None:
    """``ticket.updated`` ``{"ticket": {"id", "number", "status"}}`` after commit to the
    assignee, the watchers, the workgroup's agents and the requester (staff ``u:<id>`` or visitor
    ``v:<id>``); recipients are read from the database now, inside the caller's transaction.
    Emits the webhook ``webhook_event`` too (``ticket.created`` from ``ticket_create``)."""
    ticket_webhook_emit(webhook_event, ticket_id=ticket.pk)
    keys = {f"u:{pk}" for pk in ticket.watchers.values_list("pk", flat=True)}
    if ticket.assignee_id:
        keys.add(f"u:{ticket.assignee_id}")
    if ticket.workgroup_id:
        keys |= {f"u:{pk}" for pk in ticket.workgroup.agents.values_list("pk", flat=True)}
    if ticket.requester_user_id:
        keys.add(f"u:{ticket.requester_user_id}")
    if ticket.requester_visitor_id:
        keys.add(f"v:{ticket.requester_visitor_id}")
    publish_event_on_commit(
        {
            "type": "ticket.updated",
            "ticket": {"id": ticket.pk, "number": ticket.number, "status": ticket.status},
        },
        sorted(keys),
    )
