"""The ``ticket.updated`` event, published by the ticket and comment services after commit."""

from __future__ import annotations

from tickets.models import Ticket
from weiyu.realtime import publish_event_on_commit


def ticket_updated_publish(*, ticket: Ticket) -> None:
    """``ticket.updated`` ``{"ticket": {"id", "number", "status"}}`` after commit to the
    assignee, the watchers, the workgroup's agents and the requester (staff ``u:<id>`` or visitor
    ``v:<id>``); recipients are read from the database now, inside the caller's transaction."""
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
