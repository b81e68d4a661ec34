"""``manage.py import_directory <file.csv|file.xlsx> --schema <tenant> [--dry-run]
[--keep-missing]``: people and departments from an HR export (org.directory; docs/operations.md,
"Directory sync")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from org import directory
from tenants.models import Tenant
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Import people and departments from a CSV or XLSX file into a tenant: create and update "
        "people by external id, disable those missing from the file, report errors by line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="A .csv (UTF-8) or .xlsx file with a header row")
        parser.add_argument("--schema", required=True, help="The tenant's schema, e.g. acme")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and report only; change nothing"
        )
        parser.add_argument(
            "--keep-missing",
            action="store_true",
            help="Do not disable synced people who are missing from the file",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        schema = options["schema"]
        if not Tenant.objects.filter(schema_name=schema).exclude(schema_name="public").exists():
            raise CommandError(f"No tenant with schema {schema!r}.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        with schema_context(schema):
            try:
                rows = directory.read_table(name=path.name, data=data)
            except ServiceError as exc:
                raise CommandError(exc.message) from exc
            report = directory.directory_import(
                rows=rows, dry_run=options["dry_run"], disable_missing=not options["keep_missing"]
            )
        prefix = "Dry run: would have " if report.dry_run else ""
        self.stdout.write(
            f"{prefix}created {len(report.created)}, updated {len(report.updated)}, "
            f"unchanged {len(report.unchanged)}, disabled {len(report.disabled)}; "
            f"{len(report.errors)} errors"
        )
        for external_id in report.disabled:
            self.stdout.write(f"  disabled: {external_id}")
        for line, message in report.errors:
            self.stdout.write(self.style.ERROR(f"  line {line}: {message}"))
