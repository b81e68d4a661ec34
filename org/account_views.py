"""Sign-in with a second factor, the account's security page, and the middleware that keeps a
user who must use two factors (and has none) on the enrolment page. Services: ``org.twofactor``;
docs/security.md, "Two-factor authentication".

Pages (tenant domains and the platform's):

- ``/inbox/login/`` and ``/admin/login/`` (:class:`TwoFactorLoginView`): the password; when the
  user has an authenticator they are not signed in yet but sent to the code step;
- ``/inbox/login/code/`` and ``/admin/login/code/`` (:class:`SignInCodeView`): a security key,
  six digits or a recovery code; a wrong one counts as a failed sign-in (django-axes) and locks
  like one;
- ``/account/passkey/options/`` and ``/account/passkey/`` (:func:`passkey_options`,
  :func:`passkey_sign_in`): *Sign in with a passkey* on the sign-in pages, no password;
- ``/account/security/`` (:func:`security_page`): turn two-factor sign-in on (QR code or the
  secret as text, a code to confirm, the recovery codes shown once), security keys
  (``/account/security/keys/…``, :mod:`org.securitykeys`), and "log out everywhere";
- ``/account/password/reset/`` and the link it e-mails (:func:`password_reset`,
  :class:`PasswordResetConfirmView`): "forgot your password?" (``org.passwords``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST
from django_tenants.utils import get_public_schema_name

from org import limits, passwords, securitykeys, sessions, sso, twofactor
from weiyu import ratelimit
from weiyu.errors import RateLimitedError, ServiceError

SECURITY_PATH = "/account/security/"


def _public() -> bool:
    return connection.schema_name == get_public_schema_name()


def _signed_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``login_required`` to the sign-in page of the domain: the platform admin's on the
    platform's domains (they serve no inbox), the inbox's on a tenant's."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            login_url = reverse("admin:login" if _public() else "kefu:inbox-login")
            return redirect_to_login(request.get_full_path(), login_url)
        return view(request, *args, **kwargs)

    return wrapped


class TwoFactorLoginView(auth_views.LoginView):
    """The password step of every sign-in. A user with an authenticator is not signed in here:
    the session remembers them for ``WEIYU_TWO_FACTOR_STEP_SECONDS`` and the browser goes to
    ``code_url_name``; a user without one is signed in as before."""

    code_url_name = "kefu:inbox-login-code"

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not twofactor.has_device(user):
            return super().form_valid(form)
        twofactor.pending_start(
            self.request, user, backend=user.backend, next_url=self.get_success_url()
        )
        return HttpResponseRedirect(reverse(self.code_url_name))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """The form's context, with ``sso``: the single sign-on button (org.sso.button)."""
        context = super().get_context_data(**kwargs)
        context["sso"] = sso.button(self.get_redirect_url())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """With "password sign-in off" (org.models.SingleSignOn) the form is refused with 403
        before any password is checked."""
        if not sso.password_sign_in_allowed():
            form = self.get_form_class()(request)  # unbound: no password is checked
            form.full_clean()  # an unbound form: no errors, no cleaning
            form.cleaned_data = {}
            form.add_error(None, _("Password sign-in is off here. Use the single sign-on button."))
            return self.render_to_response(self.get_context_data(form=form), status=403)
        return super().post(request, *args, **kwargs)


class AdminLoginView(TwoFactorLoginView):
    """``/admin/login/`` of the tenant's back office and of the platform admin (Django's page
    with *Sign in with a passkey* below the form)."""

    code_url_name = "admin-login-code"
    authentication_form = AdminAuthenticationForm
    template_name = "org/admin_login.html"


def admin_login(site: admin.AdminSite) -> Callable[[HttpRequest], HttpResponse]:
    """The sign-in view of ``site`` (Django's ``AdminSite.login`` with the code step). A POST
    without ``next`` lands on the site's index (``LOGIN_REDIRECT_URL`` is the inbox, which the
    platform's domains do not serve)."""

    @never_cache
    def view(request: HttpRequest) -> HttpResponse:
        index = reverse("admin:index", current_app=site.name)
        if request.method == "GET" and site.has_permission(request):
            return HttpResponseRedirect(index)
        app_path = request.get_full_path()
        if REDIRECT_FIELD_NAME not in request.GET:
            request.GET = request.GET.copy()
            request.GET[REDIRECT_FIELD_NAME] = index
        context = {
            **site.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": app_path,
            "username": request.user.get_username(),
            REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME)
            or request.GET[REDIRECT_FIELD_NAME],
        }
        request.current_app = site.name
        return AdminLoginView.as_view(extra_context=context)(request)

    return view


