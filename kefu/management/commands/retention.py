"""``manage.py retention [--schema NAME] [--dry-run]``: apply the tenants' data retention now
(kefu.privacy.retention_apply; beat does it daily)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import get_tenant_model, schema_context

from kefu import privacy


class Command(BaseCommand):
    help = (
        "Anonymise or delete the conversations each tenant's retention policy says are too old "
        "(--dry-run: only count them)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--schema", help="Only this tenant schema.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = get_tenant_model().objects.exclude(schema_name="public")
        if options["schema"]:
            tenants = tenants.filter(schema_name=options["schema"])
            if not tenants.exists():
                raise CommandError(f"No tenant with schema {options['schema']!r}.")
        verb = "would" if options["dry_run"] else "did"
        for tenant in tenants.order_by("schema_name"):
            with schema_context(tenant.schema_name):
                report = privacy.retention_apply(dry_run=options["dry_run"])
            if not report["days"]:
                self.stdout.write(f"{tenant.schema_name}: keeps everything (no retention set)")
                continue
            self.stdout.write(
                f"{tenant.schema_name}: {verb} {report['action']} {report['conversations']} "
                f"conversations closed more than {report['days']} days ago "
                f"({report['messages']} messages, {report['files']} files)"
            )
