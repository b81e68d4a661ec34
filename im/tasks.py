"""Celery tasks of the messaging core. Thin: they enter a tenant and call one function."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django_tenants.utils import schema_context

from im.attachments import attachment_orphans_purge
from tenants import fanout


@shared_task
def attachment_orphans_purge_task(schema: str) -> int:
    """One tenant's uploads never sent, older than ``settings.WEIYU_ORPHAN_UPLOAD_HOURS``
    (:func:`im.attachments.attachment_orphans_purge`); returns how many were deleted."""
    with schema_context(schema):
        return attachment_orphans_purge(
            older_than=dt.timedelta(hours=settings.WEIYU_ORPHAN_UPLOAD_HOURS)
        )


@shared_task
def attachment_orphans_purge_all_task() -> int:
    """Beat (hourly): :func:`attachment_orphans_purge_task` for every active tenant, in chunks
    (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("im.tasks.attachment_orphans_purge_task")
