"""Reading tickets: who may see a ticket, the payloads of docs/api.md §6 and the inbox's views
(my tickets, by status, by priority, by SLA risk). Nothing here writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, Min, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Attachment
from kefu import supervision
from org.models import User
from tickets.models import Comment, Notification, SlaClock, Ticket
from weiyu import parsing
from weiyu.errors import ServiceError

VIEWS = (
    "all",
    "mine",
    "unassigned",
    "open",
    "pending",
    "solved",
    "at_risk",
    "breached",
    "watching",
)
OPEN_STATUSES = (Ticket.Status.NEW, Ticket.Status.OPEN)
ACTIVE_STATUSES = (
    Ticket.Status.NEW,
    Ticket.Status.OPEN,
    Ticket.Status.PENDING,
    Ticket.Status.ON_HOLD,
)


def _person(user: User | None) -> dict[str, Any] | None:
    return None if user is None else {"id": user.pk, "key": user.member_key, "name": user.name}


def sees_all(user: User) -> bool:
    """Agents, admins and auditors see every ticket of their tenant."""
    return user.is_agent or user.is_auditor


def report_scope(user: User) -> set[int] | None:
    """The workgroups whose tickets ``user``'s ticket reports and SLA attainment cover: None
    (every ticket) for agents, administrators and auditors, the workgroups a supervisor
    supervises (``kefu.supervision``). Raises ``ServiceError("forbidden")`` for anyone else,
    a supervisor of nothing included."""
    if sees_all(user):
        return None
    if user.is_supervisor:
        scope = supervision.supervised_workgroup_ids(user)
        if scope is None or scope:
            return scope
    raise ServiceError("forbidden", _("Only agents and supervisors can see reports."))


def may_work(user: User) -> bool:
    """Who may change the tickets they see: agents, admins and supervisors (docs/security.md
    "Roles")."""
    return user.is_agent or user.is_supervisor


def can_see(user: User, ticket: Ticket) -> bool:
    """Agents, admins and auditors see every ticket of their tenant; a supervisor the tickets
    of the workgroups they supervise (``kefu.supervision``); everyone the ones they asked for,
    are assigned or watch."""
    if sees_all(user):
        return True
    if user.pk in (ticket.requester_user_id, ticket.assignee_id):
        return True
    if user.is_supervisor and ticket.workgroup_id is not None:
        scope = supervision.supervised_workgroup_ids(user)
        if scope is None or ticket.workgroup_id in scope:
            return True
    return ticket.watchers.filter(pk=user.pk).exists()


def visible(qs: QuerySet[Ticket], user: User) -> QuerySet[Ticket]:
    """``qs`` narrowed to what :func:`can_see` allows ``user``."""
    if sees_all(user):
        return qs
    mine = Q(requester_user=user) | Q(assignee=user) | Q(watchers=user)
    if user.is_supervisor:
        scope = supervision.supervised_workgroup_ids(user)
        mine |= Q() if scope is None else Q(workgroup_id__in=scope)
    return qs.filter(mine).distinct()


def ticket_get(*, ticket_id: object, user: User, lock: bool = False) -> Ticket:
    """The ticket if ``user`` may see it; ``not_found`` otherwise (same answer for both).
    ``lock``: ``SELECT … FOR UPDATE`` of the ticket row, for a service about to change it (inside
    its transaction)."""
    qs = Ticket.objects.select_for_update(of=("self",)) if lock else Ticket.objects
    ticket = (
        qs.select_related("assignee", "workgroup", "requester_user", "requester_visitor")
        .filter(pk=parsing.pk(ticket_id, "ticket_id"))
        .first()
    )
    if ticket is None or not can_see(user, ticket):
        raise ServiceError("not_found", _("No such ticket."))
    return ticket


def comment_attachment_get(
    *, attachment_id: object, user: User | None = None, visitor: Any = None
) -> Attachment:
    """A ticket comment's file, if the caller may see that comment (staff: the ticket; visitor:
    public comments of their own tickets). ``not_found`` otherwise."""
    comment = (
        Comment.objects.select_related("ticket")
        .filter(attachments=parsing.pk(attachment_id, "attachment_id"))
        .first()
    )
    allowed = comment is not None and (
        (user is not None and can_see(user, comment.ticket))
        or (
            visitor is not None
            and comment.public
            and comment.ticket.requester_visitor_id == visitor.pk
        )
    )
    if not allowed:
        raise ServiceError("not_found", _("No such file."))
    return comment.attachments.get(pk=attachment_id)


def clock_state(clock: SlaClock, now: dt.datetime) -> str:
    """``met``, ``breached`` (late, met or not), ``paused``, ``warning`` (past the warning
    instant), ``ok`` or ``cancelled`` — what the inbox colours green, red, grey and amber."""
    if clock.cancelled:
        return "cancelled"
    if clock.breached_at is not None or (
        clock.met_at is None and clock.due_at is not None and now >= clock.due_at
    ):
        return "breached"
    if clock.met_at is not None:
        return "met"
    if clock.running_since is None:
        return "paused"
    if clock.warned_at is not None or (clock.warn_at is not None and now >= clock.warn_at):
        return "warning"
    return "ok"


def notification_payload(n: Notification) -> dict[str, Any]:
    """``{"id", "kind", "text", "ticket": {"id", "number", "subject"} | null, "created_at",
    "read_at"}`` — the REST shape, also the ``notification.new`` event's."""
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


