"""Read queries of the messaging core, used by consumers, API views and other apps' selectors."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Count, F, QuerySet
from django.utils.translation import gettext as _

from im.models import (
    Attachment,
    Conversation,
    Message,
    MessagingSettings,
    Participant,
    Sticker,
)
from im.serializers import conversation_payload
from weiyu.errors import ServiceError
from weiyu.prepared import prepared_cursor

MESSAGE_RELATED = ("attachment", "sticker")


def _columns(model: type, alias: str) -> tuple[list[str], str]:
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    return [f.attname for f in fields], ", ".join(f"{alias}.{quote(f.column)}" for f in fields)


def is_visitor_key(member_key: str) -> bool:
    """Visitors (``v:<id>``) never see internal notes."""
    return member_key.startswith("v:")


def active_memberships(*, member_key: str) -> QuerySet[Participant]:
    """The member's current memberships: rows whose ``left_at`` is unset.

    The one rule of who is in a conversation. Every access check goes through this (or
    :func:`participant_get`, built on it): a member removed from a group, an agent who
    transferred a visitor away or a member who left keeps their row, with ``left_at`` set, and
    must see nothing of the conversation any more (docs/security.md, "Participation").
    """
    return Participant.objects.filter(member_key=member_key, left_at__isnull=True)


def participant_get(*, conversation_id: int, member_key: str) -> Participant:
    """The active membership of ``member_key`` in a conversation, with the conversation loaded.

    Raises ``ServiceError("not_found")`` when the conversation does not exist or the member is not
    (or no longer) in it; the two are indistinguishable on purpose.
    """
    participant = (
        active_memberships(member_key=member_key)
        .select_related("conversation")
        .filter(conversation_id=conversation_id)
        .first()
    )
    if participant is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return participant


def participant_list_for_member(*, member_key: str, closed_limit: int = 50) -> list[Participant]:
    """The member's memberships: every open conversation plus the ``closed_limit`` newest closed."""
    base = active_memberships(member_key=member_key).select_related("conversation")
    open_ones = list(base.filter(conversation__closed_at__isnull=True))
    closed = list(
        base.filter(conversation__closed_at__isnull=False).order_by("-conversation__closed_at")[
            :closed_limit
        ]
    )
    return open_ones + closed


_MESSAGE_FIELDS, _MESSAGE_COLUMNS = _columns(Message, "m")
_MESSAGE_BY_CLIENT_ID_SQL_TEMPLATE = (
    "SELECT {columns} FROM im_message m WHERE m.sender_key = %s AND m.client_msg_id = %s "
    "ORDER BY m.id LIMIT 1"
)
_MESSAGE_BY_CLIENT_ID_SQL = _MESSAGE_BY_CLIENT_ID_SQL_TEMPLATE.format(columns=_MESSAGE_COLUMNS)


def message_by_client_id(*, sender_key: str, client_msg_id: str) -> Message | None:
    """The message ``sender_key`` stored under ``client_msg_id`` (a resend), or None; one
    written-out query (each first message asks: the ORM cost more CPU building it than
    PostgreSQL answering)."""
    with connection.cursor() as cursor:
        cursor.execute(_MESSAGE_BY_CLIENT_ID_SQL, [sender_key, client_msg_id])
        row = cursor.fetchone()
    return None if row is None else Message.from_db(connection.alias, _MESSAGE_FIELDS, row)


#: a conversation's kind and its active members (none: a row of NULLs), for the send path;
#: written out because the ORM spent more CPU building it than PostgreSQL answering it
_SEND_CONTEXT_SQL = """
SELECT c.kind, p.member_key, p.role, p.muted_until
FROM im_conversation c
LEFT JOIN im_participant p ON p.conversation_id = c.id AND p.left_at IS NULL
WHERE c.id = %s
"""


