"""``manage.py kbase_export --tenant acme --kb "FAQ" out.csv``: write FAQ items to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context

from kbase import importer
from kbase.models import FaqItem, KnowledgeBase


class Command(BaseCommand):
    help = "Export a knowledge base's FAQ items as CSV, JSON or JSONL (kbase_import reads them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the file to write (its extension picks the format)")
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--kb", required=True, help="knowledge base name (or id)")
        parser.add_argument("--format", choices=["csv", "json", "jsonl"], dest="fmt")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["path"])
        fmt = opts["fmt"] or path.suffix.lower().lstrip(".")
        if fmt not in ("csv", "json", "jsonl"):
            raise CommandError("Give --format csv, json or jsonl (or a file with that extension)")
        tenant = get_tenant_model().objects.filter(schema_name=opts["tenant"]).first()
        if tenant is None or tenant.schema_name == "public":
            raise CommandError(f"No such tenant: {opts['tenant']}")
        with schema_context(tenant.schema_name):
            kb = KnowledgeBase.objects.filter(name=opts["kb"]).first()
            if kb is None and opts["kb"].isdigit():
                kb = KnowledgeBase.objects.filter(pk=int(opts["kb"])).first()
            if kb is None:
                raise CommandError(f"No knowledge base {opts['kb']!r}")
            rows = [
                {
                    "id": item.external_id or f"faq-{item.pk}",
                    "category": item.category.name if item.category else "",
                    "question": item.question,
                    "answer": item.answer,
                }
                for item in FaqItem.objects.filter(kb=kb).select_related("category").order_by("pk")
            ]
        try:
            importer.write(rows, path, fmt)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"{len(rows)} items written to {path}"))
