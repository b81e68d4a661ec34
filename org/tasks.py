"""Celery tasks of the org app, defined beside their services (or here, when thin) and
re-exported so the worker finds them."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django_tenants.utils import schema_context

from org.passwords import password_reset_email_task

__all__ = ["password_reset_email_task", "push_alert_task"]


@shared_task
def push_alert_task(schema: str, alert: dict[str, Any]) -> int:
    """One alert of :func:`org.alerts.alert` (``alert``: its ``kind``, ``user_ids``, ``title``,
    ``body``, ``params`` and ``url``), pushed in the tenant's schema
    (:func:`org.alerts.alert_deliver`). Returns how many pushes the push services accepted."""
    from org.alerts import alert_deliver

    with schema_context(schema):
        return alert_deliver(**alert)
