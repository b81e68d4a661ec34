"""Read queries of customer service, used by consumers, views and the admin."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.db.models import prefetch_related_objects
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.models import Attachment, Conversation, Message, MessagingSettings, Participant
from im.serializers import conversation_payload, member_payload
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
from weiyu.prepared import prepared_cursor


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


def _staff_extras_load(sessions: list[Session]) -> None:
    """Labels and the customer's last message of these sessions, for agents' lists (two
    queries; none without sessions). Visitors never get them: labels are the team's own."""
    if not sessions:
        return
    prefetch_related_objects(sessions, "labels")
    customer = inbox_views.customer_messages([s.conversation_id for s in sessions])
    for session in sessions:
        session.customer_message = customer.get(session.conversation_id)


def _with_sessions(payloads: list[dict[str, Any]], *, staff: bool = True) -> list[dict[str, Any]]:
    ids = [p["id"] for p in payloads]
    sessions = {
        s.conversation_id: s
        for s in Session.objects.select_related("visitor", "workgroup", "agent", "channel").filter(
            conversation_id__in=ids
        )
    }
    if staff:
        _staff_extras_load(list(sessions.values()))
    for payload in payloads:
        session = sessions.get(payload["id"])
        payload["session"] = session_payload(session) if session else None
    return payloads


def sessions_add(payloads: list[dict[str, Any]], *, member_key: str) -> None:
    """Add ``session`` to customer conversations' payloads as ``member_key`` sees them (staff:
    with labels and the customer's last message, as in their list), in place: the messaging
    API's conversation answers (im.hooks.payload_part_register). Three queries for staff, one
    for a visitor."""
    _with_sessions(payloads, staff=not im_selectors.is_visitor_key(member_key))


def conversation_list_for_member(
    *, member_key: str, closed_limit: int = 50
) -> list[dict[str, Any]]:
    """Every conversation of a member with its session, in a fixed number of queries whatever
    the count (see ``im.selectors.conversation_payloads``, plus one for sessions)."""
    participants = im_selectors.participant_list_for_member(
        member_key=member_key, closed_limit=closed_limit
    )
    return _with_sessions(
        im_selectors.conversation_payloads(participants=participants, member_key=member_key),
        staff=not im_selectors.is_visitor_key(member_key),
    )


