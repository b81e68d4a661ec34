"""Request guards that apply to every page and API call, before tenancy and sessions; and the
security headers of answers sent without Django's middleware (:func:`security_headers`)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

#: the middleware of ``settings.MIDDLEWARE`` whose work on an answer is to add security headers:
#: X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy, Strict-Transport-Security
#: (Django's SecurityMiddleware), Content-Security-Policy (django-csp, when ``WEIYU_CSP`` adds
#: it), X-Frame-Options (clickjacking)
SECURITY_HEADER_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


def security_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """``response`` with the headers those of :data:`SECURITY_HEADER_MIDDLEWARE` that
    ``settings.MIDDLEWARE`` lists would add to it, run in Django's order (innermost first) with
    the current settings: an answer made before Django (the sign-in gate's 429,
    :mod:`org.signin_gate`) carries the same policy as every page. Headers already on
    ``response`` are kept. ``request`` gives the scheme (HSTS only over https) and path."""
    configured = [path for path in settings.MIDDLEWARE if path in SECURITY_HEADER_MIDDLEWARE]
    for path in reversed(configured):
        middleware = import_string(path)(HttpResponse)  # only its process_response runs
        response = middleware.process_response(request, response)
    return response


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
