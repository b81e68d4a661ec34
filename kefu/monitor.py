"""The supervisors' live monitor (KF-13): every workgroup with its online agents and their load,
queue length and longest wait, and the conversations in progress; any conversation can be read
(not written) by a supervisor. Administrators and auditors see every workgroup; supervisors
(workgroup leads and people granted ``kefu.supervise_workgroup``, :mod:`kefu.supervision`) the
workgroups they supervise only."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Message
from im.serializers import message_payload
from im.syslines import message_text
from kefu import supervision
from kefu.models import AgentState, Session, Workgroup
from org.models import User
from weiyu.errors import ServiceError


def is_supervisor(user: User) -> bool:
    """Administrators (role or superuser), auditors, and supervisors of at least one
    workgroup (:func:`kefu.supervision.is_supervising`)."""
    return supervision.is_supervising(user)


def _require(user: User) -> None:
    if not is_supervisor(user):
        raise ServiceError("forbidden", _("Only supervisors can see the monitor."))


def snapshot(*, user: User) -> dict[str, Any]:
    """``{"at", "workgroups": [{"id", "name", "strategy", "queue_length", "longest_wait_s",
    "in_progress", "with_robot", "agents": [{"id", "name", "status", "open_count",
    "max_concurrent"}]}], "conversations": [{"conversation_id", "visitor", "agent", "workgroup",
    "status", "started_at", "waiting_s"}]}`` — an agent's ``status`` is offline while no inbox
    of theirs is open, ``open_count`` counts open customer conversations only (as the inbox
    header and the admin do); ``waiting_s``: seconds since the visitor's last
    unanswered message (or since queued), null when nobody waits. A supervisor gets only the
    workgroups they supervise and their conversations. Raises ``ServiceError("forbidden")`` for
    non-supervisors."""
    _require(user)
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
            agent, state = users.get(uid), states.get(uid)
            if agent is None:
                continue
            agents.append(
                {
                    "id": uid,
                    "name": agent.name,
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
    conversations = []
    for s in live.select_related("visitor", "agent", "workgroup").order_by("created_at")[:500]:
        waiting_since = None
        if s.status == Session.Status.QUEUED:
            waiting_since = s.queued_at
        elif s.last_visitor_at and (s.last_agent_at is None or s.last_agent_at < s.last_visitor_at):
            waiting_since = s.last_visitor_at
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
    return {"at": now.isoformat(), "workgroups": groups, "conversations": conversations}


def transcript(*, user: User, conversation_id: int) -> dict[str, Any]:
    """A customer conversation for reading: ``{"conversation_id", "visitor", "agent",
    "workgroup", "status", "messages": [message]}`` (internal notes included, recalled ones
    without content). Raises ``ServiceError``: ``forbidden``, ``not_found`` (also for a
    conversation of a workgroup the supervisor does not supervise)."""
    _require(user)
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
