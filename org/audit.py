"""The audit log: who did what, to what, when and from where, in the tenant's own schema.

Two kinds of entries share one table (django-auditlog's ``auditlog_logentry``):

- **changes** of the models registered in :func:`register_models` (and by the apps above org in
  their ``AppConfig.ready``): create / update / delete with every changed field's before and
  after, written by django-auditlog's signals — never secret fields (passwords, API keys);
- **events** that are not plain model edits, written by :func:`audit_record` from the services:
  sign-in, failed sign-in, lock-out, sign-out, a password set (never the password),
  conversation transfer and close, visitor block, exports. Their name is
  ``additional_data["event"]`` (one of :data:`EVENTS`).

The actor and the client address of an entry written while a request is served come from that
request (:class:`org.middleware.AuditMiddleware`): ``request.user`` when signed in, and
``REMOTE_ADDR`` — the address :mod:`weiyu.clientaddr` resolved (trusted proxies only), never a
forwarded header. Outside a request (websockets, workers) the caller passes them.

Tenant admins read the log in the back office (Organisation → Audit log: filters, search, CSV
export); nobody changes or deletes an entry there (:class:`org.admin.AuditEntryAdmin`).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from org.models import (
    AUDIT_EVENTS,
    BusinessCalendar,
    BusinessHours,
    Department,
    DepartmentMember,
    Holiday,
    LdapDirectory,
    SingleSignOn,
    User,
    VisitorLimits,
)
from weiyu.fields import EncryptedTextField

SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
LOCKED_OUT = "locked_out"
SIGN_OUT = "sign_out"
PASSWORD_SET = "password_set"  # noqa: S105 (an event name)
PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 (an event name)
TRANSFER = "transfer"
CLOSE = "close"
BLOCK = "block"
EXPORT = "export"
ERASE = "erase"
RETENTION = "retention"
MERGE = "merge"
TWO_FACTOR_ON = "two_factor_on"
SECURITY_KEY_ADDED = "security_key_added"
SECURITY_KEY_REMOVED = "security_key_removed"
SESSIONS_ENDED = "sessions_ended"
SESSION_ENDED = "session_ended"
SSO_ACCOUNT_CREATED = "sso_account_created"
SSO_REFUSED = "sso_refused"
DIRECTORY_IMPORT = "directory_import"

#: event name → its label in the back office
EVENTS = AUDIT_EVENTS

#: django-auditlog's coarse action of each event (create / update / delete / access)
_ACTIONS = {
    SIGN_IN: LogEntry.Action.ACCESS,
    SIGN_IN_FAILED: LogEntry.Action.ACCESS,
    LOCKED_OUT: LogEntry.Action.ACCESS,
    SIGN_OUT: LogEntry.Action.ACCESS,
    PASSWORD_SET: LogEntry.Action.UPDATE,
    PASSWORD_RESET_REQUESTED: LogEntry.Action.ACCESS,
    TRANSFER: LogEntry.Action.UPDATE,
    CLOSE: LogEntry.Action.UPDATE,
    BLOCK: LogEntry.Action.CREATE,
    EXPORT: LogEntry.Action.ACCESS,
    ERASE: LogEntry.Action.UPDATE,
    RETENTION: LogEntry.Action.DELETE,
    TWO_FACTOR_ON: LogEntry.Action.UPDATE,
    SECURITY_KEY_ADDED: LogEntry.Action.UPDATE,
    SECURITY_KEY_REMOVED: LogEntry.Action.UPDATE,
    SESSIONS_ENDED: LogEntry.Action.UPDATE,
    SESSION_ENDED: LogEntry.Action.UPDATE,
    SSO_ACCOUNT_CREATED: LogEntry.Action.CREATE,
    SSO_REFUSED: LogEntry.Action.ACCESS,
    DIRECTORY_IMPORT: LogEntry.Action.UPDATE,
    MERGE: LogEntry.Action.UPDATE,
}

#: the request being served in this context (set by org.middleware.AuditMiddleware)
current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def request_ip(request: HttpRequest | None) -> str | None:
    """The client address of ``request`` as :mod:`weiyu.clientaddr` resolved it, or None."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | type[models.Model],
    data: dict[str, Any] | None = None,
    ip: str | None = None,
) -> LogEntry:
    """Write one event to the tenant's audit log (in the current schema) and return it.

    ``actor``: the ``org.User`` who acted (or their id), or None (a failed sign-in, the
    system); during a request None means the signed-in user, if any. ``action``: one of
    :data:`EVENTS`. ``target``: the object acted on, or a model class when there is no single
    object (an export). ``data``: JSON-serialisable details, shown and exported with the entry
    (never a secret). ``ip``: the client address; None: the current request's
    (``REMOTE_ADDR``).

    Raises ``ValueError`` for an unknown ``action``.
    """
    if action not in EVENTS:
        raise ValueError(f"unknown audit action {action!r}")
    is_object = isinstance(target, models.Model)
    model = target.__class__ if is_object else target  # a lazy request.user too
    pk = target.pk if is_object else None
    if ip is None:
        ip = request_ip(current_request.get())
    return LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
        object_pk="" if pk is None else str(pk),
        object_id=pk if isinstance(pk, int) else None,
        object_repr=str(target)[:1000] if is_object else str(model._meta.verbose_name_plural),
        action=_ACTIONS[action],
        changes={},
        actor_id=actor if isinstance(actor, int) else getattr(actor, "pk", None),
        actor_email=getattr(actor, "email", None) or None,
        remote_addr=ip or None,
        additional_data={"event": action, **(data or {})},
    )


