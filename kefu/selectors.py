"""Read queries of customer service, used by consumers, views and the admin."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.models import Message
from im.serializers import member_payload
from kefu import inbox_views
from kefu.channels import capabilities_for
from kefu.csat import csat_payload
from kefu.models import (
    AgentState,
    Channel,
    RoutingRule,
    ScheduledMessage,
    Session,
    Visitor,
    Workgroup,
)
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError


def workgroup_has_online_agent(*, workgroup_id: int | None) -> bool:
    """Whether an agent of the workgroup is available now: online, with an inbox open, active
    (the widget offers to leave a message when nobody is, instead of a queue position)."""
    if workgroup_id is None:
        return False
    return AgentState.objects.filter(
        user__workgroups=workgroup_id,
        status=AgentState.Status.ONLINE,
        connected=True,
        user__is_active=True,
    ).exists()


def channel_get_active(*, public_key: object) -> Channel:
    """The active widget channel with this key; ``ServiceError("not_found")`` otherwise (a
    Telegram or WeChat channel's key opens no widget: its customers come through the vendor)."""
    channel = None
    if isinstance(public_key, str) and 0 < len(public_key) <= 64:
        channel = (
            Channel.objects.select_related("workgroup")
            .filter(public_key=public_key, is_active=True, kind=Channel.Kind.WIDGET)
            .first()
        )
    if channel is None:
        raise ServiceError("not_found", _("No such widget channel."), field="channel")
    return channel


def agent_state_payload(state: AgentState) -> dict[str, Any]:
    """The agent's own view: ``{"status" (the one they chose), "connected" (an inbox of theirs
    is open), "open_count" (open customer conversations), "max_concurrent"}``."""
    return {
        "status": state.status,
        "connected": state.connected,
        "open_count": state.open_count,
        "max_concurrent": state.max_concurrent,
    }


def session_payload(session: Session) -> dict[str, Any]:
    """The ``session`` part of a conversation (docs/protocol.md §2.1). ``labels`` and
    ``customer_message`` (the visitor's last words, for the list preview) are there when the
    caller loaded them (the conversation list and sync do; a live assignment does not)."""
    visitor: Visitor = session.visitor
    agent = session.agent
    return {
        "id": session.pk,
        "status": session.status,
        "agent": member_payload(f"u:{agent.pk}", agent.name) if agent else None,
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name,
            "page_url": visitor.page_url,
            "referrer": visitor.referrer,
            "language": visitor.language,
            "timezone": visitor.timezone,
        },
        "workgroup": {"id": session.workgroup_id, "name": session.workgroup.name},
        "created_at": session.created_at.isoformat(),
        "closed_at": session.closed_at.isoformat() if session.closed_at else None,
        "handed_over_at": session.handed_over_at.isoformat() if session.handed_over_at else None,
        "handover_reason": session.handover_reason or None,
        "csat": csat_payload(session),
        "waiting_since": inbox_views.waiting_since(session),
        **_session_extras(session),
        "channel": {
            "id": session.channel_id,
            "kind": session.channel.kind,
            "capabilities": capabilities_for(session.channel.kind).as_dict(),
        },
        # kefu.services.snooze; snoozed with snoozed_until None: until the customer replies
        "snoozed": session.snoozed_at is not None,
        "snoozed_at": session.snoozed_at.isoformat() if session.snoozed_at else None,
        "snoozed_until": session.snoozed_until.isoformat() if session.snoozed_until else None,
    }


def _session_extras(session: Session) -> dict[str, Any]:
    # only what the caller loaded: the send and assignment paths do not pay a query for them
    extras: dict[str, Any] = {}
    if "labels" in getattr(session, "_prefetched_objects_cache", {}):
        extras["labels"] = [inbox_views.label_payload(label) for label in session.labels.all()]
    if hasattr(session, "customer_message"):
        extras["customer_message"] = inbox_views.customer_message_payload(session.customer_message)
    return extras


