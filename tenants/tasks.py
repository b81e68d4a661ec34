"""Celery tasks of the tenants app: thin wrappers over :mod:`tenants.services`."""

from __future__ import annotations

from celery import shared_task

from tenants import services


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def admin_invitation_email_task(schema: str, username: str, base_url: str, language: str) -> bool:
    """E-mail a new tenant's administrator their set-password invitation
    (:func:`tenants.services.admin_invitation_send`); SMTP errors retry with back-off. Returns
    whether a mail was sent."""
    return services.admin_invitation_send(
        schema=schema, username=username, base_url=base_url, language=language
    )
