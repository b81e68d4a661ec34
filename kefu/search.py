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
from django.db.models import Exists, F, Func, OuterRef, Q, QuerySet, Value
from django.db.models.lookups import Contains, IContains
from django.utils.translation import gettext as _

from im import search as im_search
from im import selectors as im_selectors
from im.models import Message
from kefu.models import Channel, Session, Workgroup
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
    session first. Two queries whatever the count: the sessions, and the newest matching message
    of each.

    ``query`` (optional when a filter narrows the search; up to 200 characters) matches when the
    customer's name or e-mail contains it, the customer's phone contains its digits (3 or more),
    or one message of the conversation (internal notes included, recalled ones not) contains
    every word, CJK phrases as written. Keyset pagination: pass the last hit's session id as
    ``before_id``; ``limit`` 1-50. Returns ``(hits, has_more)``.

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
        Session.objects.select_related("visitor", "agent", "workgroup", "channel").filter(
            conversation_id__in=visible
        ),
        filters,
    )
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    tsquery, phrases = ("", [])
    if text:
        tsquery, phrases = im_search.compile_query(text)
        messages = _message_matches(tsquery, phrases).filter(
            conversation_id=OuterRef("conversation_id")
        )
        qs = qs.annotate(by_message=Exists(messages), **_customer_flags(text)).filter(
            Q(by_message=True) | Q(by_name=True) | Q(by_email=True) | Q(by_phone=True)
        )
    sessions = list(qs.order_by("-pk")[: limit + 1])
    has_more = len(sessions) > limit
    sessions = sessions[:limit]
    newest: dict[int, Message] = {}
    if text and any(s.by_message for s in sessions):
        rows = (
            _message_matches(tsquery, phrases)
            .filter(conversation_id__in=[s.conversation_id for s in sessions if s.by_message])
            .order_by("conversation_id", "-id")
            .distinct("conversation_id")
        )
        newest = {m.conversation_id: m for m in rows}
    hits = []
    for session in sessions:
        matched = []
        if text:
            matched = [
                part
                for part, flag in (
                    ("name", session.by_name),
                    ("email", session.by_email),
                    ("phone", session.by_phone),
                    ("message", session.by_message),
                )
                if flag
            ]
        hits.append(
            Hit(session=session, matched=matched, message=newest.get(session.conversation_id))
        )
    return hits, has_more


def _customer_flags(text: str) -> dict[str, Any]:
    """Annotations telling whether the customer's name, e-mail or phone (punctuation removed,
    compared with the query's digits when it has 3 or more) matches ``text``."""
    digits = _NOT_DIGIT.sub("", text)
    phone: Any = Value(False)
    if len(digits) >= PHONE_MIN_DIGITS:
        phone = Func(
            F("visitor__phone"), Value(r"\D"), Value(""), Value("g"), function="regexp_replace"
        )
        phone = Contains(phone, digits)
    return {
        "by_name": IContains(F("visitor__name"), text),
        "by_email": IContains(F("visitor__email"), text),
        "by_phone": phone,
    }


def filter_choices() -> dict[str, list[dict[str, Any]]]:
    """``{"workgroups", "channels", "agents"}``, each ``[{"id", "name"}]`` by name: what the
    search's filters offer (agents: active administrators and agents). Three queries."""
    agents = User.objects.filter(
        is_active=True, role__in=[User.Role.ADMIN, User.Role.AGENT]
    ).order_by("display_name", "username")
    return {
        "workgroups": [{"id": w.pk, "name": w.name} for w in Workgroup.objects.order_by("name")],
        "channels": [{"id": c.pk, "name": c.name} for c in Channel.objects.order_by("name")],
        "agents": [{"id": u.pk, "name": u.name} for u in agents],
    }
