"""``manage.py directory_ldap_sync --tenant <schema> [--dry-run]``: sync a tenant's people and
departments from its LDAP / Active Directory server now (org.ldap_sync; docs/operations.md,
"Directory sync")."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from org import ldap_sync
from org.models import LdapDirectory
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Sync a tenant's people and departments from its LDAP directory (Organisation → LDAP "
        "directory): create and update people by external id, disable those missing upstream."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's schema, e.g. acme")
        parser.add_argument(
            "--dry-run", action="store_true", help="Read and report only; change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        schema = options["tenant"]
        if (
            schema == settings.PUBLIC_SCHEMA_NAME
            or not Tenant.objects.filter(schema_name=schema).exists()
        ):
            raise CommandError(f"No tenant with schema {schema!r}.")
        with schema_context(schema):
            row = LdapDirectory.objects.order_by("pk").first()
            if row is None:
                raise CommandError(f"Tenant {schema!r} has no LDAP directory settings.")
            report = ldap_sync.ldap_sync(row=row, dry_run=options["dry_run"])
        if (
            report.errors
            and report.errors[0][0] == 0
            and not (report.created or report.updated or report.unchanged)
        ):
            raise CommandError(report.errors[0][1])
        prefix = "Dry run: would have " if report.dry_run else ""
        self.stdout.write(
            f"{prefix}created {len(report.created)}, updated {len(report.updated)}, "
            f"unchanged {len(report.unchanged)}, disabled {len(report.disabled)}; "
            f"{len(report.errors)} errors"
        )
        for external_id in report.disabled:
            self.stdout.write(f"  disabled: {external_id}")
        for line, message in report.errors:
            self.stdout.write(self.style.ERROR(f"  entry {line}: {message}"))
