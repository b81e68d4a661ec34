"""Conversation search (KF-13): find customer conversations by the customer's name, e-mail or
phone, or by what was written in them (Chinese and English), with filters.

Message text is matched through the ``simple`` tsvector of :mod:`im.search` (words, and CJK
characters with their bigrams, so ``退款`` is found inside ``我想申请退款``); customer fields with
``ILIKE``/digits. Only conversations where the caller is an active participant are searched: an
agent who transferred a customer away or left keeps no access (docs/security.md,
"Participation").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.postgres.search import SearchQuery
from django.db.models import BooleanField, F, Func, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.db.models.lookups import Contains
from django.utils.translation import gettext as _

from im import search as im_search
from im import selectors as im_selectors
from im.models import Message
from kefu.models import Channel, Label, Session, Visitor, Workgroup
from org.models import User
from weiyu.errors import ServiceError

#: message types whose text (or file name) is searchable, as in team-chat search
SEARCHABLE_TYPES = [
    Message.Type.TEXT,
    Message.Type.IMAGE,
    Message.Type.VOICE,
    Message.Type.VIDEO,
    Message.Type.FILE,
]
#: at least this many digits in the query before the phone number is compared digit by digit
PHONE_MIN_DIGITS = 3
LIMIT_MAX = 50
#: when the newest sessions did not fill a page: up to this many matching messages, the
#: conversations they are in are read and the sessions looked up among them (a rare word);
#: beyond, all sessions are walked newest first, each conversation's own messages checked
CANDIDATES = 1000
#: the newest sessions checked first, one by one, before looking the words up in the index
WINDOW = 1000
#: what a result page reads of a session and its visitor, agent, workgroup and channel
_PAGE_FIELDS = [
    "id", "conversation_id", "status", "created_at", "closed_at", "csat_score",
    "visitor__id", "visitor__name", "visitor__email", "visitor__phone",
    "agent__id", "agent__display_name", "agent__first_name", "agent__last_name",
    "agent__username", "workgroup__id", "workgroup__name", "channel__id", "channel__name",
]  # fmt: skip
_NOT_DIGIT = re.compile(r"\D")


@dataclass(frozen=True)
class Filters:
    """What narrows a search besides the text. Dates are local days (``settings.TIME_ZONE``) of
    the conversation's start, both ends included; ``csat_min``/``csat_max`` 1-5 stars (a bound
    leaves unrated conversations out); ``status`` one of ``Session.Status``."""

    start: dt.date | None = None
    end: dt.date | None = None
    agent_id: int | None = None
    workgroup_id: int | None = None
    channel_id: int | None = None
    label_id: int | None = None
    status: str | None = None
    csat_min: int | None = None
    csat_max: int | None = None


@dataclass
class Hit:
    """One found conversation: its session (visitor, agent, workgroup, channel loaded), which
    parts matched (``name``, ``email``, ``phone``, ``message``) and the newest matching message
    (or None when only the customer matched)."""

    session: Session
    matched: list[str]
    message: Message | None


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(settings.TIME_ZONE))


def _message_matches(tsquery: str, phrases: list[str]) -> QuerySet[Message]:
    qs = Message.objects.filter(
        recalled_at__isnull=True,
        msg_type__in=SEARCHABLE_TYPES,
        search_vector=SearchQuery(tsquery, search_type="raw", config="simple"),
    )
    for phrase in phrases:
        qs = qs.filter(content__icontains=phrase)
    return qs


def _exists_per_conversation(tsquery: str, phrases: list[str]) -> RawSQL:
    """``EXISTS`` a matching message in the session's conversation, checked row by row through
    the conversation's own messages. Written out with ``OFFSET 0``, which keeps PostgreSQL from
    turning it into a hashed set of every match in the tenant (it underestimates how many
    rows match a phrase, and a common word would then be read in full: bench/
    conversation_search.py)."""
    escaped = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in phrases]
    return RawSQL(  # noqa: S611 - a constant statement, the values bound
        _EXISTS_SQL,
        [list(SEARCHABLE_TYPES), tsquery, [f"%{p}%" for p in escaped]],
        output_field=BooleanField(),
    )


_EXISTS_SQL = (
    "EXISTS (SELECT 1 FROM im_message m WHERE m.conversation_id = kefu_session.conversation_id"
    " AND m.recalled_at IS NULL AND m.msg_type = ANY(%s)"
    " AND m.search_vector @@ to_tsquery('simple'::regconfig, %s)"
    " AND m.content ILIKE ALL(%s::text[]) OFFSET 0)"
)


def _apply(qs: QuerySet[Session], filters: Filters) -> QuerySet[Session]:
    if filters.start is not None:
        qs = qs.filter(created_at__gte=_day_start(filters.start))
    if filters.end is not None:
        qs = qs.filter(created_at__lt=_day_start(filters.end + dt.timedelta(days=1)))
    if filters.agent_id is not None:
        qs = qs.filter(agent_id=filters.agent_id)
    if filters.workgroup_id is not None:
        qs = qs.filter(workgroup_id=filters.workgroup_id)
    if filters.channel_id is not None:
        qs = qs.filter(channel_id=filters.channel_id)
    if filters.label_id is not None:
        qs = qs.filter(labels=filters.label_id)
    if filters.status is not None:
        qs = qs.filter(status=filters.status)
    if filters.csat_min is not None:
        qs = qs.filter(csat_score__gte=filters.csat_min)
    if filters.csat_max is not None:
        qs = qs.filter(csat_score__lte=filters.csat_max)
    return qs


def conversation_search(
    *,
    member_key: str,
    query: object = "",
    filters: Filters | None = None,
    before_id: int | None = None,
    limit: int = 20,
) -> tuple[list[Hit], bool]:
    """Customer conversations the member is in that match ``query`` and ``filters``, newest
    session first.

    ``query`` (optional when a filter narrows the search; up to 200 characters) matches when the
    customer's name or e-mail contains it, the customer's phone contains its digits (3 or more),
    or one message of the conversation (internal notes included, recalled ones not) contains
    every word, CJK phrases as written. Keyset pagination: pass the last hit's session id as
    ``before_id``; ``limit`` 1-50. Returns ``(hits, has_more)``.

    At most four queries whatever the count: the newest :data:`WINDOW` sessions checked one by
    one (a common word fills the page there); if not, the conversations of up to
    :data:`CANDIDATES` matching messages (from the GIN index) and the sessions among them (or
    every session checked one by one, newest first, for a word in more messages); then the
    newest matching message of each result. Figures: docs/benchmarks.md.

    Raises ``ServiceError("invalid", field="q")`` for a query over 200 characters, or one with
    nothing searchable, or an empty query with no filter.
    """
    filters = filters or Filters()
    text = query.strip() if isinstance(query, str) else ""
    if query is not None and not isinstance(query, str):
        raise ServiceError("invalid", _("Type something to search for."), field="q")
    if not text and filters == Filters():
        raise ServiceError(
            "invalid", _("Type something to search for, or choose a filter."), field="q"
        )
    visible = im_selectors.active_memberships(member_key=member_key).values("conversation_id")
    qs = _apply(
        Session.objects.select_related("visitor", "agent", "workgroup", "channel")
        .only(*_PAGE_FIELDS)
        .filter(conversation_id__in=visible),
        filters,
    )
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    tsquery, phrases = ("", [])
    sessions: list[Session] | None = None
    if text:
        tsquery, phrases = im_search.compile_query(text)
        per_row = Q(_exists_per_conversation(tsquery, phrases)) | _customer_condition(
            text, "visitor__"
        )
        # 1. the newest WINDOW sessions, each checked row by row: a common word fills a page here
        floor = qs.order_by("-pk").values("pk")[WINDOW - 1 : WINDOW]
        probe = list(
            qs.filter(per_row, pk__gte=Coalesce(Subquery(floor), 0)).order_by("-pk")[: limit + 1]
        )
        if len(probe) > limit:
            sessions = probe
        else:
            # 2. a rarer word: the conversations its messages are in, when there are few
            found = list(
                _message_matches(tsquery, phrases)
                .order_by()
                .values_list("conversation_id", flat=True)[: CANDIDATES + 1]
            )
            if len(found) <= CANDIDATES:
                by_message = Q(conversation_id__in=set(found)) if found else Q(pk__in=[])
                qs = qs.filter(by_message | Q(visitor_id__in=_customer_matches(text)))
            else:
                qs = qs.filter(per_row)
    if sessions is None:
        sessions = list(qs.order_by("-pk")[: limit + 1])
    has_more = len(sessions) > limit
    sessions = sessions[:limit]
    newest: dict[int, Message] = {}
    if text and sessions:
        rows = (
            _message_matches(tsquery, phrases)
            .filter(conversation_id__in=[s.conversation_id for s in sessions])
            .order_by("conversation_id", "-id")
            .distinct("conversation_id")
        )
        newest = {m.conversation_id: m for m in rows}
    hits = []
    for session in sessions:
        message = newest.get(session.conversation_id)
        matched = _customer_parts(session.visitor, text) if text else []
        if message is not None:
            matched.append("message")
        hits.append(Hit(session=session, matched=matched, message=message))
    return hits, has_more


def _customer_condition(text: str, prefix: str = "") -> Q:
    """The visitor's name or e-mail contains ``text`` (any case), or their phone, punctuation
    removed, contains the query's digits (3 or more); ``prefix`` reaches the visitor from
    another model (``"visitor__"``)."""
    condition = Q(**{f"{prefix}name__icontains": text}) | Q(**{f"{prefix}email__icontains": text})
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) >= PHONE_MIN_DIGITS:
        bare = Func(
            F(f"{prefix}phone"), Value(r"\D"), Value(""), Value("g"), function="regexp_replace"
        )
        condition |= Q(Contains(bare, digits))
    return condition


def _customer_matches(text: str) -> QuerySet[Visitor]:
    """Ids of the visitors :func:`_customer_condition` matches."""
    return Visitor.objects.filter(_customer_condition(text)).values("pk")


def _customer_parts(visitor: Visitor, text: str) -> list[str]:
    """Which of the customer's name, e-mail and phone matched (the rule of
    :func:`_customer_matches`, for the few visitors of a page)."""
    lowered = text.lower()
    digits = _NOT_DIGIT.sub("", text)
    parts = []
    if lowered in visitor.name.lower():
        parts.append("name")
    if visitor.email and lowered in visitor.email.lower():
        parts.append("email")
    if len(digits) >= PHONE_MIN_DIGITS and digits in _NOT_DIGIT.sub("", visitor.phone):
        parts.append("phone")
    return parts


def filter_choices() -> dict[str, list[dict[str, Any]]]:
    """``{"workgroups", "channels", "agents", "labels"}``, each ``[{"id", "name"}]`` by name:
    what the search's filters offer (agents: active administrators and agents). Four queries."""
    agents = User.objects.filter(
        is_active=True, role__in=[User.Role.ADMIN, User.Role.AGENT]
    ).order_by("display_name", "username")
    return {
        "workgroups": [{"id": w.pk, "name": w.name} for w in Workgroup.objects.order_by("name")],
        "channels": [{"id": c.pk, "name": c.name} for c in Channel.objects.order_by("name")],
        "agents": [{"id": u.pk, "name": u.name} for u in agents],
        "labels": [{"id": lb.pk, "name": lb.name} for lb in Label.objects.order_by("name")],
    }
