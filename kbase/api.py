"""REST endpoint of the knowledge base (docs/api.md §7)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kbase import access, search
from org import limits
from weiyu import ratelimit
from weiyu.errors import ServiceError


class KbSearchApi(APIView):
    """``GET /api/v1/kbase/search?q=…&kb=…&limit=…`` → ``{"results": [{"type": "faq" |
    "article", "id", "external_id", "title", "snippet", "text", "score", "similarity",
    "keyword", "kb": {"id", "name"}, "url"}], "mode"}`` (fields: :mod:`kbase.search`), best first; ``mode`` is the one that ranked them (``keyword`` when
    semantic search is unavailable: not installed, or the embedding service down or late).
    ``q``: 1 to 200 characters, Chinese or other languages; ``kb``: knowledge base ids,
    comma-separated (default all); ``limit`` 1 to 50 (10); ``mode`` ``keyword`` | ``semantic`` |
    ``hybrid`` (default hybrid). Signed-in staff search every knowledge base they may see (not
    those restricted to workgroups they are not in, :mod:`kbase.access`) and draft articles;
    anyone else public knowledge bases and published articles only. 400 ``invalid`` for a bad
    parameter; 429 ``rate_limited`` for anonymous callers past the help-center searches per
    address and minute (``org.limits.help_search``; ``Retry-After``)."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        if not q or len(q) > 200:
            raise ServiceError("invalid", _("q must be 1 to 200 characters."), field="q")
        kb_ids = None
        raw = request.query_params.get("kb")
        if raw:
            parts = raw.split(",")
            if not all(p.strip().isdigit() for p in parts):
                raise ServiceError("invalid", _("kb must be knowledge base ids."), field="kb")
            kb_ids = [int(p) for p in parts]
        raw_limit = request.query_params.get("limit") or "10"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 50:
            raise ServiceError("invalid", _("limit must be between 1 and 50."), field="limit")
        mode = request.query_params.get("mode") or None
        if mode is not None and mode not in search.MODES:
            raise ServiceError(
                "invalid", _("mode must be keyword, semantic or hybrid."), field="mode"
            )
        staff = bool(request.user and request.user.is_authenticated)
        if not staff:
            ratelimit.check(
                limits.help_search(limits.effective(), ip=request.META.get("REMOTE_ADDR", ""))
            )
        found = search.search_run(
            q=q,
            kb_ids=kb_ids,
            public_only=not staff,
            limit=int(raw_limit),
            mode=mode,
            exclude_kb_ids=access.hidden_ids(request.user) if staff else (),
        )
        results: list[dict[str, Any]] = found.results
        return Response({"results": results, "mode": found.mode})


urlpatterns = [path("search", KbSearchApi.as_view(), name="kbase-search")]
