"""The supervisors' live monitor (KF-13): every workgroup with its online agents and their load,
queue length and longest wait, and the conversations in progress; any conversation can be read
(not written) by a supervisor. Administrators and auditors see every workgroup; supervisors
(workgroup leads and people granted ``kefu.supervise_workgroup``, :mod:`kefu.supervision`) the
workgroups they supervise only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Case, Count, F, Min, Q, When
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Message
from im.serializers import message_payload
from im.syslines import message_text
from kefu import supervision
from kefu.models import AgentState, Session, Workgroup
from org.models import User
from weiyu.errors import ServiceError

#: conversations per page of the monitor (default and most)
PAGE_DEFAULT = 100
PAGE_MAX = 500
#: orders of the monitor's conversations: name → ORDER BY
ORDERS = {
    "oldest": ("created_at", "pk"),
    "newest": ("-created_at", "-pk"),
    "waiting": (F("waiting_since").asc(nulls_last=True), "created_at", "pk"),
}
LIVE_STATUSES = (Session.Status.ROBOT, Session.Status.QUEUED, Session.Status.OPEN)


def is_supervisor(user: User) -> bool:
    """Administrators (role or superuser), auditors, and supervisors of at least one
    workgroup (:func:`kefu.supervision.is_supervising`)."""
    return supervision.is_supervising(user)


def require_supervisor(user: User) -> None:
    """Raise ``ServiceError("forbidden")`` unless :func:`is_supervisor`."""
    if not is_supervisor(user):
        raise ServiceError("forbidden", _("Only supervisors can see the monitor."))


def monitor_filters(params: Any) -> dict[str, Any]:
    """The monitor's conversation filters from query parameters (docs/api.md §12), as keyword
    arguments of :func:`snapshot`: ``workgroup`` (id), ``agent`` (id, or ``none``: not
    assigned), ``status`` (``robot`` | ``queued`` | ``open``), ``waiting`` (seconds: only
    conversations whose visitor has waited at least that long), ``order`` (``oldest`` |
    ``newest`` | ``waiting``: longest wait first), ``offset`` (≥ 0) and ``limit`` (1 to 500,
    default 100). Raises ``ServiceError("invalid")`` naming the bad field."""

    def number(name: str, minimum: int, maximum: int | None = None) -> int | None:
        raw = params.get(name)
        if raw in (None, ""):
            return None
        value = int(raw) if str(raw).isdigit() and len(str(raw)) <= 12 else -1
        if maximum is not None and not minimum <= value <= maximum:
            message = _("%(field)s must be between %(low)d and %(high)d.") % {
                "field": name,
                "low": minimum,
                "high": maximum,
            }
        elif value < minimum:
            message = (
                _("%(field)s must be a positive integer.")
                if minimum
                else _("%(field)s must be a non-negative integer.")
            ) % {"field": name}
        else:
            return value
        raise ServiceError("invalid", message, field=name)

    agent: int | str | None = params.get("agent") or None
    if agent != "none":
        agent = number("agent", 1)
    status = params.get("status") or None
    order = params.get("order") or "oldest"
    for name, value, allowed in (("status", status, LIVE_STATUSES), ("order", order, ORDERS)):
        if value is not None and value not in allowed:
            raise ServiceError(
                "invalid",
                _("%(field)s must be one of: %(values)s.")
                % {"field": name, "values": ", ".join(allowed)},
                field=name,
            )
    limit = number("limit", 1, PAGE_MAX)
    return {
        "workgroup": number("workgroup", 1),
        "agent": agent,
        "status": status,
        "waiting": number("waiting", 0),
        "order": order,
        "offset": number("offset", 0) or 0,
        "limit": PAGE_DEFAULT if limit is None else limit,
    }


def snapshot(
    *,
    user: User,
    workgroup: int | None = None,
    agent: int | str | None = None,
    status: str | None = None,
    waiting: int | None = None,
    order: str = "oldest",
    offset: int = 0,
    limit: int = PAGE_DEFAULT,
) -> dict[str, Any]:
    """``{"at", "workgroups": [{"id", "name", "strategy", "queue_length", "longest_wait_s",
    "in_progress", "with_robot", "agents": [{"id", "name", "status", "open_count",
    "max_concurrent"}]}], "total", "offset", "limit", "conversations": [{"conversation_id",
    "visitor", "agent", "workgroup", "status", "started_at", "waiting_s"}]}`` — an agent's
    ``status`` is offline while no inbox of theirs is open, ``open_count`` counts open customer
    conversations only (as the inbox header and the admin do); ``waiting_s``: seconds since the
    visitor's last unanswered message (or since queued), null when nobody waits.
    ``conversations`` is one page (``offset``, ``limit``) of the live conversations that match
    the filters (:func:`monitor_filters`), in ``order``; ``total`` counts all that match. A
    supervisor gets only the workgroups they supervise and their conversations (a filter on
    another workgroup matches nothing). Raises ``ServiceError("forbidden")`` for
    non-supervisors."""
    require_supervisor(user)
    now = timezone.now()
    scope = supervision.supervised_workgroup_ids(user)
    live = Session.objects.exclude(status=Session.Status.CLOSED)
    workgroups = Workgroup.objects.order_by("name")
    if scope is not None:
        live = live.filter(workgroup_id__in=scope)
        workgroups = workgroups.filter(pk__in=scope)
    per_group = {
        row["workgroup_id"]: row
        for row in live.values("workgroup_id").annotate(
            queued=Count("pk", filter=Q(status=Session.Status.QUEUED)),
            open=Count("pk", filter=Q(status=Session.Status.OPEN)),
            robot=Count("pk", filter=Q(status=Session.Status.ROBOT)),
            oldest=Min("queued_at", filter=Q(status=Session.Status.QUEUED)),
        )
    }
    states = {s.user_id: s for s in AgentState.objects.all()}
    members: dict[int, list[User]] = {}
    for wg_id, user_id in Workgroup.agents.through.objects.values_list("workgroup_id", "user_id"):
        members.setdefault(wg_id, []).append(user_id)
    users = {u.pk: u for u in User.objects.filter(is_active=True)}
    groups = []
    for wg in workgroups:
        row = per_group.get(wg.pk, {})
        oldest = row.get("oldest")
        agents = []
        for uid in members.get(wg.pk, []):
            person, state = users.get(uid), states.get(uid)
            if person is None:
                continue
            agents.append(
                {
                    "id": uid,
                    "name": person.name,
                    "status": state.shown_status if state else AgentState.Status.OFFLINE,
                    "open_count": state.open_count if state else 0,
                    "max_concurrent": state.max_concurrent if state else 0,
                }
            )
        agents.sort(key=lambda a: (a["status"] != "online", a["name"].lower()))
        groups.append(
            {
                "id": wg.pk,
                "name": wg.name,
                "strategy": wg.strategy,
                "queue_length": row.get("queued", 0),
                "longest_wait_s": int((now - oldest).total_seconds()) if oldest else 0,
                "in_progress": row.get("open", 0),
                "with_robot": row.get("robot", 0),
                "agents": agents,
            }
        )
    matching = _filtered(
        live, now, workgroup=workgroup, agent=agent, status=status, waiting=waiting
    )
    total = matching.count()
    page = matching.select_related("visitor", "agent", "workgroup").order_by(*ORDERS[order])
    conversations = []
    for s in page[offset : offset + limit]:
        waiting_since = s.waiting_since
        conversations.append(
            {
                "conversation_id": s.conversation_id,
                "visitor": s.visitor.name,
                "agent": s.agent.name if s.agent else None,
                "workgroup": s.workgroup.name,
                "status": s.status,
                "started_at": s.created_at.isoformat(),
                "waiting_s": int((now - waiting_since).total_seconds()) if waiting_since else None,
            }
        )
    return {
        "at": now.isoformat(),
        "workgroups": groups,
        "total": total,
        "offset": offset,
        "limit": limit,
        "conversations": conversations,
    }


def _filtered(
    live: Any,
    now: dt.datetime,
    *,
    workgroup: int | None,
    agent: int | str | None,
    status: str | None,
    waiting: int | None,
) -> Any:
    """``live`` sessions annotated with ``waiting_since`` (queued: since queued; else the
    visitor's last message when no agent answered it since; else null), filtered."""
    live = live.annotate(
        waiting_since=Case(
            When(status=Session.Status.QUEUED, then=F("queued_at")),
            When(
                Q(last_visitor_at__isnull=False)
                & (Q(last_agent_at__isnull=True) | Q(last_agent_at__lt=F("last_visitor_at"))),
                then=F("last_visitor_at"),
            ),
            default=None,
        )
    )
    if workgroup is not None:
        live = live.filter(workgroup_id=workgroup)
    if agent == "none":
        live = live.filter(agent__isnull=True)
    elif agent is not None:
        live = live.filter(agent_id=agent)
    if status is not None:
        live = live.filter(status=status)
    if waiting is not None:
        live = live.filter(waiting_since__lte=now - dt.timedelta(seconds=waiting))
    return live


def transcript(*, user: User, conversation_id: int) -> dict[str, Any]:
    """A customer conversation for reading: ``{"conversation_id", "visitor", "agent",
    "workgroup", "status", "messages": [message]}`` (internal notes included, recalled ones
    without content). Raises ``ServiceError``: ``forbidden``, ``not_found`` (also for a
    conversation of a workgroup the supervisor does not supervise)."""
    require_supervisor(user)
    session = (
        Session.objects.select_related("visitor", "agent", "workgroup")
        .filter(conversation_id=conversation_id)
        .first()
    )
    scope = supervision.supervised_workgroup_ids(user)
    if session is None or (scope is not None and session.workgroup_id not in scope):
        raise ServiceError("not_found", _("No such conversation."))
    messages = (
        Message.objects.filter(conversation_id=conversation_id)
        .select_related("attachment", "sticker")
        .order_by("seq")[:2000]
    )
    return {
        "conversation_id": conversation_id,
        "visitor": session.visitor.name,
        "agent": session.agent.name if session.agent else None,
        "workgroup": session.workgroup.name,
        "status": session.status,
        "messages": [
            _read(message_payload(m)) for m in messages if m.msg_type != Message.Type.RECALL
        ],
    }


def _read(payload: dict[str, Any]) -> dict[str, Any]:
    """A message for the supervisor reading it: an automatic line in their language."""
    payload["content"] = message_text(payload)
    return payload
