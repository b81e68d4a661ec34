"""Request middleware of the organisation: a signed-in person's chosen language for every page
and API answer (the inbox's switch), the audit log's request, an auditor's read-only access."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.translation import gettext as _

from org.audit import current_request


class UserLanguageMiddleware:
    """After ``AuthenticationMiddleware``: a signed-in user with a ``language`` reads pages, the
    JavaScript catalogue and API errors in it; without one, Django's ``LocaleMiddleware`` choice
    (the browser's Accept-Language) stays. Costs nothing more for signed-in requests (the user is
    loaded once per request anyway) and no query for requests without a session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        language = getattr(user, "language", "") if user is not None else ""
        if language and user is not None and user.is_authenticated:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)


class AuditMiddleware:
    """After ``AuthenticationMiddleware``: makes the request the source of the actor and client
    address of audit-log entries written while it is served (:mod:`org.audit`). No query of its
    own: the user is read only when an entry is written."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)


#: Paths where an auditor may still send a form: signing in and out, and their own account
#: (password, two factors, sessions, alerts). Nothing there changes the tenant's data.
AUDITOR_WRITABLE_PREFIXES = (
    "/admin/login/",
    "/admin/logout/",
    "/inbox/login/",
    "/inbox/logout/",
    "/inbox/alerts/",
    "/account/",
    "/i18n/",
)


F = TypeVar("F", bound=Callable[..., Any])

#: the attribute that marks a POST an auditor may still send: it reads and changes nothing of
#: the tenant's data (an export writes only its own job and the audit log)
READS_ONLY = "weiyu_reads_only"
#: the attribute of an API view that changes only the signed-in person's own settings (their
#: language, their alerts): an auditor may use every method of it
OWN_SETTINGS = "weiyu_own_settings"


def own_settings(target: F) -> F:
    """Mark an API view class that changes only the signed-in person's own settings: an auditor
    may send it any method (:class:`AuditorReadOnlyMiddleware`,
    ``org.permissions.IsAuthenticatedWriter``). Returns ``target`` itself."""
    setattr(target, OWN_SETTINGS, True)
    return target


def reads_only(target: F) -> F:
    """Mark an admin action or an API view class whose POST only reads (an export): an auditor
    may run it (:class:`AuditorReadOnlyMiddleware`, ``org.permissions.IsAuthenticatedWriter``).
    Returns ``target`` itself."""
    setattr(target, READS_ONLY, True)
    return target


def _posts_a_read(request: HttpRequest) -> bool:
    """Whether this unsafe request runs something marked :func:`reads_only`: an API view class,
    or an admin action chosen on a model's list page (``model_admin.get_action``)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    view_class = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    if view_class is not None:
        if getattr(view_class, OWN_SETTINGS, False):
            return True
        return request.method == "POST" and bool(getattr(view_class, READS_ONLY, False))
    model_admin = getattr(match.func, "model_admin", None)
    if model_admin is None or match.url_name != (
        f"{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist"
    ):
        return False
    chosen = model_admin.get_action(request.POST.get("action", ""))
    return chosen is not None and bool(getattr(chosen[0], READS_ONLY, False))


class AuditorReadOnlyMiddleware:
    """After ``AuthenticationMiddleware``: an auditor (``User.Role.AUDITOR``) reads everything
    and changes nothing. Any method but ``GET``/``HEAD``/``OPTIONS`` from an auditor's session is
    refused with 403 before a view runs — a JSON ``{"error": "read_only", "detail"}`` under
    ``/api/``, Django's 403 page elsewhere (admin actions, inbox forms) — except the paths of
    :data:`AUDITOR_WRITABLE_PREFIXES` and the exports marked :func:`reads_only` (the back
    office's export actions, ``POST /api/v1/kefu/exports``). API keys are checked by DRF
    (``org.permissions.IsAuthenticatedWriter``), websockets by ``kefu.consumers.AgentConsumer``.
    Reads ``request.user`` only for unsafe methods."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not request.path.startswith(
            AUDITOR_WRITABLE_PREFIXES
        ):
            user = getattr(request, "user", None)
            if (
                user is not None
                and user.is_authenticated
                and getattr(user, "is_auditor", False)
                and not _posts_a_read(request)
            ):
                detail = _("Auditors can read but not change anything.")
                if request.path.startswith("/api/"):
                    return JsonResponse({"error": "read_only", "detail": detail}, status=403)
                raise PermissionDenied(detail)
        return self.get_response(request)
