"""A signed-in person's chosen language for every page and API answer (the inbox's switch)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation

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