def notification_list_for_user(
    *, user: User, unread_only: bool = False, limit: int = 50
) -> tuple[list[Notification], int]:
    """``(the user's notifications, newest first, at most limit; how many are unread)``; only the
    unread ones when ``unread_only``."""
    qs = Notification.objects.filter(recipient=user).select_related("ticket")
    unread = qs.filter(read_at__isnull=True)
    return list((unread if unread_only else qs)[:limit]), unread.count()


def clock_payload(clock: SlaClock, now: dt.datetime) -> dict[str, Any]:
    """``{"kind", "state": ok|warning|breached|met|paused|cancelled, "target_s", "elapsed_s",
    "due_at", "warn_at", "met_at", "breached_at"}`` (times ISO or null; seconds of business
    time)."""
    elapsed = clock.elapsed_s
    if clock.running_since is not None and clock.met_at is None:
        elapsed += max(0.0, (now - clock.running_since).total_seconds())  # wall-clock estimate
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "kind": clock.kind,
        "state": clock_state(clock, now),
        "target_s": clock.target_s,
        "elapsed_s": round(clock.elapsed_s, 3),
        "due_at": iso(clock.due_at),
        "warn_at": iso(clock.warn_at),
        "met_at": iso(clock.met_at),
        "breached_at": iso(clock.breached_at),
        "running": clock.running_since is not None and clock.met_at is None,
    }


def ticket_payload(ticket: Ticket, now: dt.datetime | None = None) -> dict[str, Any]:
    """One ticket as lists show it (no comments)."""
    now = now or timezone.now()
    clocks = [c for c in ticket.clocks.all() if not c.cancelled]
    states = [clock_state(c, now) for c in clocks if c.met_at is None or c.breached_at]
    sla_state = (
        "breached"
        if "breached" in states
        else "warning"
        if "warning" in states
        else "paused"
        if "paused" in states
        else "ok"
        if clocks
        else None
    )
    requester: dict[str, Any]
    if ticket.requester_visitor_id:
        v = ticket.requester_visitor
        requester = {"type": "visitor", "id": v.pk, "key": f"v:{v.pk}", "name": v.name}
    elif ticket.requester_user_id:
        requester = {"type": "user", **_person(ticket.requester_user)}  # type: ignore[dict-item]
    else:
        requester = {"type": "email", "name": ticket.requester_email}
    return {
        "id": ticket.pk,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "source": ticket.source,
        "requester": requester,
        "requester_email": ticket.requester_email,
        "assignee": _person(ticket.assignee),
        "workgroup": (
            {"id": ticket.workgroup.pk, "name": ticket.workgroup.name} if ticket.workgroup else None
        ),
        "category": (
            {"id": ticket.category.pk, "name": ticket.category.name} if ticket.category else None
        ),
        "tags": ticket.tags,
        "due_at": ticket.due_at.isoformat() if ticket.due_at else None,
        "conversation_id": ticket.conversation_id,
        "merged_into": ticket.merged_into_id,
        "sla_policy": ticket.sla_policy.name if ticket.sla_policy else None,
        "sla_state": sla_state,
        "sla": [clock_payload(c, now) for c in clocks],
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
        "first_responded_at": (
            ticket.first_responded_at.isoformat() if ticket.first_responded_at else None
        ),
        "solved_at": ticket.solved_at.isoformat() if ticket.solved_at else None,
        "closed_at": ticket.closed_at.isoformat() if ticket.closed_at else None,
    }


def attachment_payload(attachment: Any, *, base: str = "/api/v1/tickets/attachments/") -> dict:
    """``{"id", "kind", "name", "content_type", "size" (bytes), "width", "height", "url",
    "thumbnail_url"}``; the URLs check who may see the comment (widget ones need ``?token=``)."""
    url = f"{base}{attachment.pk}"
    return {
        "id": attachment.pk,
        "kind": attachment.kind,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "url": url,
        "thumbnail_url": f"{url}?thumb=1" if attachment.thumbnail else None,
    }


