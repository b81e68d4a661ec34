"""``manage.py im_reindex [--schema S]``: rebuild the message search index (IM-9)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context
from tqdm import tqdm

from im.models import Message
from im.search import index_refresh


class Command(BaseCommand):
    help = "Recompute the search index of every message, for one tenant or all of them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schema", help="only this tenant's schema (default: every tenant)")
        parser.add_argument("--batch", type=int, default=2000, help="messages per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = get_tenant_model().objects.exclude(schema_name="public").order_by("schema_name")
        if options["schema"]:
            tenants = tenants.filter(schema_name=options["schema"])
            if not tenants.exists():
                raise CommandError(f"No tenant with schema {options['schema']!r}.")
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1.")
        for tenant in tenants:
            with schema_context(tenant.schema_name):
                total = Message.objects.count()
                done = 0
                with tqdm(
                    total=total, desc=tenant.schema_name, unit="msg", disable=total == 0
                ) as bar:
                    for count in index_refresh(batch=options["batch"]):
                        done += count
                        bar.update(count)
                self.stdout.write(f"{tenant.schema_name}: {done} messages indexed")
