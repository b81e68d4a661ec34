"""REST endpoints for message search and history pages (docs/api.md §4). Session-cookie auth."""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im import search, selectors
from im.models import Message, Participant
from im.serializers import message_payload
from weiyu.errors import ServiceError


def _int_param(request: Request, name: str, *, low: int = 1, high: int | None = None) -> int | None:
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


def _titles(messages: list[Message], member_key: str) -> dict[int, str]:
    """The conversation title as the member sees it: a 1:1 chat is named after the other one."""
    direct = {m.conversation_id for m in messages if m.conversation.kind == "direct"}
    names: dict[int, str] = {}
    if direct:
        for row in Participant.objects.filter(conversation_id__in=direct).exclude(
            member_key=member_key
        ):
            names[row.conversation_id] = row.name
    return {m.conversation_id: names.get(m.conversation_id, m.conversation.title) for m in messages}


class MessageSearchApi(APIView):
    """``GET /api/v1/im/search?q=…&conversation_id=…&before_id=…&limit=…`` (limit 1-50,
    default 20) → ``{"results": [{"message", "conversation": {"id", "kind", "title"},
    "highlight"}], "has_more"}``, newest first; page on with ``before_id`` = the last result's
    message id. 400 ``invalid`` for an empty or over-long ``q``."""

    def get(self, request: Request) -> Response:
        member_key = request.user.member_key
        rows, has_more = search.message_search(
            member_key=member_key,
            query=request.query_params.get("q"),
            conversation_id=_int_param(request, "conversation_id"),
            before_id=_int_param(request, "before_id"),
            limit=_int_param(request, "limit", high=50) or 20,
        )
        titles = _titles(rows, member_key)
        query = request.query_params.get("q", "")
        results: list[dict[str, Any]] = [
            {
                "message": message_payload(m),
                "conversation": {
                    "id": m.conversation_id,
                    "kind": m.conversation.kind,
                    "title": titles[m.conversation_id],
                },
                "highlight": search.highlight(
                    m.content or (m.attachment.name if m.attachment_id else ""), query
                ),
            }
            for m in rows
        ]
        return Response({"results": results, "has_more": has_more})


class MessageListApi(APIView):
    """``GET /api/v1/im/conversations/<id>/messages`` with one of ``before_seq``, ``after_seq``,
    ``around_seq`` (none: the newest page) and ``limit`` 1-100 (default 50) →
    ``{"conversation_id", "messages": [oldest first], "has_before", "has_after"}``. 404 unless
    the caller is a member."""

    def get(self, request: Request, pk: int) -> Response:
        member_key = request.user.member_key
        selectors.participant_get(conversation_id=pk, member_key=member_key)
        limit = _int_param(request, "limit", high=100) or 50
        before = _int_param(request, "before_seq")
        after = _int_param(request, "after_seq", low=0)
        around = _int_param(request, "around_seq")
        if sum(v is not None for v in (before, after, around)) > 1:
            raise ServiceError("invalid", _("Give only one of before_seq, after_seq, around_seq."))
        internal = not selectors.is_visitor_key(member_key)
        if around is not None:
            rows, has_before, has_after = search.messages_around(
                conversation_id=pk, seq=around, limit=limit, include_internal=internal
            )
        elif after is not None:
            rows = selectors.messages_after(
                conversation_id=pk, after_seq=after, limit=limit + 1, include_internal=internal
            )
            has_after = len(rows) > limit
            rows = rows[:limit]
            has_before = after > 0
        else:
            rows, has_before = selectors.messages_before(
                conversation_id=pk, before_seq=before, limit=limit, include_internal=internal
            )
            has_after = before is not None
        return Response(
            {
                "conversation_id": pk,
                "messages": [message_payload(m) for m in rows],
                "has_before": has_before,
                "has_after": has_after,
            }
        )


urlpatterns = [
    path("search", MessageSearchApi.as_view(), name="search"),
    path("conversations/<int:pk>/messages", MessageListApi.as_view(), name="message-list"),
]
