"""Tickets' part of a visitor's privacy export and erasure (kefu.privacy, docs/security.md,
"Privacy"): the tickets the visitor requested, with their public and internal comments."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from kefu.models import Visitor
from tickets.models import Comment, Ticket


def visitor_tickets_export(visitor: Visitor) -> list[dict[str, Any]]:
    """``[{"number", "subject", "status", "priority", "requester_email", "created_at",
    "comments": [{"public", "body", "by": "visitor" | agent name, "files": [name],
    "created_at"}]}]`` of the tickets the visitor requested, oldest first."""
    tickets = Ticket.objects.filter(requester_visitor=visitor).order_by("created_at")
    out = []
    for ticket in tickets:
        comments = (
            Comment.objects.filter(ticket=ticket)
            .select_related("author_user")
            .prefetch_related("attachments")
            .order_by("created_at")
        )
        out.append(
            {
                "number": ticket.number,
                "subject": ticket.subject,
                "status": ticket.status,
                "priority": ticket.priority,
                "requester_email": ticket.requester_email,
                "created_at": ticket.created_at.isoformat(),
                "comments": [
                    {
                        "public": c.public,
                        "body": c.body,
                        "by": "visitor"
                        if c.author_visitor_id
                        else (c.author_user.display_name if c.author_user else ""),
                        "files": [a.name for a in c.attachments.all()],
                        "created_at": c.created_at.isoformat(),
                    }
                    for c in comments
                ],
            }
        )
    return out


def visitor_tickets_erase(visitor: Visitor) -> int:
    """Redact the tickets the visitor requested: subject, requester e-mail and every comment's
    text emptied (files unlinked; the orphan purge deletes them), numbers, statuses and times
    kept for SLA statistics. Returns how many tickets."""
    ids = list(Ticket.objects.filter(requester_visitor=visitor).values_list("pk", flat=True))
    if not ids:
        return 0
    Ticket.objects.filter(pk__in=ids).update(
        subject=_("Erased at the customer's request"), requester_email=""
    )
    comments = Comment.objects.filter(ticket_id__in=ids)
    Comment.attachments.through.objects.filter(comment__ticket_id__in=ids).delete()
    comments.update(body="", mentions=[])
    return len(ids)
