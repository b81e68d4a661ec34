"""Project-level views: health check, favicon, the public landing page, the sign-in lock-out
answer, and the error handlers (JSON under ``/api/``)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.i18n import JavaScriptCatalog


class JavaScriptCatalogView(JavaScriptCatalog):
    """``GET /jsi18n/?lang=<zh-hans|en>``: Django's JavaScript catalogue in ``lang`` when it is
    one of ``settings.LANGUAGES`` (the widget frame's language, chosen by the visitor or their
    browser; the inbox passes its page's), else in the request's language. A distinct URL per
    language, so a cached catalogue never answers for another."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        lang = request.GET.get("lang", "")
        if lang not in dict(settings.LANGUAGES):
            return super().get(request, *args, **kwargs)
        with translation.override(lang):
            return super().get(request, *args, **kwargs)


def healthz(request: HttpRequest) -> JsonResponse:
    """``GET /healthz`` → ``200 {"status": "ok", "schema": <schema>}`` when the database answers,
    ``503 {"status": "unavailable"}`` otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "schema": connection.schema_name})


@cache
def _favicon() -> bytes:
    return (Path(settings.BASE_DIR) / "static" / "favicon.svg").read_bytes()


def favicon(request: HttpRequest) -> HttpResponse:
    """``GET /favicon.ico`` on every domain (tenants and public): Weiyu's icon, an SVG
    (``image/svg+xml``; every page's ``<link rel="icon">`` points here), cached for a day."""
    response = HttpResponse(_favicon(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def landing(request: HttpRequest) -> HttpResponse:
    """The public site's home page."""
    return render(request, "public/landing.html")


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """What a locked-out sign-in gets (django-axes' ``AXES_LOCKOUT_CALLABLE``): 429 with
    ``Retry-After`` (s) — JSON ``{"error": "locked_out", "detail", "retry_after"}`` for API and
    script clients, a page with the same message for browsers. The wait is the whole cool-off
    (``settings.AXES_COOLOFF_TIME``): a lock-out is not told how far it has run. A sign-in
    refused by the rate limits (``org.limits.sign_in``) gets their message and wait instead."""
    refused = getattr(request, "weiyu_sign_in_refused", None)
    if refused is not None:  # the sign-in rate limits (org.backends.LockoutBackend)
        seconds, detail = refused.retry_after_s, refused.message
    else:
        seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
        minutes = max(1, math.ceil(seconds / 60))
        detail = _(
            "Too many failed sign-in attempts. Sign-in is locked for %(minutes)d minutes; "
            "try again later."
        ) % {"minutes": minutes}
    wants_json = request.path.startswith("/api/") or "application/json" in request.headers.get(
        "Accept", ""
    )
    if wants_json:
        response: HttpResponse = JsonResponse(
            {"error": "locked_out", "detail": detail, "retry_after": seconds}, status=429
        )
    else:
        response = render(request, "login_locked.html", {"detail": detail}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _api_error(request: HttpRequest, code: str, detail: str, status: int) -> HttpResponse | None:
    """The API's JSON error shape for a path under ``/api/``; None for any other path."""
    if not request.path.startswith("/api/"):
        return None
    return JsonResponse({"error": code, "detail": detail}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400`` (a request Django refuses before any view, e.g. a malformed body or a
    suspicious header): ``400 {"error": "invalid", "detail"}`` under ``/api/``, Django's page
    elsewhere."""
    answer = _api_error(request, "invalid", _("The request is malformed."), 400)
    return answer or defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: a path under ``/api/`` that names no endpoint (``/api/v1/tickets/abc``, an
    unknown action) answers ``404 {"error": "not_found", "detail"}`` like every other API error;
    Django's page elsewhere."""
    answer = _api_error(request, "not_found", _("There is no such API endpoint."), 404)
    return answer or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: ``500 {"error": "server_error", "detail"}`` under ``/api/`` (the error is
    logged as usual), Django's page elsewhere."""
    answer = _api_error(request, "server_error", _("Something went wrong; try again later."), 500)
    return answer or defaults.server_error(request)
