"""Celery tasks of the org app, defined beside their services and re-exported here so the
worker finds them."""

from __future__ import annotations

from org.alerts import push_alert_task
from org.ldap_sync import ldap_sync_due_all_task, ldap_sync_due_task, ldap_sync_task
from org.passwords import password_reset_email_task

__all__ = [
    "ldap_sync_due_all_task",
    "ldap_sync_due_task",
    "ldap_sync_task",
    "password_reset_email_task",
    "push_alert_task",
]
