"""Celery tasks of the messaging core. Thin: they enter a tenant and call one function."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django_tenants.utils import schema_context

from im.attachments import attachment_orphans_purge
from im.digest import unread_digest
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


@shared_task
def unread_digest_task(schema: str) -> int:
    """One tenant's due e-mail digests of unread messages (:func:`im.digest.unread_digest`);
    returns how many e-mails were sent."""
    with schema_context(schema):
        return unread_digest()


@shared_task
def unread_digest_all_task() -> int:
    """Beat (every ``WEIYU_DIGEST_INTERVAL_S``, 60 s): :func:`unread_digest_task` for every
    active tenant, in chunks (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("im.tasks.unread_digest_task")
