"""Celery tasks of webhooks: thin wrappers that enter the tenant's schema and call a service."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import schema_context

from org.webhooks import services
from tenants import fanout


@shared_task
def webhook_event_task(schema: str, event_id: int) -> int:
    """Start delivering one recorded event: one pump per endpoint that receives it (run here, one
    after the other; a pump that must wait for a retry schedules itself). Returns the pumps."""
    with schema_context(schema):
        pumps = services.event_pumps(event_id=event_id)
    for endpoint_id, key in pumps:
        webhook_pump_task(schema, endpoint_id, key)
    return len(pumps)


@shared_task
def webhook_pump_task(schema: str, endpoint_id: int, key: str) -> None:
    """Send what is due for one endpoint and ordering key (:func:`services.delivery_pump`); when
    the head waits for a retry, run again after its delay."""
    with schema_context(schema):
        wait = services.delivery_pump(endpoint_id=endpoint_id, key=key)
    if wait is not None:
        webhook_pump_task.apply_async((schema, endpoint_id, key), countdown=max(wait, 0.05))


@shared_task
def webhook_due_scan_task(schema: str) -> int:
    """Pump every endpoint and key whose head is due and unheld (lost tasks, restarted workers)."""
    with schema_context(schema):
        pumps = services.due_pumps()
    for endpoint_id, key in pumps:
        webhook_pump_task.delay(schema, endpoint_id, key)
    return len(pumps)


@shared_task
def webhook_due_scan_all_task() -> int:
    """Beat (every minute): :func:`webhook_due_scan_task` for every active tenant, in chunks
    (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("org.webhooks.tasks.webhook_due_scan_task")
