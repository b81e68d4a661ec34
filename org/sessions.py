"""The signed-in sessions of a user, listed on the account's security page where each one can
be ended (docs/security.md, "Two-factor authentication and sessions").

Django keeps the sessions (``django_session``); :class:`org.models.UserSession` says whose each
one is, from where and with what browser: a row is written at sign-in (``user_logged_in``),
deleted at sign-out (``user_logged_out``) and when ended here, and its ``last_seen_at`` is
refreshed by :class:`SessionActivityMiddleware` at most every :data:`TOUCH_S` seconds per process
(one ``UPDATE``; no query on other requests). Ending a session deletes it (its next request is
signed out) and closes its open inbox sockets (``session.ended`` with ``only``, the hash of its
key).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from org import audit
from org.models import User, UserSession
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: seconds between two refreshes of a session's ``last_seen_at`` (per process)
TOUCH_S = 300
#: session key → monotonic time of its last refresh in this process (bounded: cleared when big)
_touched: dict[str, float] = {}
_TOUCHED_MAX = 50_000


def session_fingerprint(session_key: str | None) -> str:
    """A short hash of a session key, safe to send to sockets (never the key itself)."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:24]


def session_started(request: HttpRequest, user: User) -> None:
    """Record the session ``request`` was just signed in with (the ``user_logged_in`` signal)."""
    key = request.session.session_key
    if not key:
        return
    UserSession.objects.update_or_create(
        session_key=key,
        defaults={
            "user": user,
            "ip": audit.request_ip(request),
            "user_agent": (request.META.get("HTTP_USER_AGENT") or "")[:300],
        },
    )


def session_forget(session_key: str | None) -> None:
    """Drop the record of a session that signed out (the ``user_logged_out`` signal)."""
    if session_key:
        UserSession.objects.filter(session_key=session_key).delete()
        _touched.pop(session_key, None)


def session_key_changed(old_key: str | None, new_key: str | None) -> None:
    """A session kept its user but got a new key (``cycle_key``): its record follows."""
    if old_key and new_key and old_key != new_key:
        UserSession.objects.filter(session_key=old_key).update(session_key=new_key)
        _touched.pop(old_key, None)


def browser_label(user_agent: str) -> str:
    """``"Chrome 131 on Windows 10"`` for a user agent; ``""`` when nothing is recognised."""
    if not user_agent:
        return ""
    from ua_parser import parse

    result = parse(user_agent)

    def label(part: Any) -> str:
        if part is None or part.family in (None, "Other"):
            return ""
        return " ".join(x for x in (part.family, part.major) if x)

    browser, system = label(result.user_agent), label(result.os)
    if browser and system:
        return _("%(browser)s on %(os)s") % {"browser": browser, "os": system}
    return browser or system


def sessions_of(user: User, *, current_key: str | None) -> list[dict[str, Any]]:
    """The user's live sessions, most recently active first: ``[{"id", "current" (this
    request's), "browser", "ip", "created_at", "last_seen_at"}]``. Records of sessions that have
    expired or were removed are deleted on the way."""
    rows = list(UserSession.objects.filter(user=user))
    alive = set(
        Session.objects.filter(
            session_key__in=[r.session_key for r in rows], expire_date__gt=timezone.now()
        ).values_list("session_key", flat=True)
    )
    dead = [r.pk for r in rows if r.session_key not in alive]
    if dead:
        UserSession.objects.filter(pk__in=dead).delete()
    listed = [
        {
            "id": r.pk,
            "current": r.session_key == current_key,
            "browser": browser_label(r.user_agent) or _("Unknown browser"),
            "ip": r.ip or "",
            "created_at": r.created_at,
            "last_seen_at": r.last_seen_at,
        }
        for r in rows
        if r.session_key in alive
    ]
    listed.sort(key=lambda s: (not s["current"], -s["last_seen_at"].timestamp()))
    return listed


@transaction.atomic
def session_end(*, user: User, session_id: int, current_key: str | None) -> None:
    """End one of ``user``'s sessions (not the one asking: "Log out" does that): it is deleted,
    so its next request is signed out, and its open sockets get ``session.ended`` and close
    with 4401. Raises ``ServiceError("not_found")`` for a session that is not the user's (or no
    longer exists), ``ServiceError("invalid")`` for the current one."""
    row = UserSession.objects.select_for_update().filter(pk=session_id, user=user).first()
    if row is None:
        raise ServiceError("not_found", _("This session has ended already."))
    if row.session_key == current_key:
        raise ServiceError("invalid", _("Use Log out to end the session you are using."))
    Session.objects.filter(session_key=row.session_key).delete()
    row.delete()
    _touched.pop(row.session_key, None)
    audit.audit_record(
        actor=user, action=audit.SESSION_ENDED, target=user, data={"ip": row.ip or ""}
    )
    publish_event_on_commit(
        {"type": "session.ended", "only": session_fingerprint(row.session_key)}, [user.member_key]
    )


def sessions_end_others(*, user: User, current_key: str | None) -> None:
    """Delete every session of ``user`` but ``current_key`` and their records (part of "log out
    everywhere", org.twofactor.end_other_sessions, which also closes their sockets)."""
    others = UserSession.objects.filter(user=user).exclude(session_key=current_key or "")
    keys = list(others.values_list("session_key", flat=True))
    Session.objects.filter(session_key__in=keys).delete()
    others.delete()


def touch(session_key: str, *, now: float | None = None) -> bool:
    """Refresh the session's ``last_seen_at`` when this process has not in :data:`TOUCH_S`
    seconds. Returns whether an ``UPDATE`` was sent."""
    now = time.monotonic() if now is None else now
    last = _touched.get(session_key)
    if last is not None and now - last < TOUCH_S:
        return False
    if len(_touched) > _TOUCHED_MAX:
        _touched.clear()
    _touched[session_key] = now
    UserSession.objects.filter(session_key=session_key).update(last_seen_at=timezone.now())
    return True


class SessionActivityMiddleware:
    """After ``AuthenticationMiddleware``: keeps "last active" of the signed-in session fresh
    (:func:`touch`). Requests without a session cost nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        key = session.session_key if session is not None else None
        if key and getattr(request, "user", None) is not None and request.user.is_authenticated:
            touch(key)
        return response


def _signed_in(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **kw: Any
) -> None:
    if request is not None and hasattr(request, "session") and user is not None:
        session_started(request, user)


def _signed_out(sender: Any, request: HttpRequest | None = None, **kw: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_forget(request.session.session_key)


def connect_signals() -> None:
    """Record sessions at sign-in and forget them at sign-out (Django's auth signals). Called
    once from ``OrgConfig.ready``."""
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    user_logged_in.connect(_signed_in, dispatch_uid="org-sessions-sign-in")
    user_logged_out.connect(_signed_out, dispatch_uid="org-sessions-sign-out")