def _locked_out(request: HttpRequest, username: str) -> HttpResponse | None:
    credentials = {"username": username}
    if not AxesProxyHandler.is_locked(request, credentials):
        return None
    locked: Any = import_string(settings.AXES_LOCKOUT_CALLABLE)
    return locked(request, None, credentials)


def _json_error(exc: ServiceError, status: int | None = None) -> JsonResponse:
    return JsonResponse(
        {"error": exc.code, "detail": exc.message}, status=status or exc.http_status
    )


@method_decorator([csrf_protect, never_cache], name="dispatch")
class SignInCodeView(View):
    """``GET/POST …/login/code/``: the second step of a sign-in. Without a pending sign-in (none,
    or too old) → back to ``login_url_name``. POST forms:

    - ``code=<6 digits or a recovery code>``: a wrong code → 200 with the form and an error;
      the right one → signed in, redirected to where the password step was going;
    - ``action=key-options`` (the page's script): → 200 JSON ``{"publicKey": <request options>}``
      for ``navigator.credentials.get()`` with the user's security keys on this host (404 JSON
      ``{"error": "not_found", "detail"}`` without any);
    - ``credential=<the assertion as JSON>``: → 200 JSON ``{"redirect": <url>}`` and signed in, or
      400 JSON ``{"error": "invalid", "detail"}``.

    A wrong code or key answer counts as a failed sign-in of the username (django-axes); when
    the account or address is locked → 429 (``weiyu.views.login_locked_out``, JSON for scripts)."""

    login_url_name = "kefu:inbox-login"

    def _form(self, request: HttpRequest, user: Any, error: str = "", status: int = 200):
        rp_id, _origin = securitykeys.relying_party(request)
        return render(
            request,
            "org/login_code.html",
            {
                "username": user.get_username(),
                "error": error,
                "has_key": any(k.rp_id == rp_id for k in securitykeys.keys_of(user)),
                "has_codes": twofactor.has_totp(user) or twofactor.recovery_codes_left(user) > 0,
            },
            status=status,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        found = twofactor.pending_user(request)
        if found is None:
            return redirect(self.login_url_name)
        return self._form(request, found[0])

    def post(self, request: HttpRequest) -> HttpResponse:
        found = twofactor.pending_user(request)
        if found is None:
            return redirect(self.login_url_name)
        user, pending = found
        locked = _locked_out(request, user.get_username())
        if locked is not None:
            return locked
        if request.POST.get("action") == "key-options":
            return self._key_options(request, user)
        by_key = "credential" in request.POST
        if by_key:
            passed = securitykeys.authentication_verify(
                request, user, request.POST.get("credential")
            )
        else:
            passed = twofactor.verify_code(user, request.POST.get("code"))
        if not passed:
            return self._failed(request, user, by_key=by_key)
        request.session.pop(twofactor.SESSION_PENDING, None)
        request.weiyu_sign_in_method = pending.get("method") or None  # type: ignore[attr-defined]
        login(request, user, backend=pending["backend"])
        request.session[twofactor.SESSION_VERIFIED] = "ok"
        if by_key:
            return JsonResponse({"redirect": pending["next"]})
        return HttpResponseRedirect(pending["next"])

    def _key_options(self, request: HttpRequest, user: Any) -> JsonResponse:
        try:
            options = securitykeys.authentication_options(request, user)
        except ServiceError as exc:
            return _json_error(exc)
        return JsonResponse({"publicKey": options})

    def _failed(self, request: HttpRequest, user: Any, *, by_key: bool) -> HttpResponse:
        """A wrong code or key answer: a failed sign-in of the username (django-axes); the
        lock-out's 429 once it locks, else the form again (a code) or 400 JSON (a key)."""
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username()}, request=request
        )
        locked = _locked_out(request, user.get_username())
        if locked is not None:
            request.session.pop(twofactor.SESSION_PENDING, None)
            return locked
        if by_key:
            detail = _("The security key was not accepted. Try again.")
            return JsonResponse({"error": "invalid", "detail": detail}, status=400)
        return self._form(request, user, _("That code is not right."))


