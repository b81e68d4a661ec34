"""Request guards that apply to every page and API call, before tenancy and sessions."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.translation import gettext as _


class RefuseNulMiddleware:
    """A query string (or path) carrying a NUL character gets ``400`` — JSON
    ``{"error": "invalid", "detail"}`` under ``/api/``, plain text elsewhere — instead of reaching
    a search that PostgreSQL would refuse with an error (it cannot compare text with NUL)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            detail = _("NUL characters are not allowed in a URL.")
            if request.path.startswith("/api/"):
                return JsonResponse({"error": "invalid", "detail": detail}, status=400)
            return HttpResponseBadRequest(detail, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
