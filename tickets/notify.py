"""Staff notifications (:class:`tickets.models.Notification`): stored, then pushed live.

The row is the record: it is written in the caller's transaction (so the SLA scanner's "mark the
clock and notify" is one atomic step), and ``notification.new`` goes to the recipient's sockets on
``/ws/agent/`` after commit (docs/protocol.md). A client that missed the push lists them with
``GET /api/v1/tickets/notifications`` (docs/api.md §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from org.models import User
from tickets.models import Notification, SlaClock, Ticket
from weiyu.realtime import publish_event_on_commit


def notification_payload(n: Notification) -> dict[str, Any]:
    """``{"id", "kind", "text", "ticket": {"id", "number", "subject"} | null, "created_at",
    "read_at"}``."""
    ticket = n.ticket
    return {
        "id": n.pk,
        "kind": n.kind,
        "text": n.text,
        "ticket": (
            {"id": ticket.pk, "number": ticket.number, "subject": ticket.subject}
            if ticket is not None
            else None
        ),
        "created_at": n.created_at.isoformat(),
        "read_at": n.read_at.isoformat() if n.read_at else None,
    }


def notify(
    *,
    recipients: Iterable[User | None],
    kind: str,
    text: str,
    ticket: Ticket | None = None,
    clock: SlaClock | None = None,
    exclude: User | None = None,
) -> list[Notification]:
    """One notification per distinct active recipient (``None`` and ``exclude`` skipped)."""
    seen: dict[int, User] = {}
    for user in recipients:
        if user is not None and user.is_active and (exclude is None or user.pk != exclude.pk):
            seen.setdefault(user.pk, user)
    rows = Notification.objects.bulk_create(
        [
            Notification(recipient=user, kind=kind, text=text[:500], ticket=ticket, clock=clock)
            for user in seen.values()
        ]
    )
    for row, user in zip(rows, seen.values(), strict=True):
        publish_event_on_commit(
            {"type": "notification.new", "notification": notification_payload(row)},
            [user.member_key],
        )
    return rows
