"""Celery tasks of tickets: thin wrappers that enter the tenant's schema and call one service.

The SLA scanner's rules (exactly once per warning, breach and escalation step) live in
:mod:`tickets.services.sla`; building and sending a reply e-mail in :mod:`tickets.services.email`.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone
from django_tenants.utils import get_tenant_model, schema_context

from kefu.channels.base import DeliveryError
from tickets.services import email, sla


@shared_task
def sla_scan_task(schema: str) -> dict[str, int]:
    """Scan one tenant now (see :func:`tickets.services.sla.sla_scan`)."""
    with schema_context(schema):
        return sla.sla_scan(now=timezone.now())


@shared_task
def sla_scan_all_task() -> int:
    """Beat (every 10 s): one :func:`sla_scan_task` per active tenant; returns how many."""
    schemas = list(
        get_tenant_model()
        .objects.filter(is_active=True)
        .exclude(schema_name="public")
        .values_list("schema_name", flat=True)
    )
    for schema in schemas:
        sla_scan_task.delay(schema)
    return len(schemas)


@shared_task(autoretry_for=(OSError, DeliveryError), retry_backoff=30, max_retries=8)
def reply_email_task(schema: str, comment_id: int) -> bool:
    """E-mail one public staff reply (see :func:`tickets.services.email.reply_email_send`); SMTP
    errors (``OSError``) retry with back-off. Returns whether a mail was sent."""
    with schema_context(schema):
        return email.reply_email_send(comment_id=comment_id)