def _with_sessions(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [p["id"] for p in payloads]
    sessions = {
        s.conversation_id: s
        for s in Session.objects.select_related("visitor", "workgroup", "agent", "channel")
        .prefetch_related("labels")
        .filter(conversation_id__in=ids)
    }
    customer = inbox_views.customer_messages(list(sessions))
    for conversation_id, session in sessions.items():
        session.customer_message = customer.get(conversation_id)
    for payload in payloads:
        session = sessions.get(payload["id"])
        payload["session"] = session_payload(session) if session else None
    return payloads


def conversation_list_for_member(
    *, member_key: str, closed_limit: int = 50
) -> list[dict[str, Any]]:
    """Every conversation of a member with its session, in a fixed number of queries whatever
    the count (see ``im.selectors.conversation_payloads``, plus one for sessions)."""
    participants = im_selectors.participant_list_for_member(
        member_key=member_key, closed_limit=closed_limit
    )
    return _with_sessions(
        im_selectors.conversation_payloads(participants=participants, member_key=member_key)
    )


def conversation_get_for_member(*, conversation_id: int, member_key: str) -> dict[str, Any]:
    """One conversation as :func:`conversation_list_for_member` shows it; ``not_found`` otherwise."""
    payload = im_selectors.conversation_payload_for_member(
        conversation_id=conversation_id, member_key=member_key
    )
    return _with_sessions([payload])[0]


def conversation_get_for_members(
    *,
    conversation_id: int,
    member_keys: list[str],
    session: Session | None = None,
    last_message: Message | None = None,
) -> dict[str, dict[str, Any]]:
    """A visitor conversation as each of ``member_keys`` sees it (with its ``session``), sharing
    the queries: ``{member key: payload}``. ``session``: the conversation's session with its
    visitor, agent, workgroup and channel loaded, when the caller holds it (not read again);
    ``last_message``: see ``im.selectors.conversation_payloads_for_members``."""
    payloads = im_selectors.conversation_payloads_for_members(
        conversation_id=conversation_id, member_keys=member_keys, last_message=last_message
    )
    if session is None:
        _with_sessions(list(payloads.values()))
    else:
        for payload in payloads.values():
            payload["session"] = session_payload(session)
    return payloads


_SESSION_FIELDS = [f.attname for f in Session._meta.concrete_fields]
#: the visitor's live session; written out because the ORM spent more CPU building the query
#: than PostgreSQL answering it, on every first message (bench/routing.py)
_LIVE_SESSION_SQL_TEMPLATE = (
    "SELECT {columns} FROM kefu_session WHERE visitor_id = %s AND status <> %s ORDER BY id LIMIT 1"
)
_LIVE_SESSION_SQL = _LIVE_SESSION_SQL_TEMPLATE.format(
    columns=", ".join(connection.ops.quote_name(f.column) for f in Session._meta.concrete_fields)
)


def _columns(model: type) -> tuple[list[str], str]:
    fields = model._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(
        connection.ops.quote_name(f.column) for f in fields
    )


_WORKGROUP_FIELDS, _WORKGROUP_COLUMNS = _columns(Workgroup)
_RULE_FIELDS, _RULE_COLUMNS = _columns(RoutingRule)
_WORKGROUP_SQL_TEMPLATE = "SELECT {columns} FROM kefu_workgroup WHERE id = %s"
_WORKGROUP_SQL = _WORKGROUP_SQL_TEMPLATE.format(columns=_WORKGROUP_COLUMNS)
_RULES_SQL_TEMPLATE = (
    "SELECT {columns} FROM kefu_routingrule WHERE channel_id = %s ORDER BY priority, id"
)
_RULES_SQL = _RULES_SQL_TEMPLATE.format(columns=_RULE_COLUMNS)


def workgroup_get(*, workgroup_id: int) -> Workgroup | None:
    """A workgroup by id, or None; one written-out query (every new session reads it)."""
    with connection.cursor() as cursor:
        cursor.execute(_WORKGROUP_SQL, [workgroup_id])
        row = cursor.fetchone()
    return None if row is None else Workgroup.from_db(connection.alias, _WORKGROUP_FIELDS, row)


def routing_rules(*, channel_id: int) -> list[RoutingRule]:
    """A channel's routing rules in the order they are tried (priority, then age); one
    written-out query (every new session reads them)."""
    with connection.cursor() as cursor:
        cursor.execute(_RULES_SQL, [channel_id])
        rows = cursor.fetchall()
    return [RoutingRule.from_db(connection.alias, _RULE_FIELDS, row) for row in rows]


def visitor_live_session(*, visitor_id: int) -> Session | None:
    """The visitor's queued or open session, if any (at most one exists)."""
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_SESSION_SQL, [visitor_id, Session.Status.CLOSED])
        row = cursor.fetchone()
    return None if row is None else Session.from_db(connection.alias, _SESSION_FIELDS, row)