def _sign_in_limited(request: HttpRequest) -> JsonResponse | None:
    """The password sign-in's rate limits (``org.limits.sign_in``), for passkey sign-ins: 429
    JSON ``{"error": "rate_limited", "detail", "retry_after"}`` past them, else None."""
    try:
        ratelimit.check(
            limits.sign_in(schema=connection.schema_name, ip=request.META.get("REMOTE_ADDR", ""))
        )
    except RateLimitedError as exc:
        body = {"error": exc.code, "detail": exc.message, "retry_after": exc.retry_after_s}
        response = JsonResponse(body, status=429)
        response["Retry-After"] = str(exc.retry_after_s)
        return response
    return None


@require_POST
@csrf_protect
@never_cache
def passkey_options(request: HttpRequest) -> JsonResponse:
    """``POST /account/passkey/options/`` (anonymous): ``{"publicKey": <request options>}`` for a
    sign-in with a passkey alone (:func:`org.securitykeys.passkey_options`). Counts towards the
    sign-in rate limits (429 JSON past them)."""
    limited = _sign_in_limited(request)
    if limited is not None:
        return limited
    return JsonResponse({"publicKey": securitykeys.passkey_options(request)})


@require_POST
@csrf_protect
@never_cache
def passkey_sign_in(request: HttpRequest) -> HttpResponse:
    """``POST /account/passkey/`` ``credential=<the assertion as JSON>&next=<path>``: sign in
    with a passkey alone (user verification required, so it stands for both factors). → 200
    ``{"redirect": next}`` (``next`` when it is on this site, else the inbox, or the admin on
    the platform's domains), signed in. A refused answer → 400 ``{"error": "invalid",
    "detail"}``, counted as a failed sign-in of the key's user when the key is known; the key's
    account or this address locked out → 429 (``weiyu.views.login_locked_out``); past the rate
    limits → 429 ``rate_limited``."""
    limited = _sign_in_limited(request)
    if limited is not None:
        return limited
    user, passed = securitykeys.passkey_verify(request, request.POST.get("credential"))
    if user is not None:
        locked = _locked_out(request, user.get_username())
        if locked is not None:
            return locked
    if not passed or user is None or not user.is_active:
        # an unknown key names nobody to count against (and cannot be guessed: it must sign)
        if user is not None:
            user_login_failed.send(
                sender=__name__, credentials={"username": user.get_username()}, request=request
            )
        detail = _("The passkey was not accepted. Sign in with your password instead.")
        return JsonResponse({"error": "invalid", "detail": detail}, status=400)
    # the backend that loads the user on later requests (the last ones only check permissions)
    login(request, user, backend="org.backends.PasswordBackend")
    request.session[twofactor.SESSION_VERIFIED] = "ok"
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("admin:index") if _public() else reverse("kefu:inbox")
    return JsonResponse({"redirect": target})


class AdminSignInCodeView(SignInCodeView):
    """``/admin/login/code/``: the code step of the back office's and platform admin's sign-in."""

    login_url_name = "admin:login"