_V_PARTICIPANT = im_selectors.RowColumns(Participant, "p")
_V_CONVERSATION = im_selectors.RowColumns(Conversation, "c")
_V_SESSION = im_selectors.RowColumns(Session, "s")
_V_VISITOR = im_selectors.RowColumns(
    Visitor, "v", only=("id", "name", "page_url", "referrer", "language", "timezone")
)
_V_WORKGROUP = im_selectors.RowColumns(Workgroup, "w", only=("id", "name"))
_V_AGENT = im_selectors.RowColumns(
    User, "u", only=("id", "display_name", "first_name", "last_name", "username")
)
_V_CHANNEL = im_selectors.RowColumns(Channel, "ch", only=("id", "csat_enabled", "kind"))
_V_AVATAR = im_selectors.RowColumns(Attachment, "av")
_V_LAST = (
    im_selectors.MESSAGE_COLUMNS,
    im_selectors.ATTACHMENT_COLUMNS,
    im_selectors.STICKER_COLUMNS,
)
#: a member's conversations as :func:`conversation_list_for_member` shows them, in one
#: statement: each membership with its conversation, session (visitor, workgroup, agent,
#: channel), active member count, internal notes after the read cursor (left out of a
#: visitor's unread count), other members' receipts (not for groups), a group's owner and
#: picture, and the newest message the member may see (with attachment and sticker). The ORM path took seven round trips, and most of a resume's
#: CPU (docs/benchmarks.md, "Connections").
_VISITOR_LIST_SQL_TEMPLATE = """
WITH mine AS (
    (SELECT p.id FROM im_participant p JOIN im_conversation c ON c.id = p.conversation_id
     WHERE p.member_key = %(key)s AND p.left_at IS NULL AND c.closed_at IS NULL)
    UNION ALL
    (SELECT p.id FROM im_participant p JOIN im_conversation c ON c.id = p.conversation_id
     WHERE p.member_key = %(key)s AND p.left_at IS NULL AND c.closed_at IS NOT NULL
     ORDER BY c.closed_at DESC LIMIT %(closed_limit)s)
)
SELECT {participant}, {conversation}, {session}, {visitor}, {workgroup}, {agent}, {channel},
       {last_message},
       (SELECT COUNT(*) FROM im_participant q
        WHERE q.conversation_id = p.conversation_id AND q.left_at IS NULL),
       (SELECT COUNT(*) FROM im_message n
        WHERE n.conversation_id = p.conversation_id AND n.internal AND n.seq > p.read_seq),
       (SELECT json_agg(json_build_array(q.member_key, q.name, q.delivered_seq, q.read_seq)
                        ORDER BY q.id)
        FROM im_participant q
        WHERE q.conversation_id = p.conversation_id AND q.left_at IS NULL
          AND q.member_key <> p.member_key AND c.kind <> 'group'),
       (SELECT json_build_array(o.member_key, o.name) FROM im_participant o
        WHERE o.conversation_id = c.id AND c.kind = 'group' AND o.role = 'owner'
          AND o.left_at IS NULL
        ORDER BY o.id DESC LIMIT 1),
       {avatar}
FROM mine
JOIN im_participant p ON p.id = mine.id
JOIN im_conversation c ON c.id = p.conversation_id
LEFT JOIN kefu_session s ON s.conversation_id = c.id
LEFT JOIN kefu_visitor v ON v.id = s.visitor_id
LEFT JOIN kefu_workgroup w ON w.id = s.workgroup_id
LEFT JOIN {user_table} u ON u.id = s.agent_id
LEFT JOIN kefu_channel ch ON ch.id = s.channel_id
LEFT JOIN LATERAL (
    SELECT * FROM im_message mm
    WHERE mm.conversation_id = c.id AND (%(see_internal)s OR NOT mm.internal)
    ORDER BY mm.seq DESC LIMIT 1
) m ON TRUE
LEFT JOIN im_attachment a ON a.id = m.attachment_id
LEFT JOIN im_sticker st ON st.id = m.sticker_id
LEFT JOIN im_attachment av ON av.id = c.avatar_id AND c.kind = 'group'
ORDER BY c.closed_at IS NOT NULL, c.closed_at DESC, p.id
"""
_VISITOR_LIST_SQL = _VISITOR_LIST_SQL_TEMPLATE.format(
    participant=_V_PARTICIPANT.sql,
    conversation=_V_CONVERSATION.sql,
    session=_V_SESSION.sql,
    visitor=_V_VISITOR.sql,
    workgroup=_V_WORKGROUP.sql,
    agent=_V_AGENT.sql,
    channel=_V_CHANNEL.sql,
    last_message=", ".join(columns.sql for columns in _V_LAST),
    avatar=_V_AVATAR.sql,
    user_table=connection.ops.quote_name(User._meta.db_table),
)


