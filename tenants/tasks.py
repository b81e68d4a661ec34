"""Celery tasks of the tenants app. The invitation task is defined beside its service
(:func:`tenants.services.admin_invitation_email_task`, which enqueues it) under its name here,
and re-exported, as kefu does with its own."""

from __future__ import annotations

from tenants.services import admin_invitation_email_task

__all__ = ["admin_invitation_email_task"]