@never_cache
@_signed_in
def security_page(request: HttpRequest) -> HttpResponse:
    """``GET/POST /account/security/``: the signed-in user's two-factor sign-in, security keys
    and sessions (each live session with its browser, address and times; :mod:`org.sessions`).

    GET shows whether the authenticator app is on or, when off, one to set up: its QR code and
    secret; the security keys (name, domain, added, last used) with *Add* and *Remove*; the
    recovery codes left. POST ``code`` confirms the authenticator; the answer shows the 10
    recovery codes once (never stored in the page's cache). A wrong code → 400 with the form
    and the reason."""
    user = request.user
    context: dict[str, Any] = {
        "required": twofactor.is_required(user),
        "inbox_url": None if _public() else reverse("kefu:inbox"),
        "admin_url": "/admin/" if user.is_staff else None,
    }
    status = 200
    if request.method == "POST":
        try:
            context["recovery_codes"] = twofactor.enrolment_confirm(
                request, user, request.POST.get("code")
            )
        except ServiceError as exc:
            context["error"] = exc.message
            status = 400
    enabled = twofactor.has_totp(user)
    context["enabled"] = enabled
    context["sessions"] = sessions.sessions_of(user, current_key=request.session.session_key)
    context["security_keys"] = securitykeys.keys_of(user)
    context["rp_id"] = securitykeys.relying_party(request)[0]
    context["max_keys"] = securitykeys.MAX_KEYS
    if twofactor.has_device(user):
        context["codes_left"] = twofactor.recovery_codes_left(user)
    if not enabled:
        device = twofactor.enrolment_start(user)
        context["qr_svg"] = twofactor.enrolment_qr_svg(device)
        context["secret"] = twofactor.secret_text(device)
    return render(request, "org/security.html", context, status=status)


@require_POST
@_signed_in
def security_key_options(request: HttpRequest) -> JsonResponse:
    """``POST /account/security/keys/options/``: ``{"publicKey": <creation options>}`` for
    ``navigator.credentials.create()`` on this host (:func:`org.securitykeys.registration_options`);
    409 ``{"error": "conflict", "detail"}`` at the most keys allowed."""
    try:
        options = securitykeys.registration_options(request, request.user)
    except ServiceError as exc:
        return _json_error(exc)
    return JsonResponse({"publicKey": options})


@require_POST
@_signed_in
def security_key_add(request: HttpRequest) -> JsonResponse:
    """``POST /account/security/keys/`` ``name=<1 to 64 characters>&credential=<the browser's
    registration response as JSON>``: → 201 ``{"id", "name", "recovery_codes": [str]}`` (codes
    only when this was the first second factor; shown once). Errors → 4xx ``{"error",
    "detail"}``: ``invalid`` 400 (a bad name or a response that fails a check), ``expired`` 400
    (no live challenge: ask for options again), ``conflict`` 409 (registered already)."""
    try:
        key, codes = securitykeys.registration_finish(
            request,
            request.user,
            name=request.POST.get("name"),
            response=request.POST.get("credential"),
        )
    except ServiceError as exc:
        return _json_error(exc, 409 if exc.code == "conflict" else 400)
    return JsonResponse({"id": key.pk, "name": key.name, "recovery_codes": codes}, status=201)


@require_POST
@_signed_in
def security_key_delete(request: HttpRequest, key_id: int) -> HttpResponse:
    """``POST /account/security/keys/<id>/delete/``: remove one of the user's security keys
    (:func:`org.securitykeys.key_delete`); back to the security page with a confirmation.
    Another user's key → 404; the last second factor of a user who must use two → 409."""
    try:
        securitykeys.key_delete(user=request.user, key_id=key_id)
    except ServiceError as exc:
        status = 404 if exc.code == "not_found" else 409
        return HttpResponse(exc.message, status=status, content_type="text/plain; charset=utf-8")
    messages.success(request, _("The security key is removed."))
    return HttpResponseRedirect(SECURITY_PATH)


@require_POST
@_signed_in
def end_other_sessions(request: HttpRequest) -> HttpResponse:
    """``POST /account/security/sessions/end/``: "log out everywhere" — every other session of
    the user ends and its sockets close; back to the security page with a confirmation."""
    twofactor.end_other_sessions(request)
    messages.success(request, _("You are signed out everywhere else."))
    return HttpResponseRedirect(SECURITY_PATH)


@require_POST
@_signed_in
def end_session(request: HttpRequest, session_id: int) -> HttpResponse:
    """``POST /account/security/sessions/<id>/end/``: end one other session of the signed-in
    user (:func:`org.sessions.session_end`); back to the security page with a confirmation.
    Another user's session, or one already ended → 404; the current one → 400."""
    try:
        sessions.session_end(
            user=request.user, session_id=session_id, current_key=request.session.session_key
        )
    except ServiceError as exc:
        status = 404 if exc.code == "not_found" else 400
        return HttpResponse(exc.message, status=status, content_type="text/plain; charset=utf-8")
    messages.success(request, _("That session has ended."))
    return HttpResponseRedirect(SECURITY_PATH)