@receiver(pre_save, sender=LogEntry, dispatch_uid="org-audit-request")
def _from_request(sender: type[LogEntry], instance: LogEntry, **kwargs: Any) -> None:
    """Fill an entry's actor and address from the request being served, where unset. The user
    is read here, when an entry is written, so requests that write none load nothing. The
    request's user lives in the request's schema: an entry written in another one (the platform
    admin creating a tenant and its administrator) names them in ``actor_email`` instead."""
    request = current_request.get()
    if request is None or instance.pk is not None:
        return
    if instance.remote_addr is None:
        instance.remote_addr = request_ip(request)
    if instance.actor_id is None and not instance.actor_email:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            tenant = getattr(request, "tenant", None)
            if tenant is None or tenant.schema_name == connection.schema_name:
                instance.actor = user
                instance.actor_email = user.email or None
            else:  # a platform admin acting in a tenant's schema: not a user of that tenant
                instance.actor_email = f"{user.email or user.username} ({tenant.schema_name})"[:254]


def track(
    model: type[models.Model], *, exclude: tuple[str, ...] = (), m2m: tuple[str, ...] = ()
) -> None:
    """Record every create / update / delete of ``model`` in the audit log with its before and
    after: its own columns (never reverse relations, which would cost a query each) except
    ``exclude`` (secrets) and every secret kept encrypted at rest
    (:class:`weiyu.fields.EncryptedTextField`, left out whether named or not), and the
    many-to-many fields ``m2m`` (added / removed objects)."""
    secrets = tuple(
        f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)
    )
    exclude = (*exclude, *(name for name in secrets if name not in exclude))
    fields = [f.name for f in model._meta.concrete_fields if f.name not in exclude]
    auditlog.register(
        model, include_fields=fields, exclude_fields=list(exclude), m2m_fields=set(m2m)
    )


def register_models() -> None:
    """Register org's models (and auth groups) with the audit log: users without their password
    (nor the time of their last sign-in, which the sign-in event records), their groups and
    permissions and object permissions; departments and memberships; business calendars; the visitor limits."""
    track(User, exclude=("password", "last_login"), m2m=("groups", "user_permissions"))
    track(Group, m2m=("permissions",))
    from guardian.models import UserObjectPermission  # an app's models: after loading

    # object permissions granted and withdrawn (a supervisor's workgroups, kefu.supervision)
    track(UserObjectPermission)
    from django_otp.plugins.otp_totp.models import TOTPDevice  # an app's models: after loading

    # authenticators: added, confirmed, renamed or removed (a lost phone) — never their key, nor
    # the counters every sign-in moves
    track(
        TOTPDevice,
        exclude=tuple(
            f.name
            for f in TOTPDevice._meta.concrete_fields
            if f.name not in ("id", "user", "name", "confirmed")
        ),
    )
    # single sign-on's settings, never the client secret
    track(SingleSignOn, exclude=("client_secret",))
    # LDAP directory settings, never the bind password (nor what each sync writes back)
    track(LdapDirectory, exclude=("bind_password", "last_sync_at", "last_report"))
    for model in (
        Department,
        DepartmentMember,
        BusinessCalendar,
        BusinessHours,
        Holiday,
        VisitorLimits,
    ):
        track(model)


def _username_target(username: object) -> models.Model | type[models.Model]:
    """The user a sign-in named, if there is one; else the user model (an unknown name)."""
    if isinstance(username, str) and username:
        user = User.objects.filter(username=username[:150]).first()
        if user is not None:
            return user
    return User


def _signed_in(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # how: "sso" for a single sign-on (org.sso_views sets it on the request); passwords say nothing
    method = getattr(request, "weiyu_sign_in_method", None)
    audit_record(
        actor=user,
        action=SIGN_IN,
        target=user,
        data={"method": method} if method else None,
        ip=request_ip(request),
    )


def _signed_out(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:  # no one was signed in
        audit_record(actor=user, action=SIGN_OUT, target=user, ip=request_ip(request))


def _sign_in_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = credentials.get("username")
    username = username[:150] if isinstance(username, str) else ""
    audit_record(
        actor=None,
        action=SIGN_IN_FAILED,
        target=_username_target(username),
        data={"username": username},
        ip=request_ip(request),
    )


def _locked_out(
    sender: object, request: HttpRequest | None = None, username: object = None, **kwargs: Any
) -> None:
    username = username[:150] if isinstance(username, str) else ""
    audit_record(
        actor=None,
        action=LOCKED_OUT,
        target=_username_target(username),
        data={"username": username},
        ip=request_ip(request),
    )


def _password_saved(sender: type[User], instance: User, **kwargs: Any) -> None:
    """A user saved after ``set_password`` (by themselves, an admin or a command): Django keeps
    the new password in ``_password`` until ``save()`` returns. Recorded without it."""
    if getattr(instance, "_password", None) is not None and not kwargs.get("raw"):
        audit_record(actor=None, action=PASSWORD_SET, target=instance)


def connect_signals() -> None:
    """Record sign-in, sign-out and failed sign-in (Django's auth signals), lock-outs
    (django-axes' ``user_locked_out``) and passwords set. Called once from ``OrgConfig.ready``."""
    from axes.signals import user_locked_out
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

    user_logged_in.connect(_signed_in, dispatch_uid="org-audit-sign-in")
    user_logged_out.connect(_signed_out, dispatch_uid="org-audit-sign-out")
    user_login_failed.connect(_sign_in_failed, dispatch_uid="org-audit-sign-in-failed")
    user_locked_out.connect(_locked_out, dispatch_uid="org-audit-locked-out")
    post_save.connect(_password_saved, sender=User, dispatch_uid="org-audit-password-set")
