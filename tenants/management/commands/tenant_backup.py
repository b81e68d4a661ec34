"""``manage.py tenant_backup --schema NAME [--output FILE]``: one tenant (rows and files) as a
``.tar.gz`` (tenants.backup; docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tenants import backup
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = "Write one tenant (every row of its schema and its stored files) to a .tar.gz file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schema", required=True, help="The tenant's schema, e.g. acme")
        parser.add_argument(
            "--output", help="File to write (default: <schema>-<yyyymmdd-hhmmss>.tar.gz here)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        schema = options["schema"]
        output = Path(
            options["output"] or f"{schema}-{timezone.now():%Y%m%d-%H%M%S}.tar.gz"
        ).resolve()
        try:
            manifest = backup.tenant_backup(schema=schema, output=output)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {output}: {manifest['objects']} rows, {manifest['files']} files"
            )
        )