_EXEMPT = (SECURITY_PATH, "/inbox/logout/", "/admin/logout/", "/jsi18n/", "/static/", "/healthz")


class TwoFactorRequiredMiddleware:
    """After ``AuthenticationMiddleware``: a signed-in user whom the tenant requires to use two
    factors, in a session that gave none, reaches only the security page (to enrol) and sign-out.
    Pages redirect there; ``/api/`` answers 403 ``{"error": "two_factor_required", "detail"}``.
    A user who has an authenticator but whose session predates the rule is signed out (the
    next sign-in asks for the code). Sockets check the same (``kefu.consumers``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(_EXEMPT)
            and not twofactor.session_allowed(request.session, user)
        ):
            return self._refuse(request, user)
        return self.get_response(request)

    def _refuse(self, request: HttpRequest, user: Any) -> HttpResponse:
        api = request.path.startswith("/api/")
        if twofactor.has_device(user):
            logout(request)
            if api:
                return JsonResponse(
                    {"error": "unauthorized", "detail": _("Please sign in.")}, status=401
                )
            admin_path = request.path.startswith("/admin/") or _public()
            return redirect("admin:login" if admin_path else "kefu:inbox-login")
        if api:
            return JsonResponse(
                {
                    "error": "two_factor_required",
                    "detail": _("Turn on two-factor sign-in first (your account's security page)."),
                },
                status=403,
            )
        return HttpResponseRedirect(SECURITY_PATH)


# --- "Forgot your password?" (org.passwords; docs/security.md, "Passwords")

RESET_PATH = "/account/password/reset/"


@never_cache
@csrf_protect
def password_reset(request: HttpRequest) -> HttpResponse:
    """``GET/POST /account/password/reset/`` (``?sent=1`` after a request): ask for a link to
    choose a new password. POST ``email``: a link goes to every active account of the tenant
    with that address (:func:`org.passwords.password_reset_request`); the answer never says
    whether one exists. An empty or malformed address → 400 with the form; past the rate limit
    → 429 with ``Retry-After`` and the form."""
    context: dict[str, Any] = {
        "sign_in_url": reverse("kefu:inbox-login"),
        "sent": request.GET.get("sent") == "1",
        "email": "",
    }
    if request.method == "POST":
        email = (request.POST.get("email") or "").strip()[:254]
        context["email"] = email
        try:
            passwords.password_reset_request(
                email=email,
                base_url=request.build_absolute_uri("/"),
                language=translation.get_language() or settings.LANGUAGE_CODE,
                ip=request.META.get("REMOTE_ADDR", ""),
            )
        except RateLimitedError as exc:
            context["error"] = exc.message
            response = render(request, "org/password_reset.html", context, status=429)
            response["Retry-After"] = str(exc.retry_after_s)
            return response
        except ServiceError as exc:
            context["error"] = exc.message
            return render(request, "org/password_reset.html", context, status=400)
        return HttpResponseRedirect(f"{RESET_PATH}?sent=1")
    return render(request, "org/password_reset.html", context)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """``GET/POST /account/password/reset/<uidb64>/<token>/``: choose the new password (the
    tenant's policy applies); afterwards the account's lock-out is cleared, its other sessions
    and sockets end, and the page offers to sign in. An expired or used link says so."""

    template_name = "org/password_reset_confirm.html"
    success_url = reverse_lazy("account-password-reset-done")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["policy_text"] = passwords.TenantPasswordPolicyValidator().get_help_text()
        context["reset_url"] = RESET_PATH
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        passwords.password_reset_done(user=form.user)
        return response


@never_cache
def password_reset_done(request: HttpRequest) -> HttpResponse:
    """``GET /account/password/reset/done/``: the new password is set; a link to sign in."""
    return render(
        request,
        "org/password_reset_confirm.html",
        {"done": True, "sign_in_url": reverse("kefu:inbox-login")},
    )