def send_context(*, conversation_id: int) -> tuple[str | None, dict[str, tuple[str, Any]]]:
    """``(kind, {member_key: (role, muted_until)})`` of a conversation for the send path, in one
    query; ``kind`` is None when there is no such conversation."""
    with connection.cursor() as cursor:
        cursor.execute(_SEND_CONTEXT_SQL, [conversation_id])
        rows = cursor.fetchall()
    kind = None
    members: dict[str, tuple[str, Any]] = {}
    for row_kind, key, role, muted_until in rows:
        kind = row_kind
        if key is not None:
            members[key] = (role, muted_until)
    return kind, members


def active_member_keys(*, conversation_id: int) -> list[str]:
    """Keys of everyone currently in a conversation (the recipients of its events)."""
    return list(
        Participant.objects.filter(
            conversation_id=conversation_id, left_at__isnull=True
        ).values_list("member_key", flat=True)
    )


def peers_by_conversation(
    *, conversation_ids: Iterable[int], exclude_key: str
) -> dict[int, list[Participant]]:
    """Other active participants of each conversation, one query. Groups are left out: they can
    have hundreds of members (their read counts come from :func:`receipt_counts`)."""
    peers: dict[int, list[Participant]] = defaultdict(list)
    rows = (
        Participant.objects.filter(conversation_id__in=list(conversation_ids), left_at__isnull=True)
        .exclude(member_key=exclude_key)
        .exclude(conversation__kind=Conversation.Kind.GROUP)
        .order_by("id")
    )
    for row in rows:
        peers[row.conversation_id].append(row)
    return peers


def last_messages(
    *, conversation_ids: Iterable[int], include_internal: bool = True
) -> dict[int, Message]:
    """The newest message of each conversation (the newest visible one when internal notes are
    left out, for visitors), one query."""
    ids = list(conversation_ids)
    if include_internal:
        rows = Message.objects.select_related(*MESSAGE_RELATED).filter(
            conversation_id__in=ids, seq=F("conversation__last_seq")
        )
    else:
        rows = (
            Message.objects.select_related(*MESSAGE_RELATED)
            .filter(conversation_id__in=ids, internal=False)
            .order_by("conversation_id", "-seq")
            .distinct("conversation_id")
        )
    return {row.conversation_id: row for row in rows}


def member_counts(*, conversation_ids: Iterable[int]) -> dict[int, int]:
    """Active members per conversation, one query."""
    rows = (
        Participant.objects.filter(conversation_id__in=list(conversation_ids), left_at__isnull=True)
        .values("conversation_id")
        .annotate(n=Count("id"))
    )
    return {row["conversation_id"]: row["n"] for row in rows}


def group_owners(*, conversation_ids: Iterable[int]) -> dict[int, Participant]:
    """The owner of each group among ``conversation_ids``, one query."""
    rows = Participant.objects.filter(
        conversation_id__in=list(conversation_ids),
        role=Participant.Role.OWNER,
        left_at__isnull=True,
    )
    return {row.conversation_id: row for row in rows}


def conversation_payloads(
    *, participants: list[Participant], member_key: str
) -> list[dict[str, Any]]:
    """The member's conversations as clients see them (docs/api.md §1), in five queries whatever
    the count (peers, last messages, member counts, group owners, group avatars)."""
    ids = [p.conversation_id for p in participants]
    peers = peers_by_conversation(conversation_ids=ids, exclude_key=member_key)
    last = last_messages(conversation_ids=ids, include_internal=not is_visitor_key(member_key))
    counts = member_counts(conversation_ids=ids)
    group_ids = [p.conversation_id for p in participants if p.conversation.kind == "group"]
    owners = group_owners(conversation_ids=group_ids) if group_ids else {}
    max_members = MessagingSettings.current().group_max_members if group_ids else 0
    avatar_ids = [p.conversation.avatar_id for p in participants if p.conversation.avatar_id]
    if avatar_ids:
        avatars = Attachment.objects.in_bulk(avatar_ids)
        for p in participants:
            if p.conversation.avatar_id:
                p.conversation.avatar = avatars.get(p.conversation.avatar_id)
    payloads = [
        conversation_payload(
            p,
            peers=peers.get(p.conversation_id, []),
            last_message=last.get(p.conversation_id),
            member_count=counts.get(p.conversation_id, 0),
            owner=owners.get(p.conversation_id),
            max_members=max_members,
        )
        for p in participants
    ]
    if is_visitor_key(member_key):
        _discount_internal(payloads, participants)
    return payloads


