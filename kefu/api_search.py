"""REST endpoint of customer conversation search (docs/api.md §8, "Conversation search").
Session-cookie auth."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im.search import highlight
from im.serializers import member_payload
from kefu import search
from kefu.models import Session
from weiyu.errors import ServiceError


def _int(request: Request, name: str, *, low: int = 1, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        limits = f"{low}-{high}" if high is not None else f">= {low}"
        raise ServiceError(
            "invalid",
            _("%(field)s must be an integer (%(limits)s).") % {"field": name, "limits": limits},
            field=name,
        )
    return int(raw)


def _date(request: Request, name: str) -> dt.date | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ServiceError(
            "invalid", _("%(field)s must be a date (YYYY-MM-DD).") % {"field": name}, field=name
        ) from exc


def filters_from(request: Request) -> search.Filters:
    """The :class:`kefu.search.Filters` of the query string; 400 ``invalid`` (with ``field``)
    for a bad value."""
    status = request.query_params.get("status") or None
    if status is not None and status not in Session.Status.values:
        raise ServiceError(
            "invalid",
            _("status must be one of: %(choices)s.")
            % {"choices": ", ".join(Session.Status.values)},
            field="status",
        )
    filters = search.Filters(
        start=_date(request, "start"),
        end=_date(request, "end"),
        agent_id=_int(request, "agent"),
        workgroup_id=_int(request, "workgroup"),
        channel_id=_int(request, "channel"),
        label_id=_int(request, "label"),
        status=status,
        csat_min=_int(request, "csat_min", high=5),
        csat_max=_int(request, "csat_max", high=5),
    )
    if filters.start and filters.end and filters.end < filters.start:
        raise ServiceError("invalid", _("The end date is before the start date."), field="end")
    return filters


def hit_payload(hit: search.Hit, query: str) -> dict[str, Any]:
    """One result of :class:`ConversationSearchApi` (shape in its docstring)."""
    session = hit.session
    visitor = session.visitor
    message = hit.message
    return {
        "session_id": session.pk,
        "conversation_id": session.conversation_id,
        "status": session.status,
        "created_at": session.created_at.isoformat(),
        "closed_at": session.closed_at.isoformat() if session.closed_at else None,
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name,
            "email": visitor.email,
            "phone": visitor.phone,
        },
        "agent": member_payload(f"u:{session.agent_id}", session.agent.name)
        if session.agent
        else None,
        "workgroup": {"id": session.workgroup_id, "name": session.workgroup.name},
        "channel": {"id": session.channel_id, "name": session.channel.name},
        "csat": session.csat_score,
        "matched": hit.matched,
        "message": {
            "id": message.pk,
            "seq": message.seq,
            "sender_name": message.sender_name,
            "sender_type": message.sender_type,
            "internal": message.internal,
            "created_at": message.created_at.isoformat(),
            "highlight": highlight(message.content, query),
        }
        if message
        else None,
    }


class ConversationSearchApi(APIView):
    """``GET /api/v1/kefu/search?q=…&start=&end=&agent=&workgroup=&channel=&label=&status=&csat_min=
    &csat_max=&before_id=&limit=`` → ``{"results": [{"session_id", "conversation_id",
    "status", "created_at", "closed_at", "visitor": {"id", "name", "email", "phone"},
    "agent": {member}|null, "workgroup": {"id", "name"}, "channel": {"id", "name"},
    "csat": 1-5|null, "matched": ["name"|"email"|"phone"|"message", …], "message": {"id",
    "seq", "sender_name", "sender_type", "internal", "created_at", "highlight"}|null}],
    "has_more"}``: customer conversations the caller is in (not those they left or transferred
    away), newest first; rules in :func:`kefu.search.conversation_search`. Page on with
    ``before_id`` = the last result's ``session_id``; ``limit`` 1-50 (default 20); dates are
    local days (YYYY-MM-DD) of the conversation's start. 400 ``invalid`` with ``field`` for a
    bad parameter, an over-long ``q``, or neither ``q`` nor a filter."""

    def get(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        hits, has_more = search.conversation_search(
            member_key=request.user.member_key,
            query=query,
            filters=filters_from(request),
            before_id=_int(request, "before_id"),
            limit=_int(request, "limit", high=search.LIMIT_MAX) or 20,
        )
        return Response({"results": [hit_payload(h, query) for h in hits], "has_more": has_more})


class SearchFiltersApi(APIView):
    """``GET /api/v1/kefu/search/filters`` → ``{"workgroups": [{"id", "name"}], "channels":
    [{"id", "name"}], "agents": [{"id", "name"}], "labels": [{"id", "name"}]}``: the choices of
    the search filters (active
    administrators and agents, by name)."""

    def get(self, request: Request) -> Response:
        return Response(search.filter_choices())


urlpatterns = [
    path("search", ConversationSearchApi.as_view(), name="search"),
    path("search/filters", SearchFiltersApi.as_view(), name="search-filters"),
]
