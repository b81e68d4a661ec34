"""Deploy checks of the platform (``manage.py check --deploy``, docs/deploy.md).

``tenants.E001``: in production (``WEIYU_ENV=production``) no demo tenant may exist: the demo's
accounts (``admin``, ``alice``, ``bob``, ``carol`` and the platform admin ``platform``) share one
password that ``manage.py demo_setup`` printed or kept in a file, and its widget is open to anyone.
``tenants.W001``: ``check --deploy`` on settings without the production profile.
``tenants.E002``: in production ``WEIYU_FIELD_KEYS`` must be set: without it the key that encrypts
secrets at rest (weiyu/fields.py) is derived from ``SECRET_KEY``, and both leak together.
``tenants.E003``: in production ``WEIYU_VAPID_PRIVATE_KEY`` must be set: otherwise each server
signs web push alerts (org.push) with a key of its own, and browsers subscribed with another
server's key get nothing from it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError, connection

from tenants.models import Tenant

#: the schema ``manage.py demo_setup`` creates its demo tenant in
DEMO_SCHEMA = "demo"


@register(Tags.security, deploy=True)
def demo_tenant_in_production(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    """An error when the demo tenant exists in production mode; a warning when the production
    profile is off. Skipped (no message) when the database cannot be reached."""
    if not settings.PRODUCTION:
        return [
            Warning(
                "WEIYU_ENV is not 'production': cookies are not Secure, there is no HSTS and no "
                "Content-Security-Policy.",
                hint="Set WEIYU_ENV=production on the servers (docs/deploy.md).",
                id="tenants.W001",
            )
        ]
    try:
        connection.set_schema_to_public()
        demo = Tenant.objects.filter(schema_name=DEMO_SCHEMA).first()
    except DatabaseError:
        return []
    if demo is None:
        return []
    return [
        Error(
            f"The demo tenant {demo.name!r} (schema {DEMO_SCHEMA!r}) exists in production: its "
            "accounts share the demo password and its widget is open to anyone.",
            hint=(
                "Delete it (platform admin → Tenants, or `manage.py delete_tenant "
                f"--schema={DEMO_SCHEMA}`), and the platform admin 'platform' the demo made."
            ),
            obj=demo,
            id="tenants.E001",
        )
    ]


@register(Tags.security, deploy=True)
def field_keys_in_production(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An error when the production profile runs without ``WEIYU_FIELD_KEYS``."""
    if not settings.PRODUCTION or settings.WEIYU_FIELD_KEYS:
        return []
    return [
        Error(
            "WEIYU_FIELD_KEYS is not set: secrets at rest are encrypted with a key derived from "
            "SECRET_KEY.",
            hint=(
                "Set WEIYU_FIELD_KEYS to a Fernet key (docs/security.md, 'Secrets at rest'); "
                "with existing data, run `manage.py rotate_field_keys` after adding it."
            ),
            id="tenants.E002",
        )
    ]


@register(Tags.security, deploy=True)
def vapid_key_in_production(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An error when the production profile runs without ``WEIYU_VAPID_PRIVATE_KEY``."""
    if not settings.PRODUCTION or settings.WEIYU_VAPID_PRIVATE_KEY:
        return []
    return [
        Error(
            "WEIYU_VAPID_PRIVATE_KEY is not set: each server would sign web push alerts with a "
            "key of its own, kept in its .data/ folder.",
            hint=(
                "Generate one key pair for the platform (docs/operations.md, 'Web push') and "
                "set WEIYU_VAPID_PRIVATE_KEY on every web and worker server."
            ),
            id="tenants.E003",
        )
    ]
