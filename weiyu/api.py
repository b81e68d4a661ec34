"""API plumbing shared by every app: the JSON error shape.

Every API error is ``{"error": <code>, "detail": <human-readable message>, "field": <name>?}``
with an HTTP 4xx/5xx status; a 429 ``rate_limited`` adds ``"retry_after"`` (seconds) and the
``Retry-After`` header.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from weiyu.errors import RateLimitedError, ServiceError, contains_nul


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing text with NUL characters (PostgreSQL cannot store them)
    with ``400 invalid``."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ServiceError("invalid", _("Text may not contain NUL characters."))
        return data


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map ``ServiceError`` and DRF's errors onto the JSON error shape."""
    if isinstance(exc, ServiceError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        if isinstance(exc, RateLimitedError):
            body["retry_after"] = exc.retry_after_s
            return Response(
                body, status=exc.http_status, headers={"Retry-After": str(exc.retry_after_s)}
            )
        return Response(body, status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is not None:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        if not isinstance(code, str) or isinstance(exc, exceptions.ParseError):
            code = "invalid"
        response.data = {
            "error": code,
            "detail": response.data.get("detail", response.data)
            if isinstance(response.data, dict)
            else response.data,
        }
    return response
