"""Project-level views: health check and the public landing page."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def healthz(request: HttpRequest) -> JsonResponse:
    """``GET /healthz`` → ``200 {"status": "ok", "schema": <schema>}`` when the database answers,
    ``503 {"status": "unavailable"}`` otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "schema": connection.schema_name})


def landing(request: HttpRequest) -> HttpResponse:
    """The public site's home page."""
    return render(request, "public/landing.html")
