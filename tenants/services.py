"""Provisioning tenants (TEN-1)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone, translation
from django.utils.crypto import get_random_string
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context, tenant_context

from tenants import mail, pool, quotas, template
from tenants.models import Domain, Plan, Tenant
from weiyu.errors import ServiceError
from weiyu.tenant_hosts import routes_changed_on_commit

logger = logging.getLogger(__name__)

SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
RESERVED_SCHEMAS = {"public", "information_schema"}


def _tenant_schema_provision(*, tenant: Tenant) -> None:
    """Create and save ``tenant`` with its schema: a spare schema of the pool renamed when one is
    ready (tenants/pool.py; a worker then makes another), else a copy of the template when the
    template is current, else migrated from scratch (about a second, more with every migration),
    saying why in the log. Call inside ``transaction.atomic()``; the schema goes away (a spare
    back to the pool) with a rollback."""
    started = time.monotonic()
    schema = template.template_schema()
    pool.spares_fill_later()
    if (spare := pool.spare_take(target=tenant.schema_name)) is not None:
        how = f"renamed from spare {spare}"
    else:
        if not template.template_lock_try():
            reason = "migrate_schemas is refreshing the template schema"
        else:
            reason = template.template_stale_reason()
        if reason is None:
            template.schema_clone(source=schema, target=tenant.schema_name)
            how = f"cloned from {schema}"
        else:
            logger.warning(
                "tenant %s: migrating its schema from scratch: %s", tenant.schema_name, reason
            )
            how = "migrated"
    # with a renamed or copied schema django-tenants only records the tenant; else it creates
    # and migrates the schema inside this transaction
    tenant.save()
    logger.info(
        "tenant %s: schema %s in %.0f ms",
        tenant.schema_name,
        how,
        (time.monotonic() - started) * 1000,
    )


def _validate(name: str, schema_name: str, domain: str) -> None:
    if not name.strip():
        raise ServiceError("invalid", _("The tenant needs a name."), field="name")
    if (
        not SCHEMA_RE.match(schema_name)
        or schema_name in RESERVED_SCHEMAS
        or schema_name.startswith("pg_")
    ):
        raise ServiceError(
            "invalid",
            _(
                "Schema names are 2-63 characters: a lower-case letter, then lower-case letters, digits or _ "
                "(not 'public' and not starting with 'pg_')."
            ),
            field="schema_name",
        )
    if not DOMAIN_RE.match(domain):
        raise ServiceError(
            "invalid",
            _("'%(domain)s' is not a valid host name.") % {"domain": domain},
            field="domain",
        )
    if Tenant.objects.filter(schema_name=schema_name).exists():
        raise ServiceError(
            "conflict",
            _("Schema '%(schema)s' is taken.") % {"schema": schema_name},
            field="schema_name",
        )
    if Domain.objects.filter(domain=domain).exists():
        raise ServiceError(
            "conflict", _("Domain '%(domain)s' is taken.") % {"domain": domain}, field="domain"
        )


def _validate_admin(username: str, password: str, email: str = "") -> None:
    user_model = get_user_model()
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise ServiceError("invalid", " ".join(exc.messages), field="admin_email") from exc
    if not username or not password:
        raise ServiceError(
            "invalid", _("The first administrator needs a username and a password."), field="admin"
        )
    max_length = user_model._meta.get_field("username").max_length
    try:
        user_model.username_validator(username)
    except ValidationError as exc:
        raise ServiceError("invalid", " ".join(exc.messages), field="admin_username") from exc
    if len(username) > max_length:
        raise ServiceError(
            "invalid",
            _("The username is longer than %(limit)d characters.") % {"limit": max_length},
            field="admin_username",
        )


def public_tenant_ensure(*, domains: list[str]) -> Tenant:
    """The ``public`` tenant (marketing site and platform admin) with the given host names."""
    tenant, _created = Tenant.objects.get_or_create(
        schema_name=settings.PUBLIC_SCHEMA_NAME, defaults={"name": "Weiyu"}
    )
    for index, host in enumerate(domains):
        Domain.objects.get_or_create(
            domain=host, defaults={"tenant": tenant, "is_primary": index == 0}
        )
    return tenant


def tenant_create(
    *,
    name: str,
    schema_name: str,
    domain: str,
    admin_username: str,
    admin_password: str = "",
    admin_email: str = "",
    admin_password_hash: str = "",
) -> Tenant:
    """Create a tenant: its schema, its primary domain, and its first administrator.

    The schema is a spare schema of the pool renamed (tenants/pool.py) when one is ready, else a
    copy of the template schema (``settings.TENANT_TEMPLATE_SCHEMA``) when that is migrated to
    exactly this code's migrations, else it is migrated from scratch (slower; the log says why).
    Either way it is the same schema (``tests/tenants/test_template.py``).

    The administrator's password is ``admin_password`` (hashed here, ~0.2 s of CPU) or, already
    hashed, ``admin_password_hash`` (as ``make_password`` makes it; stored as it is), one of the
    two being required.

    ``schema_name`` must match ``[a-z][a-z0-9_]{1,62}``; ``domain`` is a bare host name
    (``acme.localhost``, no port). Raises ``ServiceError``: ``invalid`` (bad name, schema, domain,
    admin credentials or e-mail address) or ``conflict`` (schema or domain taken). On any error
    nothing is left behind.
    """
    schema_name = schema_name.strip().lower()
    domain = domain.strip().lower()
    _validate(name, schema_name, domain)
    admin_email = admin_email.strip()
    _validate_admin(admin_username.strip(), admin_password or admin_password_hash, admin_email)
    with transaction.atomic():
        tenant = Tenant(name=name.strip(), schema_name=schema_name)
        _tenant_schema_provision(tenant=tenant)
        Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
        with tenant_context(tenant):
            user_model = get_user_model()
            admin = user_model.objects.create_superuser(
                username=admin_username.strip(),
                email=admin_email,
                password=admin_password or None,  # None: no hash computed, replaced below
                role="admin",
            )
            if not admin_password:
                user_model.objects.filter(pk=admin.pk).update(password=admin_password_hash)
    return tenant


#: length of the one-time password :func:`tenant_provision` makes (letters and digits, ~119 bits)
ONE_TIME_PASSWORD_LENGTH = 20


def schema_name_for(domain: str) -> str:
    """A schema name derived from a host name: its first label, lower case, ``-`` → ``_``, with a
    ``t`` in front when it does not start with a letter (``acme-shop.example.com`` →
    ``acme_shop``). Not checked for being free: :func:`tenant_create` does that."""
    label = domain.strip().lower().split(".")[0].replace("-", "_")
    label = re.sub(r"[^a-z0-9_]", "", label)[:62]
    if not label[:1].isalpha():
        label = f"t{label}"[:62]
    return label


def tenant_provision(
    *, name: str, domain: str, admin_username: str, admin_email: str = "", schema_name: str = ""
) -> tuple[Tenant, str]:
    """Create a tenant as the platform admin's add form does: :func:`tenant_create` with a
    one-time password for its first administrator, made here and returned so it can be shown
    once (it is stored only as a hash). ``schema_name`` defaults to :func:`schema_name_for`
    ``domain``. Returns ``(tenant, password)``; raises ``ServiceError`` as :func:`tenant_create`
    (``invalid`` or ``conflict``, with ``field`` one of ``name``, ``schema_name``, ``domain``,
    ``admin_username``), nothing left behind."""
    password = get_random_string(ONE_TIME_PASSWORD_LENGTH)
    tenant = tenant_create(
        name=name,
        schema_name=schema_name.strip() or schema_name_for(domain),
        domain=domain,
        admin_username=admin_username,
        admin_password=password,
        admin_email=admin_email.strip(),
    )
    return tenant, password


#: where a set-password link points, under the tenant's address (weiyu/urls.py serves it)
INVITATION_PATH = "/admin/set-password/{uid}/{token}/"


def tenant_admin_invite(*, tenant: Tenant, username: str, base_url: str, language: str) -> None:
    """E-mail the tenant's administrator ``username`` an invitation with a link to set their
    password in the tenant's back office (``base_url`` = ``scheme://host[:port]`` of the tenant),
    in ``language``; a worker sends it once the current transaction commits
    (``tenants.tasks.admin_invitation_email_task``). Nothing is sent to a user without an
    e-mail address."""
    args = (tenant.schema_name, username, base_url, language)
    transaction.on_commit(lambda: admin_invitation_email_task.delay(*args))


def admin_invitation_send(*, schema: str, username: str, base_url: str, language: str) -> bool:
    """Compose and send one invitation (the body of ``admin_invitation_email_task``): the
    set-password link is made now, with Django's password-reset tokens (valid
    ``PASSWORD_RESET_TIMEOUT`` seconds, three days by default, and only until the password
    changes or the user signs in). Returns whether a mail was sent (no user or no address:
    False)."""
    with schema_context(schema):
        tenant = Tenant.objects.get(schema_name=schema)
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None or not user.email:
            return False
        link = base_url.rstrip("/") + INVITATION_PATH.format(
            uid=urlsafe_base64_encode(force_bytes(user.pk)),
            token=default_token_generator.make_token(user),
        )
        with translation.override(language):
            body = _(
                "You are the administrator of %(company)s on Weiyu.\n\n"
                "Choose your password here (the link works once, for %(days)d days):\n"
                "%(link)s\n\n"
                "Then sign in to your back office at %(admin)s with the username "
                "%(username)s. It shows you how to put a chat on your website, invite your "
                "agents and add answers to common questions."
            ) % {
                "company": tenant.name,
                "days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
                "link": link,
                "admin": f"{base_url.rstrip('/')}/admin/",
                "username": user.username,
            }
            mail.mail_send(
                subject=_("Your Weiyu back office for %(company)s") % {"company": tenant.name},
                body=body,
                to=[user.email],
            )
    return True


# Defined beside the service it runs, so this module enqueues it without importing tenants.tasks
# (which re-exports it under this name).
@shared_task(
    name="tenants.tasks.admin_invitation_email_task",
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=8,
)
def admin_invitation_email_task(schema: str, username: str, base_url: str, language: str) -> bool:
    """E-mail a new tenant's administrator their set-password invitation
    (:func:`admin_invitation_send`); SMTP errors retry with back-off. Returns whether a mail was
    sent."""
    return admin_invitation_send(
        schema=schema, username=username, base_url=base_url, language=language
    )


# Platform admin writes (tenants/admin.py calls these; it writes no rows itself).


def tenants_suspend(*, tenant_ids: Iterable[int], reason: str = "platform") -> int:
    """Suspend the tenants with these ids (the ``public`` tenant never), ``reason`` being
    ``platform`` or ``trial_ended`` (``Tenant.suspended_reason``): their staff see a page saying
    so, their API answers ``403 suspended``, their websockets are refused (open sockets within
    the 30 s tenant cache of ``weiyu.asgi_tenancy``), and their widget offers only the
    leave-a-message form (tenants.middleware), from their next request on in every web process
    (weiyu.tenant_hosts). A tenant scheduled for deletion keeps that reason
    (tenants.lifecycle). Returns how many tenants were marked suspended."""
    with transaction.atomic():
        routes_changed_on_commit()
        return (
            Tenant.objects.filter(pk__in=list(tenant_ids), delete_after__isnull=True)
            .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
            .update(is_active=False, suspended_reason=reason)
        )


def tenants_resume(*, tenant_ids: Iterable[int]) -> int:
    """Make the tenants with these ids reachable again. A trial that has ended is lifted
    (``trial_ends_at`` cleared), else the trial beat would suspend the tenant again, and a
    scheduled deletion is cancelled (``delete_after`` cleared). Returns how many were marked
    active."""
    ids = list(tenant_ids)
    with transaction.atomic():
        routes_changed_on_commit()
        Tenant.objects.filter(pk__in=ids, trial_ends_at__lte=timezone.now()).update(
            trial_ends_at=None
        )
        return Tenant.objects.filter(pk__in=ids).update(
            is_active=True, suspended_reason="", delete_after=None
        )


def trials_expire(*, now: dt.datetime | None = None) -> int:
    """Suspend every active tenant whose trial has ended (``trial_ends_at`` passed) with reason
    ``trial_ended`` (beat: ``tenants.tasks.trials_expire_task``, every minute). Returns how many
    were suspended."""
    now = now or timezone.now()
    ids = list(
        Tenant.objects.filter(is_active=True, trial_ends_at__lte=now)
        .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .values_list("pk", flat=True)
    )
    if ids:
        logger.info("trials ended: suspending %d tenants", len(ids))
    return tenants_suspend(tenant_ids=ids, reason="trial_ended") if ids else 0


def tenant_save(*, tenant: Tenant) -> Tenant:
    """Store a tenant edited in the platform admin (its add form uses :func:`tenant_provision`).
    A new one would get its schema created and migrated (``Tenant.auto_create_schema``), inside
    this transaction, without domain or administrator: create tenants with
    :func:`tenant_create`."""
    with transaction.atomic():
        tenant.save()
    quotas.forget(tenant.schema_name)
    return tenant


def plan_save(*, plan: Plan) -> Plan:
    """Store a plan edited in the platform admin; this process reads it at once, the others
    within ``tenants.quotas.CACHE_S`` seconds."""
    with transaction.atomic():
        plan.save()
    quotas.forget()
    return plan


def tenant_delete(*, tenant: Tenant) -> None:
    """Remove a tenant's row and its domains; its schema and data stay in the database
    (``Tenant.auto_drop_schema`` is off), so nothing is lost by a wrong click."""
    with transaction.atomic():
        tenant.delete()


def domain_save(*, domain: Domain) -> Domain:
    """Store a host name of a tenant. A tenant's first domain becomes its primary one, and
    marking one primary unmarks the tenant's others (django-tenants' ``DomainMixin.save``)."""
    with transaction.atomic():
        domain.save()
    return domain


def domain_delete(*, domain: Domain) -> None:
    """Remove a host name: requests for it stop reaching the tenant."""
    domain.delete()
