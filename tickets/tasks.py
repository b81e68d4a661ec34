"""Celery tasks of tickets: thin wrappers that enter the tenant's schema and call one service.

The SLA scanner's rules (exactly once per warning, breach and escalation step) live in
:mod:`tickets.services.sla`; building and sending a reply e-mail in :mod:`tickets.services.email`.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.channels.base import DeliveryError
from tenants import fanout
from tickets.services import email, sla


@shared_task
def sla_scan_task(schema: str) -> dict[str, int]:
    """Scan one tenant now (see :func:`tickets.services.sla.sla_scan`); the tenant stays in the
    live ``sla`` set of :mod:`tenants.fanout` while it has running clocks."""
    with schema_context(schema):
        seen = fanout.live_seen("sla", schema)  # before looking: a mark made meanwhile stays
        done = sla.sla_scan(now=timezone.now())
        if sla.sla_clocks_live():
            fanout.live_add("sla", schema, renew=False)
        else:
            fanout.live_done("sla", schema, seen)
        return done


@shared_task
def sla_scan_all_task() -> int:
    """Beat (every ``SLA_SCAN_INTERVAL_S``, 10 s): :func:`sla_scan_task` for the tenants with
    live SLA clocks (every active tenant once a sweep), in chunks (:func:`tenants.fanout.fanout`);
    returns how many tenants."""
    return fanout.fanout("tickets.tasks.sla_scan_task", kind="sla")


@shared_task(autoretry_for=(OSError, DeliveryError), retry_backoff=30, max_retries=8)
def reply_email_task(schema: str, comment_id: int) -> bool:
    """E-mail one public staff reply (see :func:`tickets.services.email.reply_email_send`); SMTP
    errors (``OSError``) retry with back-off. Returns whether a mail was sent."""
    with schema_context(schema):
        return email.reply_email_send(comment_id=comment_id)