def queue_list(*, workgroup_id: int) -> list[Session]:
    """Queued sessions of a workgroup, first come first served."""
    return list(
        Session.objects.select_related("workgroup")
        .filter(workgroup_id=workgroup_id, status=Session.Status.QUEUED)
        .order_by("queued_at", "id")
    )


def team_overview() -> dict[str, Any]:
    """Agents with status and load, and the workgroups: ``{"agents": [{"id", "name", "status",
    "open_count", "max_concurrent", "workgroups": [{"id", "name"}]}], "workgroups": [{"id",
    "name"}]}`` (active agents, by name). ``status``: offline while no inbox of theirs is open
    (:attr:`AgentState.shown_status`); ``open_count``: open customer conversations."""
    groups = {w.pk: {"id": w.pk, "name": w.name} for w in Workgroup.objects.order_by("name")}
    memberships: dict[int, list[dict[str, Any]]] = {}
    for user_id, workgroup_id in Workgroup.agents.through.objects.values_list(
        "user_id", "workgroup_id"
    ):
        memberships.setdefault(user_id, []).append(groups[workgroup_id])
    states = {s.user_id: s for s in AgentState.objects.all()}
    agents = []
    for user in User.objects.filter(is_active=True, role="agent"):
        state = states.get(user.pk)
        agents.append(
            {
                "id": user.pk,
                "name": user.name,
                "status": state.shown_status if state else AgentState.Status.OFFLINE,
                "open_count": state.open_count if state else 0,
                "max_concurrent": state.max_concurrent if state else 0,
                "workgroups": memberships.get(user.pk, []),
            }
        )
    agents.sort(key=lambda a: (a["name"].lower(), a["id"]))
    return {"agents": agents, "workgroups": list(groups.values())}


def queue_overview(*, user: Any) -> list[dict[str, Any]]:
    """The queues of the agent's workgroups: ``[{"id", "name", "allow_pick", "waiting": [{"session_id",
    "conversation_id", "visitor", "queued_at", "preview"}]}]`` (oldest first; preview: the
    visitor's first words, ≤ 80 characters)."""
    groups = list(Workgroup.objects.filter(agents=user).order_by("name"))
    waiting = list(
        Session.objects.filter(workgroup__in=groups, status=Session.Status.QUEUED)
        .select_related("visitor")
        .order_by("queued_at", "id")[:500]
    )
    previews = dict(
        Message.objects.filter(
            conversation_id__in=[s.conversation_id for s in waiting], sender_type="visitor"
        )
        .order_by("conversation_id", "seq")
        .distinct("conversation_id")
        .values_list("conversation_id", "content")
    )

    def entry(s: Session) -> dict[str, Any]:
        return {
            "session_id": s.pk,
            "conversation_id": s.conversation_id,
            "visitor": s.visitor.name,
            "queued_at": s.queued_at.isoformat() if s.queued_at else None,
            "preview": (previews.get(s.conversation_id) or "")[:80],
        }

    return [
        {
            "id": wg.pk,
            "name": wg.name,
            "allow_pick": wg.allow_pick,
            "waiting": [entry(s) for s in waiting if s.workgroup_id == wg.pk],
        }
        for wg in groups
    ]


def scheduled_list_for_member(*, member_key: str, conversation_id: object) -> list[Any]:
    """The scheduled messages of a customer conversation the member is in (pending first, then
    the 20 newest sent, failed or cancelled), with their authors; ``not_found`` when the member
    is not, or no longer, in it. Two queries."""
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    im_selectors.participant_get(conversation_id=conversation_id, member_key=member_key)
    rows = ScheduledMessage.objects.select_related("author").filter(conversation_id=conversation_id)
    pending = list(rows.filter(state=ScheduledMessage.State.PENDING).order_by("send_at", "pk"))
    done = list(
        rows.exclude(state=ScheduledMessage.State.PENDING).order_by("-updated_at", "-pk")[:20]
    )
    return pending + done