def member_conversation_list(*, member_key: str, closed_limit: int = 50) -> list[dict[str, Any]]:
    """A member's conversations exactly as :func:`conversation_list_for_member` gives them
    (every open one, oldest membership first, then the ``closed_limit`` most recently closed),
    in one written-out statement (:data:`_VISITOR_LIST_SQL`) instead of seven, plus one for the
    group size limit when the member is in a group: every socket asks at each (re)connect, so a
    reconnect storm asks it thousands of times at once. A visitor (``v:<id>``) sees no internal
    note: not as the last message, not in the unread count."""
    visitor_key = im_selectors.is_visitor_key(member_key)
    with prepared_cursor() as cursor:
        cursor.execute(
            _VISITOR_LIST_SQL,
            {"key": member_key, "closed_limit": closed_limit, "see_internal": not visitor_key},
        )
        rows = cursor.fetchall()
    payloads = []
    staff_sessions: list[Session] = []
    max_members: int | None = None
    for row in rows:
        at = 0
        parts = []
        for columns in (
            _V_PARTICIPANT,
            _V_CONVERSATION,
            _V_SESSION,
            _V_VISITOR,
            _V_WORKGROUP,
            _V_AGENT,
            _V_CHANNEL,
        ):
            parts.append(columns.load(row, at))
            at += columns.width
        participant, conversation, session, visitor, workgroup, agent, channel = parts
        last = im_selectors.load_message(row, at) if row[at] is not None else None
        at += sum(columns.width for columns in _V_LAST)
        member_count, hidden_notes, peer_rows, owner_row = row[at : at + 4]
        avatar = _V_AVATAR.load(row, at + 4)
        if isinstance(peer_rows, str):
            peer_rows = json.loads(peer_rows)
        if isinstance(owner_row, str):
            owner_row = json.loads(owner_row)
        participant.conversation = conversation
        peers = [
            Participant(
                conversation_id=conversation.pk,
                member_key=key,
                name=name,
                delivered_seq=delivered,
                read_seq=read,
            )
            for key, name, delivered, read in peer_rows or []
        ]
        owner = None
        group = conversation.kind == Conversation.Kind.GROUP
        if group:
            if max_members is None:
                max_members = MessagingSettings.current().group_max_members
            if owner_row:
                owner = Participant(member_key=owner_row[0], name=owner_row[1])
            if conversation.avatar_id:
                conversation.avatar = avatar
        payload = conversation_payload(
            participant,
            peers=peers,
            last_message=last,
            member_count=member_count,
            owner=owner,
            max_members=max_members if group else 0,
        )
        if visitor_key:
            payload["unread"] = max(0, payload["unread"] - hidden_notes)
        if session is None:
            payload["session"] = None
        else:
            session.visitor = visitor
            session.workgroup = workgroup
            session.agent = agent
            session.channel = channel
            payload["session"] = session
            if not visitor_key:
                staff_sessions.append(session)
        payloads.append(payload)
    return _sessions_payloads(payloads, staff_sessions)


def _sessions_payloads(
    payloads: list[dict[str, Any]], staff_sessions: list[Session]
) -> list[dict[str, Any]]:
    """The sessions put in the payloads as loaded objects, shaped (with the staff extras)."""
    _staff_extras_load(staff_sessions)
    for payload in payloads:
        if payload["session"] is not None:
            payload["session"] = session_payload(payload["session"])
    return payloads


_T_VISITOR = im_selectors.RowColumns(Visitor, "v")
_T_CHANNEL = im_selectors.RowColumns(Channel, "ch")
_VISITOR_WITH_CHANNEL_SQL_TEMPLATE = """
SELECT {visitor}, {channel} FROM kefu_visitor v JOIN kefu_channel ch ON ch.id = v.channel_id
WHERE v.id = %s
"""
_VISITOR_WITH_CHANNEL_SQL = _VISITOR_WITH_CHANNEL_SQL_TEMPLATE.format(
    visitor=_T_VISITOR.sql, channel=_T_CHANNEL.sql
)


def visitor_with_channel(*, visitor_id: int) -> Visitor | None:
    """A visitor with its ``channel`` loaded, or None; one written-out statement (every visitor
    socket asks at each (re)connect: the ORM spent more CPU building it than PostgreSQL
    answering, docs/benchmarks.md "Connections")."""
    with prepared_cursor() as cursor:
        cursor.execute(_VISITOR_WITH_CHANNEL_SQL, [visitor_id])
        row = cursor.fetchone()
    if row is None:
        return None
    visitor = _T_VISITOR.load(row, 0)
    visitor.channel = _T_CHANNEL.load(row, _T_VISITOR.width)
    return visitor


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
    "SELECT {columns} FROM kefu_session WHERE visitor_id = %s AND status <> %s AND thread_key = %s "
    "ORDER BY id LIMIT 1"
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


def visitor_live_session(*, visitor_id: int, thread_key: str = "") -> Session | None:
    """The visitor's queued or open session, if any (at most one exists per ``thread_key``:
    an e-mail contact has one per thread, every other visitor one)."""
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_SESSION_SQL, [visitor_id, Session.Status.CLOSED, thread_key])
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
