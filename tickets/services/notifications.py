"""Staff notifications (:class:`tickets.models.Notification`): stored, then pushed live.

The row is the record: it is written in the caller's transaction (so the SLA scanner's "mark the
clock and notify" is one atomic step), and ``notification.new`` goes to the recipient's sockets on
``/ws/agent/`` after commit (docs/protocol.md). A client that missed the push lists them with
``GET /api/v1/tickets/notifications`` (docs/api.md §6).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from org import alerts
from org.models import User
from tickets.models import Notification, SlaClock, Ticket
from tickets.selectors import notification_payload
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

IDS_MAX = 500

#: the notifications also pushed to people away from the inbox (org.alerts): kind → (alert kind,
#: title)
PUSHED = {
    Notification.Kind.SLA_WARNING: ("sla", gettext_noop("SLA warning")),
    Notification.Kind.SLA_BREACH: ("sla", gettext_noop("SLA breached")),
    Notification.Kind.SLA_ESCALATION: ("sla", gettext_noop("SLA escalation")),
    Notification.Kind.ASSIGNED: ("assignment", gettext_noop("Ticket assigned to you")),
    Notification.Kind.MENTION: ("mention", gettext_noop("You were mentioned")),
}


def notifications_create(
    *,
    recipients: Iterable[User | None],
    kind: str,
    text: str,
    ticket: Ticket | None = None,
    clock: SlaClock | None = None,
    exclude: User | None = None,
) -> list[Notification]:
    """One notification per distinct active recipient (``None`` and ``exclude`` skipped; ``text``
    cut at 500 characters), inserted in one statement; each recipient gets ``notification.new``
    on their own sockets after commit, and a web push when away (:data:`PUSHED` kinds,
    :func:`org.alerts.alert`). Returns the rows."""
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
    if kind in PUSHED and seen:
        alert_kind, title = PUSHED[kind]
        alerts.alert(
            kind=alert_kind,
            user_ids=list(seen),
            title=title,
            body="%(text)s",
            params={"text": alerts.preview(text)},
            url="/inbox/",
        )
    return rows


def notifications_mark_read(*, user: User, ids: object = None) -> int:
    """Mark the user's notifications read: the given ids (a list of at most 500), or all when
    ``ids`` is None. Returns how many changed. Errors: ``invalid``."""
    qs = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        if not isinstance(ids, list) or len(ids) > IDS_MAX:
            raise ServiceError("invalid", _("ids must be a list of at most 500 ids."), field="ids")
        qs = qs.filter(pk__in=[parsing.pk(i, "ids") for i in ids])
    return qs.update(read_at=timezone.now())
