"""``manage.py sso_password_sign_in <schema> on|off``: the platform's break-glass for a tenant
whose single sign-on provider is down or misconfigured (docs/security.md, "Single sign-on")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from org.models import SingleSignOn
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Turn a tenant's password sign-in back on (or off again) when its single sign-on "
        "provider cannot be used; written to the tenant's audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("schema", help="The tenant's schema, e.g. acme")
        parser.add_argument("state", choices=["on", "off"], help="on: passwords work again")

    def handle(self, *args: Any, **options: Any) -> None:
        schema = options["schema"]
        if not Tenant.objects.filter(schema_name=schema).exclude(schema_name="public").exists():
            raise CommandError(f"No tenant with schema {schema!r}.")
        with schema_context(schema):
            row = SingleSignOn.current()
            row.password_sign_in_off = options["state"] == "off"
            row.save(update_fields=["password_sign_in_off"])  # in the audit log as a change
        self.stdout.write(
            self.style.SUCCESS(f"Password sign-in is {options['state']} for {schema}.")
        )
