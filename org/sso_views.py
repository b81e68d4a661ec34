"""The pages of single sign-on (services: :mod:`org.sso`; docs/security.md, "Single sign-on").

- ``GET /account/sso/start/?next=<path>``: to the provider's sign-in page (302), or a page that
  says why not (409 not set up, 502 the provider cannot be reached, 429 past the sign-in rate
  limits);
- ``GET /account/sso/callback/?state=&code=``: where the provider sends the browser back. The
  person is signed in like with a password (session recorded, ``sign_in`` in the audit log),
  or sent to the code step first when they have an authenticator; a refusal is a page with
  the reason (400 a bad or reused ``state``/``nonce``/token, 403 a refused person).
"""

from __future__ import annotations

from django.contrib.auth import login
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from org import limits, sso, twofactor
from weiyu import ratelimit
from weiyu.errors import RateLimitedError, ServiceError

#: the backend recorded in the session of an SSO sign-in (it restores the user on each request)
BACKEND = "org.backends.PasswordBackend"


def _failed(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    status = {"unavailable": 502, "not_configured": 409}.get(exc.code, exc.http_status)
    response = render(
        request,
        "org/sso_failed.html",
        {"error": exc.message, "sign_in_url": reverse("kefu:inbox-login")},
        status=status,
    )
    if isinstance(exc, RateLimitedError):
        response["Retry-After"] = str(exc.retry_after_s)
    return response


def _safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return reverse("kefu:inbox")


@never_cache
@require_GET
def sso_start(request: HttpRequest) -> HttpResponse:
    """``GET /account/sso/start/?next=``: begin the sign-in at the tenant's provider."""
    try:
        ratelimit.check(
            limits.sign_in(schema=connection.schema_name, ip=request.META.get("REMOTE_ADDR", ""))
        )
        url = sso.sign_in_start(
            request=request, next_url=_safe_next(request, request.GET.get("next"))
        )
    except ServiceError as exc:
        return _failed(request, exc)
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    """``GET /account/sso/callback/``: the provider's answer; sign the person in."""
    try:
        ratelimit.check(
            limits.sign_in(schema=connection.schema_name, ip=request.META.get("REMOTE_ADDR", ""))
        )
        user, next_url = sso.sign_in_finish(
            request=request, params={k: request.GET.get(k) for k in request.GET}
        )
    except ServiceError as exc:
        return _failed(request, exc)
    next_url = _safe_next(request, next_url)
    if twofactor.has_device(user):
        # the provider's own second factor is not visible here: ours is asked for as after a
        # password (org.account_views.SignInCodeView)
        twofactor.pending_start(request, user, backend=BACKEND, next_url=next_url, method="sso")
        admin = next_url.startswith("/admin/")
        return HttpResponseRedirect(
            reverse("admin-login-code" if admin else "kefu:inbox-login-code")
        )
    request.weiyu_sign_in_method = "sso"  # type: ignore[attr-defined]  # in the audit entry
    login(request, user, backend=BACKEND)
    return HttpResponseRedirect(next_url)
