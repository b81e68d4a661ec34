"""Read queries of customer service, used by consumers, views and the admin."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import connection
from django.db.models import prefetch_related_objects
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.models import Attachment, Conversation, Message, MessagingSettings
from im.serializers import (
    conversation_payload_values,
    group_payload_values,
    member_payload,
    message_payload_values,
    receipt_payload_values,
)
from kefu import inbox_views
from kefu.channels import capabilities_for
from kefu.csat import csat_payload, csat_payload_values
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
    return session_payload_values(
        session_id=session.pk,
        status=session.status,
        agent=(agent.pk, agent.name) if agent else None,
        visitor=(
            visitor.pk,
            visitor.name,
            visitor.page_url,
            visitor.referrer,
            visitor.language,
            visitor.timezone,
        ),
        workgroup=(session.workgroup_id, session.workgroup.name),
        created_at=session.created_at,
        closed_at=session.closed_at,
        handed_over_at=session.handed_over_at,
        handover_reason=session.handover_reason,
        csat=csat_payload(session),
        waiting_since=inbox_views.waiting_since(session),
        extras=_session_extras(session),
        channel=(session.channel_id, session.channel.kind),
        snoozed_at=session.snoozed_at,
        snoozed_until=session.snoozed_until,
    )


def session_payload_values(
    *,
    session_id: int,
    status: str,
    agent: tuple[int, str] | None,
    visitor: tuple[int, str, str, str, str, str],
    workgroup: tuple[int, str],
    created_at: dt.datetime,
    closed_at: dt.datetime | None,
    handed_over_at: dt.datetime | None,
    handover_reason: str,
    csat: dict[str, Any] | None,
    waiting_since: str | None,
    extras: dict[str, Any],
    channel: tuple[int, str],
    snoozed_at: dt.datetime | None,
    snoozed_until: dt.datetime | None,
) -> dict[str, Any]:
    """:func:`session_payload` from column values (a written-out statement's row, no model
    built): the one definition of the shape. ``agent``: ``(user id, name)`` or None;
    ``visitor``: ``(id, name, page_url, referrer, language, timezone)``; ``workgroup`` and
    ``channel``: ``(id, name)`` and ``(id, kind)``; ``csat``: ``kefu.csat.csat_payload_values``;
    ``extras``: ``{"labels", "customer_message"}`` for staff (agents' lists), ``{}`` otherwise."""
    visitor_id, visitor_name, page_url, referrer, language, timezone_name = visitor
    return {
        "id": session_id,
        "status": status,
        "agent": member_payload(f"u:{agent[0]}", agent[1]) if agent else None,
        "visitor": {
            "id": visitor_id,
            "name": visitor_name,
            "page_url": page_url,
            "referrer": referrer,
            "language": language,
            "timezone": timezone_name,
        },
        "workgroup": {"id": workgroup[0], "name": workgroup[1]},
        "created_at": created_at.isoformat(),
        "closed_at": closed_at.isoformat() if closed_at else None,
        "handed_over_at": handed_over_at.isoformat() if handed_over_at else None,
        "handover_reason": handover_reason or None,
        "csat": csat,
        "waiting_since": waiting_since,
        **extras,
        "channel": {
            "id": channel[0],
            "kind": channel[1],
            "capabilities": capabilities_for(channel[1]).as_dict(),
        },
        # kefu.services.snooze; snoozed with snoozed_until None: until the customer replies
        "snoozed": snoozed_at is not None,
        "snoozed_at": snoozed_at.isoformat() if snoozed_at else None,
        "snoozed_until": snoozed_until.isoformat() if snoozed_until else None,
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


_LIST_AVATAR = im_selectors.RowColumns(Attachment, "av")
_LIST_ATTACHMENT = im_selectors.ATTACHMENT_COLUMNS
_LIST_STICKER = im_selectors.STICKER_COLUMNS
#: a member's conversations as :func:`conversation_list_for_member` shows them, in one
#: statement whose row holds exactly what the payload shows, in this order: the conversation
#: and the membership; the active member count; the internal notes after the read cursor (left
#: out of a visitor's unread count; not counted for staff); the other members' receipts (not
#: for groups); a group's part with its owner; the session with its agent, visitor,
#: workgroup and channel; for staff only, the session's labels and the customer's last message;
#: the newest message the member may see; its attachment and sticker, and a group's picture
#: (the rare parts, read into models). The ORM path took seven round trips and built ~10
#: model instances per conversation (docs/benchmarks.md, "Connections").
_MEMBER_LIST_SQL_TEMPLATE = """
WITH mine AS (
    (SELECT p.id FROM im_participant p JOIN im_conversation c ON c.id = p.conversation_id
     WHERE p.member_key = %(key)s AND p.left_at IS NULL AND c.closed_at IS NULL)
    UNION ALL
    (SELECT p.id FROM im_participant p JOIN im_conversation c ON c.id = p.conversation_id
     WHERE p.member_key = %(key)s AND p.left_at IS NULL AND c.closed_at IS NOT NULL
     ORDER BY c.closed_at DESC LIMIT %(closed_limit)s)
)
SELECT c.id, c.kind, c.title, c.last_seq, c.last_message_at, c.closed_at,
       p.read_seq, p.delivered_seq, p.mention_seq, p.role, p.pinned_at, p.notifications_off,
       p.archived_at, p.muted_until,
       (SELECT COUNT(*) FROM im_participant q
        WHERE q.conversation_id = p.conversation_id AND q.left_at IS NULL),
       {hidden_notes},
       (SELECT json_agg(json_build_array(q.member_key, q.name, q.delivered_seq, q.read_seq)
                        ORDER BY q.id)
        FROM im_participant q
        WHERE q.conversation_id = p.conversation_id AND q.left_at IS NULL
          AND q.member_key <> p.member_key AND c.kind <> 'group'),
       c.category, c.announcement, c.announcement_at, c.all_muted, c.avatar_id,
       (SELECT json_build_array(o.member_key, o.name) FROM im_participant o
        WHERE o.conversation_id = c.id AND c.kind = 'group' AND o.role = 'owner'
          AND o.left_at IS NULL
        ORDER BY o.id DESC LIMIT 1),
       s.id, s.status, s.agent_id, u.display_name, u.first_name, u.last_name, u.username,
       v.id, v.name, v.page_url, v.referrer, v.language, v.timezone, s.workgroup_id, w.name,
       s.created_at, s.closed_at, s.handed_over_at, s.handover_reason,
       ch.csat_enabled, s.csat_score, s.csat_comment, s.csat_at,
       s.last_visitor_at, s.last_agent_at, s.channel_id, ch.kind, s.snoozed_at, s.snoozed_until,
       {labels},
       {customer_message},
       m.id, m.conversation_id, m.seq, m.client_msg_id, m.sender_key, m.sender_name,
       m.sender_type, m.msg_type, m.content, m.attachment_id, m.sticker_id, m.mentions,
       m.internal, m.recalled_at, m.ref_seq, m.meta, m.code, m.params, m.created_at,
       {attachment}, {sticker}, {avatar}
FROM mine
JOIN im_participant p ON p.id = mine.id
JOIN im_conversation c ON c.id = p.conversation_id
LEFT JOIN kefu_session s ON s.conversation_id = c.id
LEFT JOIN kefu_visitor v ON v.id = s.visitor_id
LEFT JOIN kefu_workgroup w ON w.id = s.workgroup_id
LEFT JOIN {user_table} u ON u.id = s.agent_id
LEFT JOIN kefu_channel ch ON ch.id = s.channel_id
{customer_join}
LEFT JOIN LATERAL (
    SELECT * FROM im_message mm
    WHERE mm.conversation_id = c.id{visible}
    ORDER BY mm.seq DESC LIMIT 1
) m ON TRUE
LEFT JOIN im_attachment a ON a.id = m.attachment_id
LEFT JOIN im_sticker st ON st.id = m.sticker_id
LEFT JOIN im_attachment av ON av.id = c.avatar_id AND c.kind = 'group'
ORDER BY c.closed_at IS NOT NULL, c.closed_at DESC, p.id
"""
_LIST_COMMON = {
    "attachment": _LIST_ATTACHMENT.sql,
    "sticker": _LIST_STICKER.sql,
    "avatar": _LIST_AVATAR.sql,
    "user_table": connection.ops.quote_name(User._meta.db_table),
}
#: a session's labels, by name (as ``Label.Meta.ordering``)
_STAFF_LABELS_SQL_TEMPLATE = """(
        SELECT json_agg(json_build_array(l.id, l.name, l.color, l.description) ORDER BY l.name)
        FROM {labels_table} sl JOIN kefu_label l ON l.id = sl.label_id
        WHERE sl.session_id = s.id)"""
#: the statement for staff: internal notes shown and not counted apart, labels and the
#: customer's last message. Visitors and staff get a statement each, without a parameter that
#: switches parts on and off: PostgreSQL would then plan each execution anew (a plan for the
#: value at hand looks cheaper than the one generic plan), ~2.4 ms of planning per visitor.
_STAFF_LIST_SQL = _MEMBER_LIST_SQL_TEMPLATE.format(
    hidden_notes="0",
    labels=_STAFF_LABELS_SQL_TEMPLATE.format(
        labels_table=connection.ops.quote_name(Session.labels.through._meta.db_table)
    ),
    customer_message="cm.seq, cm.content, cm.msg_type, cm.created_at, cm.recalled_at",
    customer_join="""LEFT JOIN LATERAL (
    SELECT x.seq, x.content, x.msg_type, x.created_at, x.recalled_at FROM im_message x
    WHERE s.id IS NOT NULL AND x.conversation_id = c.id AND x.sender_type = 'visitor'
    ORDER BY x.seq DESC LIMIT 1
) cm ON TRUE""",
    visible="",
    **_LIST_COMMON,
)
#: the statement for a visitor: no internal note, no staff part (NULLs in their place)
_VISITOR_LIST_SQL = _MEMBER_LIST_SQL_TEMPLATE.format(
    hidden_notes="""(SELECT COUNT(*) FROM im_message n
        WHERE n.conversation_id = p.conversation_id AND n.internal AND n.seq > p.read_seq)""",
    labels="NULL",
    customer_message="NULL, NULL, NULL, NULL, NULL",
    customer_join="",
    visible=" AND NOT mm.internal",
    **_LIST_COMMON,
)
#: where the parts of a :data:`_MEMBER_LIST_SQL_TEMPLATE` row start
_AT_SESSION = 23
_AT_STAFF = _AT_SESSION + 29
_AT_MESSAGE = _AT_STAFF + 6
_AT_RARE = _AT_MESSAGE + 19
#: offsets from ``_AT_RARE``: the last message's attachment and sticker, a group's picture
_RARE_STICKER = _LIST_ATTACHMENT.width
_RARE_AVATAR = _RARE_STICKER + _LIST_STICKER.width


def _json(value: Any) -> Any:
    # json and jsonb arrive as text from a bare cursor (Django's psycopg loaders)
    return json.loads(value) if isinstance(value, str) else value


def member_conversation_list(*, member_key: str, closed_limit: int = 50) -> list[dict[str, Any]]:
    """A member's conversations exactly as :func:`conversation_list_for_member` gives them
    (every open one, oldest membership first, then the ``closed_limit`` most recently closed),
    in one prepared statement (:data:`_STAFF_LIST_SQL`, :data:`_VISITOR_LIST_SQL`) instead of seven, plus one for the
    group size limit when the member is in a group: every socket asks at each (re)connect, so a
    reconnect storm asks it thousands of times at once. The payloads are built from the row's
    values (``im.serializers.conversation_payload_values``, :func:`session_payload_values`);
    only a last message's attachment or sticker and a group's picture become model instances.
    A visitor (``v:<id>``) sees no internal note (not as the last message, not in the unread
    count) and no staff part of the session (labels, the customer's last message)."""
    staff = not im_selectors.is_visitor_key(member_key)
    with prepared_cursor() as cursor:
        cursor.execute(
            _STAFF_LIST_SQL if staff else _VISITOR_LIST_SQL,
            {"key": member_key, "closed_limit": closed_limit},
        )
        rows = cursor.fetchall()
    payloads = []
    max_members: int | None = None
    for row in rows:
        (
            conversation_id,
            kind,
            title,
            last_seq,
            last_message_at,
            closed_at,
            read_seq,
            delivered_seq,
            mention_seq,
            role,
            pinned_at,
            notifications_off,
            archived_at,
            muted_until,
            member_count,
            hidden_notes,
            peer_rows,
            category,
            announcement,
            announcement_at,
            all_muted,
            avatar_id,
            owner,
        ) = row[:_AT_SESSION]
        group = None
        if kind == Conversation.Kind.GROUP:
            if max_members is None:
                max_members = MessagingSettings.current().group_max_members
            owner = _json(owner)
            group = group_payload_values(
                category=category,
                announcement=announcement,
                announcement_at=announcement_at,
                avatar=_LIST_AVATAR.load(row, _AT_RARE + _RARE_AVATAR) if avatar_id else None,
                all_muted=all_muted,
                owner=(owner[0], owner[1]) if owner else None,
                max_members=max_members,
            )
        payload = conversation_payload_values(
            conversation_id=conversation_id,
            kind=kind,
            title=title,
            last_seq=last_seq,
            last_message_at=last_message_at,
            closed_at=closed_at,
            read_seq=read_seq,
            delivered_seq=delivered_seq,
            mention_seq=mention_seq,
            role=role,
            pinned_at=pinned_at,
            notifications_off=notifications_off,
            archived_at=archived_at,
            muted_until=muted_until,
            member_count=member_count,
            group=group,
            peers=[
                receipt_payload_values(key, name, delivered, read)
                for key, name, delivered, read in _json(peer_rows) or ()
            ],
            last_message=_last_message(row),
        )
        if not staff:
            payload["unread"] = max(0, payload["unread"] - hidden_notes)
        payload["session"] = _session_of_row(row, staff) if row[_AT_SESSION] is not None else None
        payloads.append(payload)
    return payloads


def _last_message(row: tuple[Any, ...]) -> dict[str, Any] | None:
    """The payload of the row's newest message (None: the conversation has none the member
    may see)."""
    (
        message_id,
        conversation_id,
        seq,
        client_msg_id,
        sender_key,
        sender_name,
        sender_type,
        msg_type,
        content,
        attachment_id,
        sticker_id,
        mentions,
        internal,
        recalled_at,
        ref_seq,
        meta,
        code,
        params,
        created_at,
    ) = row[_AT_MESSAGE:_AT_RARE]
    if message_id is None:
        return None
    return message_payload_values(
        message_id=message_id,
        conversation_id=conversation_id,
        seq=seq,
        client_msg_id=client_msg_id,
        sender_key=sender_key,
        sender_name=sender_name,
        sender_type=sender_type,
        msg_type=msg_type,
        content=content,
        attachment=_LIST_ATTACHMENT.load(row, _AT_RARE) if attachment_id else None,
        sticker=_LIST_STICKER.load(row, _AT_RARE + _RARE_STICKER) if sticker_id else None,
        mentions=_json(mentions),
        internal=internal,
        recalled_at=recalled_at,
        ref_seq=ref_seq,
        meta=_json(meta),
        code=code,
        params=_json(params),
        created_at=created_at,
    )


def _session_of_row(row: tuple[Any, ...], staff: bool) -> dict[str, Any]:
    """The ``session`` part of a :data:`_MEMBER_LIST_SQL_TEMPLATE` row that has one; with ``labels``
    and ``customer_message`` for staff."""
    (
        session_id,
        status,
        agent_id,
        display_name,
        first_name,
        last_name,
        username,
        visitor_id,
        visitor_name,
        page_url,
        referrer,
        language,
        timezone_name,
        workgroup_id,
        workgroup_name,
        created_at,
        closed_at,
        handed_over_at,
        handover_reason,
        csat_enabled,
        csat_score,
        csat_comment,
        csat_at,
        last_visitor_at,
        last_agent_at,
        channel_id,
        channel_kind,
        snoozed_at,
        snoozed_until,
    ) = row[_AT_SESSION:_AT_STAFF]
    extras: dict[str, Any] = {}
    if staff:
        labels = row[_AT_STAFF]
        customer_seq, content, msg_type, written_at, recalled_at = row[_AT_STAFF + 1 : _AT_MESSAGE]
        extras["labels"] = [
            inbox_views.label_payload_values(*label) for label in _json(labels) or ()
        ]
        extras["customer_message"] = (
            None
            if customer_seq is None
            else inbox_views.customer_message_payload_values(
                seq=customer_seq,
                content=content,
                msg_type=msg_type,
                created_at=written_at,
                recalled_at=recalled_at,
            )
        )
    return session_payload_values(
        session_id=session_id,
        status=status,
        # org.models.User.name
        agent=None
        if agent_id is None
        else (agent_id, display_name or f"{first_name} {last_name}".strip() or username),
        visitor=(visitor_id, visitor_name, page_url, referrer, language, timezone_name),
        workgroup=(workgroup_id, workgroup_name),
        created_at=created_at,
        closed_at=closed_at,
        handed_over_at=handed_over_at,
        handover_reason=handover_reason,
        csat=csat_payload_values(
            asked=csat_enabled, score=csat_score, comment=csat_comment, rated_at=csat_at
        ),
        waiting_since=inbox_views.waiting_since_values(
            status=status, last_visitor_at=last_visitor_at, last_agent_at=last_agent_at
        ),
        extras=extras,
        channel=(channel_id, channel_kind),
        snoozed_at=snoozed_at,
        snoozed_until=snoozed_until,
    )


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