def _discount_internal(payloads: list[dict[str, Any]], participants: list[Participant]) -> None:
    """A visitor's unread count leaves out the internal notes they never receive (one query for
    all their conversations; notes are few)."""
    read = {p.conversation_id: p.read_seq for p in participants}
    notes = Message.objects.filter(
        conversation_id__in=list(read), internal=True, seq__gt=min(read.values(), default=0)
    ).values_list("conversation_id", "seq")
    hidden: dict[int, int] = {}
    for conversation_id, seq in notes:
        if seq > read[conversation_id]:
            hidden[conversation_id] = hidden.get(conversation_id, 0) + 1
    for payload in payloads:
        payload["unread"] = max(0, payload["unread"] - hidden.get(payload["id"], 0))


_PARTICIPANT_FIELDS, _PARTICIPANT_COLUMNS = _columns(Participant, "p")
_CONVERSATION_FIELDS, _CONVERSATION_COLUMNS = _columns(Conversation, "c")

#: a conversation's active members, each with the conversation and the number of internal notes
#: after their read cursor (what a visitor's unread count leaves out); written out because
#: building it with the ORM cost ~1 ms of CPU per call on the routing path (bench/routing.py)
_MEMBERS_SQL_TEMPLATE = """
SELECT {participant_columns}, {conversation_columns},
       (SELECT COUNT(*) FROM im_message m
        WHERE m.conversation_id = p.conversation_id AND m.internal AND m.seq > p.read_seq)
FROM im_participant p JOIN im_conversation c ON c.id = p.conversation_id
WHERE p.conversation_id = %s AND p.left_at IS NULL
ORDER BY p.id
"""
_MEMBERS_SQL = _MEMBERS_SQL_TEMPLATE.format(
    participant_columns=_PARTICIPANT_COLUMNS, conversation_columns=_CONVERSATION_COLUMNS
)


def _members_with_hidden_notes(conversation_id: int) -> list[Participant]:
    """Active participants of a conversation, oldest first, with ``conversation`` loaded and
    ``hidden_notes`` (int) set (:data:`_MEMBERS_SQL`)."""
    width = len(_PARTICIPANT_FIELDS)
    out = []
    with connection.cursor() as cursor:
        cursor.execute(_MEMBERS_SQL, [conversation_id])
        rows = cursor.fetchall()
    conversation = None
    for row in rows:
        participant = Participant.from_db(connection.alias, _PARTICIPANT_FIELDS, row[:width])
        if conversation is None:
            conversation = Conversation.from_db(
                connection.alias, _CONVERSATION_FIELDS, row[width:-1]
            )
        participant.conversation = conversation
        participant.hidden_notes = row[-1]
        out.append(participant)
    return out


def conversation_payloads_for_members(
    *, conversation_id: int, member_keys: list[str], last_message: Message | None = None
) -> dict[str, dict[str, Any]]:
    """One (non-group) conversation as each of ``member_keys`` sees it, as
    :func:`conversation_payloads` would show it to each, sharing the queries: ``{member key:
    payload}`` for the keys that are active members. ``last_message``: a message the caller
    just wrote into the conversation; when it is still the newest and not internal it is the
    last message of every payload and nothing more is read — one query in all, else two or three.
    """
    everyone = _members_with_hidden_notes(conversation_id)
    wanted = [p for p in everyone if p.member_key in member_keys]
    if not wanted:
        return {}
    staff_last = visitor_last = None
    if (
        last_message is not None
        and not last_message.internal
        and last_message.seq == wanted[0].conversation.last_seq
    ):
        staff_last = visitor_last = last_message
    else:
        if any(not is_visitor_key(p.member_key) for p in wanted):
            staff_last = last_messages(conversation_ids=[conversation_id]).get(conversation_id)
        if any(is_visitor_key(p.member_key) for p in wanted):
            visitor_last = last_messages(
                conversation_ids=[conversation_id], include_internal=False
            ).get(conversation_id)
    out = {}
    for p in wanted:
        visitor = is_visitor_key(p.member_key)
        payload = conversation_payload(
            p,
            peers=[q for q in everyone if q.member_key != p.member_key],
            last_message=visitor_last if visitor else staff_last,
            member_count=len(everyone),
            owner=None,
            max_members=0,
        )
        if visitor:
            # a visitor's unread count leaves out the internal notes they never receive
            payload["unread"] = max(0, payload["unread"] - p.hidden_notes)
        out[p.member_key] = payload
    return out


