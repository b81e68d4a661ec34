"""``manage.py tenant_delete --schema NAME [--grace-days N | --now | --cancel]``: schedule,
cancel, or carry out the deletion of a tenant (tenants.lifecycle; docs/operations.md "Deleting a
tenant")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import lifecycle
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Schedule the deletion of a tenant after a grace period (it is suspended meanwhile), "
        "cancel it, or delete it now. Every deletion writes a final archive first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schema", required=True, help="The tenant's schema, e.g. acme")
        what = parser.add_mutually_exclusive_group()
        what.add_argument(
            "--grace-days",
            type=int,
            help="Days until the deletion (default WEIYU_TENANT_DELETE_GRACE_DAYS)",
        )
        what.add_argument(
            "--now",
            action="store_true",
            help="Delete at once: final archive, then schema, files, domains and row",
        )
        what.add_argument("--cancel", action="store_true", help="Cancel a scheduled deletion")

    def handle(self, *args: Any, **options: Any) -> None:
        schema = options["schema"]
        try:
            if options["cancel"]:
                lifecycle.tenant_deletion_cancel(schema=schema)
                self.stdout.write(self.style.SUCCESS(f"Deletion of {schema} cancelled; resumed."))
            elif options["now"]:
                archive = lifecycle.tenant_destroy(schema=schema)
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Deleted {schema}. Final archive: {archive.path} "
                        f"({archive.rows} rows, {archive.files} files, {archive.size_bytes} bytes)"
                    )
                )
            else:
                tenant = lifecycle.tenant_deletion_schedule(
                    schema=schema, grace_days=options["grace_days"]
                )
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{schema} is suspended and will be deleted after "
                        f"{tenant.delete_after:%Y-%m-%d %H:%M} UTC."
                    )
                )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
