"""Celery tasks of the tenants app. The e-mail tasks are defined beside their services
(:func:`tenants.services.admin_invitation_email_task`,
:func:`tenants.signup.signup_verification_email_task`,
:func:`tenants.pool.spares_fill_task`, which enqueue them) under their names
here, and re-exported, as kefu does with its own."""

from __future__ import annotations

import logging

from celery import shared_task
from django_tenants.utils import tenant_context

from tenants import fanout, lifecycle, quotas, services, signup
from tenants.fanout import fanout_chunk_task
from tenants.models import Tenant
from tenants.pool import spares_fill_task
from tenants.services import admin_invitation_email_task
from tenants.signup import signup_verification_email_task
from weiyu.errors import ServiceError

__all__ = [
    "admin_invitation_email_task",
    "fanout_chunk_task",
    "signup_verification_email_task",
    "signups_purge_task",
    "spares_fill_task",
    "tenant_export_task",
    "tenants_delete_due_task",
    "trials_expire_task",
    "usage_rollup_all_task",
    "usage_rollup_task",
]

logger = logging.getLogger(__name__)


@shared_task(name="tenants.tasks.trials_expire_task")
def trials_expire_task() -> int:
    """Beat, every minute: suspend the tenants whose trial has ended
    (:func:`tenants.services.trials_expire`). Returns how many."""
    return services.trials_expire()


@shared_task(name="tenants.tasks.signups_purge_task")
def signups_purge_task() -> int:
    """Beat, hourly: delete sign-ups never verified whose link has expired
    (:func:`tenants.signup.signups_purge`). Returns how many."""
    return signup.signups_purge()


@shared_task(name="tenants.tasks.usage_rollup_task")
def usage_rollup_task(schema: str) -> bool:
    """Copy one tenant's usage counters of this month into its ``Usage`` row
    (:func:`tenants.quotas.usage_rollup`); False when the tenant is gone."""
    tenant = Tenant.objects.filter(schema_name=schema).first()
    if tenant is None:
        return False
    with tenant_context(tenant):
        quotas.usage_rollup(tenant)
    return True


@shared_task(name="tenants.tasks.usage_rollup_all_task")
def usage_rollup_all_task() -> int:
    """Beat (``WEIYU_USAGE_ROLLUP_INTERVAL_S``, 300 s): :func:`usage_rollup_task` for every
    active tenant, in chunks (:func:`tenants.fanout.fanout`; a tenant that fails is logged and
    the others go on). Returns how many tenants."""
    return fanout.fanout("tenants.tasks.usage_rollup_task")


@shared_task(name="tenants.tasks.tenants_delete_due_task")
def tenants_delete_due_task() -> int:
    """Beat, hourly: delete the tenants whose scheduled deletion is due, each after a final
    archive (:func:`tenants.lifecycle.tenants_delete_due`). Returns how many."""
    return lifecycle.tenants_delete_due()


@shared_task(name="tenants.tasks.tenant_export_task")
def tenant_export_task(schema: str) -> int | None:
    """An export asked for in the platform admin (:func:`tenants.lifecycle.tenant_export`):
    returns the archive's id, or None when the tenant is gone. A failure is recorded on the
    archive."""
    try:
        return lifecycle.tenant_export(schema=schema).pk
    except ServiceError:
        logger.warning("export of %s: no such tenant", schema)
        return None
