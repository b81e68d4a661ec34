"""Request guards that apply to every page and API call, before tenancy and sessions; and the
security headers of answers sent without Django's middleware (:func:`security_header_pairs`)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
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


def security_header_pairs(request: HttpRequest) -> tuple[tuple[str, str], ...]:
    """``((name, value), …)``: the headers that the middleware of
    :data:`SECURITY_HEADER_MIDDLEWARE` listed in ``settings.MIDDLEWARE`` adds to an answer to
    ``request``, with the current settings — for an answer made before Django (the sign-in
    gate's 429, :mod:`org.signin_gate`), so that it carries the same policy as every page.
    ``request`` gives the scheme (HSTS only over https, ``SECURE_PROXY_SSL_HEADER`` honoured)
    and the path. The middleware runs once per (scheme, path) and its headers are reused until a
    setting changes, so a refusal costs a dictionary lookup; hence only for answers without a
    per-view policy (no CSP nonce or decorator)."""
    key = (request.is_secure(), request.path_info)
    pairs = _policy_headers.get(key)
    if pairs is None:
        if len(_policy_headers) >= _POLICY_PATHS_MAX:
            _policy_headers.clear()
        pairs = _policy_headers[key] = _policy_headers_of(request)
    return pairs


#: (https?, path) → the headers :func:`_policy_headers_of` found (emptied when a setting changes)
_policy_headers: dict[tuple[bool, str], tuple[tuple[str, str], ...]] = {}
_POLICY_PATHS_MAX = 64


def _policy_headers_of(request: HttpRequest) -> tuple[tuple[str, str], ...]:
    """What the configured security middleware adds to a blank answer to ``request``, run in
    Django's order (innermost first)."""
    response = HttpResponse()
    before = set(response.headers)
    configured = [path for path in settings.MIDDLEWARE if path in SECURITY_HEADER_MIDDLEWARE]
    for path in reversed(configured):
        middleware = import_string(path)(HttpResponse)  # only its process_response runs
        response = middleware.process_response(request, response)
    return tuple((name, value) for name, value in response.items() if name not in before)


@receiver(setting_changed)
def _settings_changed(**_kwargs: object) -> None:
    _policy_headers.clear()


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
