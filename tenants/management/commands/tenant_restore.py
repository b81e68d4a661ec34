"""``manage.py tenant_restore FILE --schema NAME --domain HOST [--name NAME]``: a new tenant
with the contents of a ``tenant_backup`` file (tenants.backup; docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import backup
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = "Create a new tenant from a file written by tenant_backup (rows, users and files)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", help="The .tar.gz written by tenant_backup")
        parser.add_argument("--schema", required=True, help="Schema of the new tenant")
        parser.add_argument("--domain", required=True, help="Host name of the new tenant")
        parser.add_argument("--name", default="", help="Display name (default: the backup's)")

    def handle(self, *args: Any, **options: Any) -> None:
        archive = Path(options["archive"])
        if not archive.is_file():
            raise CommandError(f"No such file: {archive}")
        try:
            tenant = backup.tenant_restore(
                archive=archive,
                schema=options["schema"],
                domain=options["domain"],
                name=options["name"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored tenant {tenant.name!r} (schema {tenant.schema_name}) at "
                f"{options['domain']}"
            )
        )
