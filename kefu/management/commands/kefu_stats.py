"""``manage.py kefu_stats --tenant acme [--from 2026-11-01] [--to 2026-11-30]``: recompute the
customer-service statistics of a range of local days (default: the last 7) — e.g. after an
import or a change of time zone. The beat keeps today and yesterday current by itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django_tenants.utils import get_tenant_model, schema_context

from kefu import stats


class Command(BaseCommand):
    help = "Recompute customer-service statistics (KF-14) of a tenant for a range of days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's schema name")
        parser.add_argument("--from", dest="start", help="first local day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", help="last local day, YYYY-MM-DD (default today)")

    def handle(self, *args: Any, **opts: Any) -> None:
        schema = opts["tenant"]
        if not get_tenant_model().objects.filter(schema_name=schema).exists():
            raise CommandError(f"no tenant with schema {schema!r}")
        try:
            end = dt.date.fromisoformat(opts["end"]) if opts["end"] else timezone.localdate()
            start = (
                dt.date.fromisoformat(opts["start"])
                if opts["start"]
                else end - dt.timedelta(days=6)
            )
        except ValueError as exc:
            raise CommandError(f"dates are YYYY-MM-DD: {exc}") from exc
        if end < start or (end - start).days > 366:
            raise CommandError("--from must be before --to, at most 366 days apart")
        rows = 0
        with schema_context(schema):
            day = start
            while day <= end:
                rows += stats.rollup(day)
                day += dt.timedelta(days=1)
        self.stdout.write(f"{schema}: {start} to {end}, {rows} rows")