def conversation_payload_for_member(*, conversation_id: int, member_key: str) -> dict[str, Any]:
    """One conversation as :func:`conversation_payloads` shows it; ``not_found`` otherwise."""
    participant = participant_get(conversation_id=conversation_id, member_key=member_key)
    return conversation_payloads(participants=[participant], member_key=member_key)[0]


def messages_after(
    *, conversation_id: int, after_seq: int, limit: int, include_internal: bool = True
) -> list[Message]:
    """Messages with ``seq > after_seq``, oldest first, at most ``limit``."""
    qs = Message.objects.select_related(*MESSAGE_RELATED).filter(
        conversation_id=conversation_id, seq__gt=after_seq
    )
    if not include_internal:
        qs = qs.filter(internal=False)
    return list(qs.order_by("seq")[:limit])


class RowColumns:
    """Some columns of a model in a written-out query, read back into an instance.

    ``model``'s concrete fields (``only`` them when given, else all but ``exclude``), in the
    model's order, each written ``alias."column"``; :meth:`load` builds the instance from a
    row's slice with the fields' own converters (``from_db_value``: JSON columns arrive as text
    from a bare cursor), the other fields deferred. For hot paths where the ORM spent more CPU
    building a query than PostgreSQL answering it (docs/benchmarks.md, "Connections").
    """

    def __init__(
        self,
        model: type,
        alias: str,
        *,
        only: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        keep = set(only) if only is not None else None
        skip = set(exclude)
        fields = [
            f
            for f in model._meta.concrete_fields
            if (keep is None or f.attname in keep) and f.attname not in skip
        ]
        quote = connection.ops.quote_name
        self.model = model
        self.names = [f.attname for f in fields]
        self.sql = ", ".join(f"{alias}.{quote(f.column)}" for f in fields)
        self.width = len(fields)
        self._convert = [(i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]

    def load(self, row: tuple[Any, ...], start: int) -> Any:
        """The instance in ``row[start:start + width]``; None when its first column (the
        primary key, from an outer join) is NULL."""
        values = list(row[start : start + self.width])
        if values[0] is None:
            return None
        for i, field in self._convert:
            values[i] = field.from_db_value(values[i], field, connection)
        return self.model.from_db(connection.alias, self.names, values)


def sync_plan(
    *, conversations: list[dict[str, Any]], cursors: dict[str, Any], limit: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """What ``sync`` sends after the client's cursors (docs/protocol.md §3): ``([(conversation
    id, after seq)], [truncated conversation ids])``, by conversation id. A conversation is
    skipped when its cursor is not a non-negative integer or is at ``last_seq`` already; past
    ``limit`` missed messages only the newest ``limit`` go (the conversation is *truncated*)."""
    plan: list[tuple[int, int]] = []
    truncated: list[int] = []
    for conv in sorted(conversations, key=lambda c: c["id"]):
        cursor = cursors.get(str(conv["id"]))
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
            continue
        if conv["last_seq"] <= cursor:
            continue
        after = cursor
        if conv["last_seq"] - cursor > limit:
            truncated.append(conv["id"])
            after = conv["last_seq"] - limit
        plan.append((conv["id"], after))
    return plan, truncated


MESSAGE_COLUMNS = RowColumns(Message, "m", exclude=("search_vector",))
ATTACHMENT_COLUMNS = RowColumns(Attachment, "a")
STICKER_COLUMNS = RowColumns(Sticker, "st")
_AFTER_MANY_SQL_TEMPLATE = """
SELECT {message_columns}, {attachment_columns}, {sticker_columns}
FROM unnest(%s::bigint[], %s::bigint[]) AS x(conversation_id, after_seq)
CROSS JOIN LATERAL (
    SELECT * FROM im_message mm
    WHERE mm.conversation_id = x.conversation_id AND mm.seq > x.after_seq
      AND (%s OR NOT mm.internal)
    ORDER BY mm.seq LIMIT %s
) m
LEFT JOIN im_attachment a ON a.id = m.attachment_id
LEFT JOIN im_sticker st ON st.id = m.sticker_id
ORDER BY m.conversation_id, m.seq
LIMIT %s
"""
_AFTER_MANY_SQL = _AFTER_MANY_SQL_TEMPLATE.format(
    message_columns=MESSAGE_COLUMNS.sql,
    attachment_columns=ATTACHMENT_COLUMNS.sql,
    sticker_columns=STICKER_COLUMNS.sql,
)


def load_message(row: tuple[Any, ...], start: int = 0) -> Message:
    """A message with its attachment and sticker from a row of :data:`MESSAGE_COLUMNS`,
    :data:`ATTACHMENT_COLUMNS` and :data:`STICKER_COLUMNS` from ``start``."""
    message = MESSAGE_COLUMNS.load(row, start)
    start += MESSAGE_COLUMNS.width
    message.attachment = ATTACHMENT_COLUMNS.load(row, start)
    message.sticker = STICKER_COLUMNS.load(row, start + ATTACHMENT_COLUMNS.width)
    return message


def messages_after_many(
    *,
    plan: list[tuple[int, int]],
    limit: int,
    include_internal: bool = True,
    total: int | None = None,
) -> list[Message]:
    """The messages of several conversations after a seq each (``plan``: ``[(conversation id,
    after seq)]``, see :func:`sync_plan`), at most ``limit`` per conversation and ``total`` in
    all (None: no overall limit), ordered by conversation id then ``seq``, with attachment and
    sticker: one statement whatever the count (was one per conversation)."""
    if not plan:
        return []
    ids = [conversation_id for conversation_id, _after in plan]
    afters = [after for _id, after in plan]
    with prepared_cursor() as cursor:
        cursor.execute(_AFTER_MANY_SQL, [ids, afters, include_internal, limit, total])
        rows = cursor.fetchall()
    return [load_message(row) for row in rows]


def messages_before(
    *, conversation_id: int, before_seq: int | None, limit: int, include_internal: bool = True
) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages before ``before_seq`` (newest page when None), oldest first.

    Returns ``(messages, has_more)``.
    """
    qs = Message.objects.select_related(*MESSAGE_RELATED).filter(conversation_id=conversation_id)
    if not include_internal:
        qs = qs.filter(internal=False)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    page = list(qs.order_by("-seq")[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    page.reverse()
    return page, has_more


def conversation_get(*, conversation_id: int) -> Conversation:
    """A conversation by id; ``ServiceError("not_found")`` when absent."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return conversation


def receipt_counts(
    *, conversation_id: int, member_key: str, seqs: list[int]
) -> tuple[int, dict[int, dict[str, int]]]:
    """How many *other* active members have received / read each ``seq`` ("read by N").

    Returns ``(member_count, {seq: {"read": n, "delivered": n}})``; one query plus the membership
    check (``not_found`` for a non-member). Cost O(members · log members + len(seqs)).
    """
    from bisect import bisect_left

    participant_get(conversation_id=conversation_id, member_key=member_key)
    rows = list(
        Participant.objects.filter(conversation_id=conversation_id, left_at__isnull=True)
        .exclude(member_key=member_key)
        .values_list("read_seq", "delivered_seq")
    )
    reads = sorted(r for r, _d in rows)
    delivered = sorted(d for _r, d in rows)
    total = len(rows)
    counts = {
        seq: {
            "read": total - bisect_left(reads, seq),
            "delivered": total - bisect_left(delivered, seq),
        }
        for seq in seqs
    }
    return total + 1, counts
