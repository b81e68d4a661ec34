"""Authentication backends: the lock-out check of django-axes and a password check that does not
keep a database connection while the password is hashed.

Order in ``settings.AUTHENTICATION_BACKENDS``: :class:`LockoutBackend` first (a locked-out
account or address is refused before any hashing), then :class:`PasswordBackend`.
docs/security.md, "Sign-in throttling".
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.auth.models import Permission
from django.db import connection
from django.http import HttpRequest

from org import limits, sso
from weiyu import ratelimit
from weiyu.errors import RateLimitedError


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' check for every sign-in that comes with a request (the inbox, the tenant
    admin, the platform admin: Django's login forms pass it). ``authenticate()`` without a
    request — the shell, management commands — has no client to lock out and is let through to
    the next backend. Before it, the sign-in rate limits (``org.limits.sign_in``): past them the
    answer is the lock-out's 429, with the limit's wait, and no password is hashed."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is None:
            return None
        try:
            ratelimit.check(
                limits.sign_in(
                    schema=connection.schema_name, ip=request.META.get("REMOTE_ADDR", "")
                )
            )
        except RateLimitedError as exc:
            # answered like a lock-out (weiyu.views.login_locked_out), with this wait
            request.weiyu_sign_in_refused = exc
            request.axes_locked_out = True
            raise AxesBackendPermissionDenied(exc.message) from exc
        return super().authenticate(request, username, password, **kwargs)


def _release_connection() -> None:
    """Give the request's database connection back to the pool (the next query takes one
    again; django-tenants sets the schema on it). Not inside a transaction, which owns it."""
    if not connection.in_atomic_block:
        connection.close()


class PasswordBackend(ModelBackend):
    """Django's ``ModelBackend`` with one difference: the user row is read, the connection goes
    back to the pool, then the password is hashed (PBKDF2, hundreds of ms of CPU). Holding a
    pooled connection while hashing let 32 parallel wrong-password requests empty a 16-connection
    pool and fail everyone else's requests with HTTP 500 (issue 12, finding 2). A tenant with
    "password sign-in off" (org.sso) gets None for every sign-in that comes with a request."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        user_model = get_user_model()
        if username is None:
            username = kwargs.get(user_model.USERNAME_FIELD)
        if username is None or password is None:
            return None
        if request is not None and not sso.password_sign_in_allowed():
            return None  # the tenant signs in through its provider (org.sso)
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            _release_connection()
            # hash anyway, as ModelBackend does, so timing does not tell which usernames exist
            user_model().set_password(password)
            return None
        _release_connection()
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


#: What the supervisor role may do in the back office, on top of custom roles: read and act on
#: the conversations and tickets of the workgroups they supervise (the admin lists are narrowed
#: to those, ``kefu.supervision``), read workgroups and statistics.
SUPERVISOR_PERMISSIONS = frozenset(
    {
        "kefu.view_session",
        "kefu.change_session",
        "kefu.view_workgroup",
        "kefu.view_dailystat",
        "tickets.view_ticket",
        "tickets.change_ticket",
        "tickets.view_comment",
    }
)


class RolePermissionBackend(BaseBackend):
    """The Django permissions of the built-in roles (docs/security.md "Roles"): an auditor
    holds every ``view_*`` permission of the tenant's models and nothing else (the admin then
    shows every page read-only); a supervisor holds :data:`SUPERVISOR_PERMISSIONS`. Other roles
    get nothing here (administrators are superusers; custom roles come through Django's groups
    in :class:`PasswordBackend`). Model permissions only: object permissions are
    django-guardian's. One query per request for an auditor, none for the others."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if obj is not None or not getattr(user_obj, "is_active", False):
            return set()
        if user_obj.is_anonymous:
            return set()
        cached = getattr(user_obj, "_weiyu_role_perm_cache", None)
        if cached is not None:
            return cached
        role = getattr(user_obj, "role", "")
        perms: set[str] = set()
        if role == "auditor":
            perms = {
                f"{app}.{codename}"
                for app, codename in Permission.objects.filter(
                    codename__startswith="view_"
                ).values_list("content_type__app_label", "codename")
            }
        elif role == "supervisor":
            perms = set(SUPERVISOR_PERMISSIONS)
        user_obj._weiyu_role_perm_cache = perms
        return perms

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return any(p.startswith(f"{app_label}.") for p in self.get_all_permissions(user_obj))