def comment_payload(comment: Comment, *, files_base: str = "/api/v1/tickets/attachments/") -> dict:
    """``{"id", "author": {"type": "user"|"visitor"|"system", "id", "name"}, "public", "body",
    "mentions": [user ids], "attachments": [attachment], "created_at"}``."""
    if comment.author_user_id:
        author = {"type": "user", "id": comment.author_user_id, "name": comment.author_user.name}
    elif comment.author_visitor_id:
        author = {
            "type": "visitor",
            "id": comment.author_visitor_id,
            "name": comment.author_visitor.name,
        }
    else:
        author = {"type": "system", "id": None, "name": ""}
    return {
        "id": comment.pk,
        "author": author,
        "public": comment.public,
        "body": comment.body,
        "mentions": comment.mentions,
        "attachments": [attachment_payload(a, base=files_base) for a in comment.attachments.all()],
        "created_at": comment.created_at.isoformat(),
    }


def ticket_detail(ticket: Ticket, *, include_internal: bool) -> dict[str, Any]:
    """The ticket with its comments (internal notes only for staff) and watchers."""
    comments = ticket.comments.select_related("author_user", "author_visitor").prefetch_related(
        "attachments"
    )
    if not include_internal:
        comments = comments.filter(public=True)
    data = ticket_payload(ticket)
    data["comments"] = [comment_payload(c) for c in comments]
    data["watchers"] = [_person(u) for u in ticket.watchers.all()]
    return data


def _base() -> QuerySet[Ticket]:
    return Ticket.objects.select_related(
        "assignee", "workgroup", "category", "requester_user", "requester_visitor", "sla_policy"
    ).prefetch_related(Prefetch("clocks", queryset=SlaClock.objects.order_by("pk")))


def ticket_list(
    *,
    user: User,
    view: str = "all",
    status: str | None = None,
    priority: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Ticket], int]:
    """A page of the tickets ``user`` may see, in one of :data:`VIEWS`, newest first except
    ``at_risk`` / ``breached`` (soonest due first). Returns ``(page, total)``."""
    now = timezone.now()
    qs = _base()
    qs = visible(qs, user)
    live = SlaClock.objects.filter(ticket=OuterRef("pk"), met_at__isnull=True, cancelled=False)
    order: list[str] = ["-number"]
    if view == "mine":
        qs = qs.filter(assignee=user, status__in=ACTIVE_STATUSES)
    elif view == "unassigned":
        qs = qs.filter(assignee__isnull=True, status__in=ACTIVE_STATUSES)
    elif view == "open":
        qs = qs.filter(status__in=OPEN_STATUSES)
    elif view == "pending":
        qs = qs.filter(status__in=(Ticket.Status.PENDING, Ticket.Status.ON_HOLD))
    elif view == "solved":
        qs = qs.filter(status__in=(Ticket.Status.SOLVED, Ticket.Status.CLOSED))
    elif view == "watching":
        qs = qs.filter(watchers=user)
    elif view == "at_risk":
        qs = qs.filter(
            Exists(live.filter(Q(warn_at__lte=now) | Q(warned_at__isnull=False))),
            status__in=ACTIVE_STATUSES,
        ).exclude(Exists(live.filter(Q(due_at__lte=now) | Q(breached_at__isnull=False))))
        qs = qs.annotate(next_due=Min("clocks__due_at"))
        order = ["next_due", "number"]
    elif view == "breached":
        qs = qs.filter(
            Exists(live.filter(Q(due_at__lte=now) | Q(breached_at__isnull=False))),
            status__in=ACTIVE_STATUSES,
        )
        qs = qs.annotate(next_due=Min("clocks__due_at"))
        order = ["next_due", "number"]
    if status:
        qs = qs.filter(status=status)
    if priority:
        qs = qs.filter(priority=priority)
    if q:
        term = q.strip().lstrip("#")
        match = Q(subject__icontains=q.strip()) | Q(comments__body__icontains=q.strip())
        if term.isdigit():
            match |= Q(number=int(term))
        qs = qs.filter(match).distinct()
    total = qs.count()
    return list(qs.order_by(*order)[offset : offset + limit]), total


def visitor_tickets(*, visitor_id: int) -> list[Ticket]:
    """The tickets a widget visitor asked for, newest first."""
    return list(_base().filter(requester_visitor_id=visitor_id).order_by("-number")[:50])
