"""The views of the inbox's conversation list (KF-13): which visitor conversations an agent sees
under "mine", "unassigned", "all open", "waiting for a reply", "snoozed" and "closed", filtered by
workgroup, label and channel, sorted by waiting time or newest, and how many each view holds.

Reads only. Scope: administrators see every conversation of the tenant; other agents those of
their workgroups and those they serve. Query counts do not grow with the number of
conversations (tests/kefu/test_inbox_views.py pins them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Message
from kefu.models import Channel, Label, SavedView, Session, Workgroup
from kefu.services import attributes
from org.models import User
from weiyu.errors import ServiceError

#: the built-in views, in the order the inbox shows them
VIEWS = ("mine", "unassigned", "open", "waiting", "snoozed", "closed")
SORTS = ("newest", "waiting")
#: rows one list answer holds at most
MAX_LIMIT = 200
#: how far back the "closed" view reaches (days)
CLOSED_DAYS = 7

LIVE = ~Q(status=Session.Status.CLOSED)
#: the customer wrote last and nobody has answered since (``Session.last_visitor_at`` /
#: ``last_agent_at``, set as messages are stored)
WAITING = Q(status=Session.Status.OPEN, last_visitor_at__isnull=False, snoozed_at__isnull=True) & (
    Q(last_agent_at__isnull=True) | Q(last_agent_at__lt=F("last_visitor_at"))
)
#: put aside by an agent until a time or the customer's reply (kefu.services.snooze); not
#: "waiting for a reply" meanwhile
SNOOZED = Q(status=Session.Status.OPEN, snoozed_at__isnull=False)


def _view_q(view: str, user: User, now: dt.datetime) -> Q:
    if view == "mine":
        return LIVE & Q(agent=user)
    if view == "unassigned":
        return Q(status=Session.Status.QUEUED)
    if view == "open":
        return LIVE
    if view == "waiting":
        return WAITING
    if view == "snoozed":
        return SNOOZED
    return Q(status=Session.Status.CLOSED, closed_at__gte=now - dt.timedelta(days=CLOSED_DAYS))


def scope_for(user: User) -> QuerySet[Session]:
    """The sessions ``user`` may see in the views: all for administrators; otherwise those of
    their workgroups and those they serve."""
    qs = Session.objects.all()
    if user.is_admin:
        return qs
    return qs.filter(
        Q(workgroup__in=Workgroup.agents.through.objects.filter(user=user).values("workgroup_id"))
        | Q(agent=user)
    )


def int_or_none(value: object, field: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise ServiceError("invalid", _("%(field)s must be an id.") % {"field": field}, field=field)
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise ServiceError(
            "invalid", _("%(field)s must be an id.") % {"field": field}, field=field
        ) from exc
    if number <= 0:
        raise ServiceError("invalid", _("%(field)s must be an id.") % {"field": field}, field=field)
    return number


def filters_clean(raw: dict[str, Any]) -> dict[str, Any]:
    """Checked filters ``{"view", "workgroup", "label", "channel", "attribute", "sort"}`` from
    query parameters or a saved view (ids as int or None; ``attribute``: ``"key=value"`` of a
    custom contact or conversation attribute, or None; ``view`` default ``open``, ``sort``
    default ``newest``, except ``waiting`` which defaults to the longest wait first). Raises
    ``ServiceError("invalid")`` for an unknown view or sort, an id that is not one, or an
    attribute filter that is not ``key=value`` of a defined attribute."""
    view = raw.get("view") or "open"
    if view not in VIEWS:
        raise ServiceError("invalid", _("Unknown view."), field="view")
    sort = raw.get("sort") or ("waiting" if view == "waiting" else "newest")
    if sort not in SORTS:
        raise ServiceError("invalid", _("Unknown sort order."), field="sort")
    return {
        "view": view,
        "workgroup": int_or_none(raw.get("workgroup"), "workgroup"),
        "label": int_or_none(raw.get("label"), "label"),
        "channel": int_or_none(raw.get("channel"), "channel"),
        "attribute": _attribute(raw.get("attribute")),
        "sort": sort,
    }


def _attribute(value: object) -> str | None:
    parsed = attributes.attribute_filter_parse(value)
    return None if parsed is None else f"{parsed[0]}={parsed[1]}"


def _filtered(user: User, filters: dict[str, Any], now: dt.datetime) -> QuerySet[Session]:
    qs = scope_for(user).filter(_view_q(filters["view"], user, now))
    if filters["workgroup"]:
        qs = qs.filter(workgroup_id=filters["workgroup"])
    if filters["channel"]:
        qs = qs.filter(channel_id=filters["channel"])
    if filters["label"]:
        qs = qs.filter(labels=filters["label"])
    if filters.get("attribute"):
        qs = qs.filter(attributes.attribute_q(filters["attribute"]))
    return qs


def sessions_for_view(*, user: User, filters: dict[str, Any]) -> QuerySet[Session]:
    """The sessions of one view (``filters`` from :func:`filters_clean`) within ``user``'s
    scope, unordered: what the list shows, without its row limit (the inbox's export)."""
    return _filtered(user, filters, timezone.now())


def label_payload(label: Label) -> dict[str, Any]:
    """``{"id", "name", "color", "description"}``."""
    return label_payload_values(label.pk, label.name, label.color, label.description)


def label_payload_values(label_id: int, name: str, color: str, description: str) -> dict[str, Any]:
    """:func:`label_payload` from the label's column values."""
    return {"id": label_id, "name": name, "color": color, "description": description}


def customer_messages(conversation_ids: list[int]) -> dict[int, Message]:
    """The newest message each visitor wrote, per conversation, in one query (the list
    preview shows the customer's words, never the system lines about who serves them)."""
    if not conversation_ids:
        return {}
    rows = (
        Message.objects.filter(
            conversation_id__in=conversation_ids, sender_type=Message.SenderType.VISITOR
        )
        .order_by("conversation_id", "-seq")
        .distinct("conversation_id")
        .only("id", "conversation_id", "seq", "content", "msg_type", "created_at", "recalled_at")
    )
    return {m.conversation_id: m for m in rows}


def customer_message_payload(message: Message | None) -> dict[str, Any] | None:
    """``{"seq", "content", "msg_type", "created_at"}`` of the customer's last message (content
    empty once recalled), or None."""
    if message is None:
        return None
    return customer_message_payload_values(
        seq=message.seq,
        content=message.content,
        msg_type=message.msg_type,
        created_at=message.created_at,
        recalled_at=message.recalled_at,
    )


def customer_message_payload_values(
    *,
    seq: int,
    content: str,
    msg_type: str,
    created_at: dt.datetime,
    recalled_at: dt.datetime | None,
) -> dict[str, Any]:
    """:func:`customer_message_payload` of a message from its column values (the first 200
    characters of its content)."""
    return {
        "seq": seq,
        "content": "" if recalled_at else content[:200],
        "msg_type": msg_type,
        "created_at": created_at.isoformat(),
    }


def waiting_since(session: Session) -> str | None:
    """When the customer's unanswered message came (ISO 8601), or None when nobody waits."""
    return waiting_since_values(
        status=session.status,
        last_visitor_at=session.last_visitor_at,
        last_agent_at=session.last_agent_at,
    )


def waiting_since_values(
    *, status: str, last_visitor_at: dt.datetime | None, last_agent_at: dt.datetime | None
) -> str | None:
    """:func:`waiting_since` from the session's column values."""
    if status != Session.Status.OPEN or last_visitor_at is None:
        return None
    if last_agent_at is not None and last_agent_at >= last_visitor_at:
        return None
    return last_visitor_at.isoformat()


def conversation_list_for_view(
    *, user: User, filters: dict[str, Any], limit: int = 100
) -> list[dict[str, Any]]:
    """Rows of one view (``filters`` from :func:`filters_clean`), at most ``limit``: ``[{
    "conversation_id", "session_id", "status", "visitor": {"id", "name"}, "agent": {"id",
    "name"} | null, "workgroup": {"id", "name"}, "channel": {"id", "name"}, "labels": [label],
    "attributes": {key: value} (the conversation's custom attributes),
    "customer_message": {"seq", "content", "msg_type", "created_at"} | null, "waiting_since":
    ISO | null, "snoozed", "snoozed_until": ISO | null, "created_at", "closed_at"}]``. Sort ``newest``: newest conversation first
    (closed: last closed first); ``waiting``: the longest unanswered customer first. Three
    queries whatever the count."""
    now = timezone.now()
    qs = _filtered(user, filters, now).select_related("visitor", "agent", "workgroup", "channel")
    if filters["sort"] == "waiting":
        qs = qs.order_by(F("last_visitor_at").asc(nulls_last=True), "id")
    elif filters["view"] == "closed":
        qs = qs.order_by("-closed_at", "-id")
    else:
        qs = qs.order_by("-created_at", "-id")
    sessions = list(qs.prefetch_related("labels")[: max(1, min(limit, MAX_LIMIT))])
    customer = customer_messages([s.conversation_id for s in sessions])
    return [
        {
            "conversation_id": s.conversation_id,
            "session_id": s.pk,
            "status": s.status,
            "visitor": {"id": s.visitor_id, "name": s.visitor.name},
            "agent": {"id": s.agent_id, "name": s.agent.name} if s.agent else None,
            "workgroup": {"id": s.workgroup_id, "name": s.workgroup.name},
            "channel": {"id": s.channel_id, "name": s.channel.name},
            "labels": [label_payload(label) for label in s.labels.all()],
            "attributes": s.attributes or {},
            "customer_message": customer_message_payload(customer.get(s.conversation_id)),
            "waiting_since": waiting_since(s),
            "snoozed_until": s.snoozed_until.isoformat() if s.snoozed_until else None,
            "snoozed": s.snoozed_at is not None,
            "created_at": s.created_at.isoformat(),
            "closed_at": s.closed_at.isoformat() if s.closed_at else None,
        }
        for s in sessions
    ]


def saved_views_for(user: User) -> list[SavedView]:
    """The user's own saved views and the shared ones, by name (shared first on a tie)."""
    return list(SavedView.objects.filter(Q(owner=user) | Q(owner__isnull=True)))


def saved_view_payload(view: SavedView) -> dict[str, Any]:
    """``{"id", "name", "filters", "shared"}``."""
    return {
        "id": view.pk,
        "name": view.name,
        "filters": view.filters,
        "shared": view.owner_id is None,
    }


def view_counts(*, user: User) -> dict[str, Any]:
    """What the view bar shows, with live counts: ``{"views": {"mine", "unassigned", "open",
    "waiting", "snoozed", "closed": n}, "workgroups": [{"id", "name", "open"}], "channels": [{"id",
    "name", "open"}], "labels": [{"id", "name", "color", "description", "open"}], "saved":
    [{"id", "name", "filters", "shared", "count"}]}`` (``open``: conversations not closed, in
    the user's scope). Five queries plus one per saved view (at most 50)."""
    now = timezone.now()
    scope = scope_for(user)
    aggregates = {
        view: Count("id", filter=_view_q(view, user, now)) for view in VIEWS if view != "closed"
    }
    # closed conversations are many: counted over the index on closed_at, not the whole scope
    views = scope.filter(LIVE | _view_q("closed", user, now)).aggregate(
        closed=Count("id", filter=_view_q("closed", user, now)), **aggregates
    )
    live = scope.filter(LIVE)
    by_group = dict(
        live.values_list("workgroup_id").annotate(n=Count("id")).values_list("workgroup_id", "n")
    )
    by_channel = dict(
        live.values_list("channel_id").annotate(n=Count("id")).values_list("channel_id", "n")
    )
    by_label = dict(
        live.filter(labels__isnull=False)
        .values_list("labels")
        .annotate(n=Count("id"))
        .values_list("labels", "n")
    )
    if user.is_admin:
        groups = list(Workgroup.objects.order_by("name").values_list("id", "name"))
    else:
        groups = list(
            Workgroup.objects.filter(agents=user).order_by("name").values_list("id", "name")
        )
    group_ids = {g for g, _name in groups}
    channels = [
        {"id": c.pk, "name": c.name, "open": by_channel.get(c.pk, 0)}
        for c in Channel.objects.filter(is_active=True).order_by("name")
        if user.is_admin or c.workgroup_id in group_ids or by_channel.get(c.pk)
    ]
    saved = []
    for view in saved_views_for(user)[:50]:
        try:
            count = _filtered(user, filters_clean(view.filters), now).count()
        except ServiceError:
            count = None  # a filter that no longer makes sense: shown without a count
        saved.append({**saved_view_payload(view), "count": count})
    return {
        "views": views,
        "workgroups": [{"id": g, "name": n, "open": by_group.get(g, 0)} for g, n in groups],
        "channels": channels,
        "labels": [
            {**label_payload(label), "open": by_label.get(label.pk, 0)}
            for label in Label.objects.all()
        ],
        "saved": saved,
    }
