"""``manage.py kbase_import --tenant acme --kb "FAQ" faq.json``: load FAQ items from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context
from tqdm import tqdm

from kbase import embeddings, importer, indexing, services
from kbase.models import KnowledgeBase
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Import FAQ items (question/answer/category) from CSV, JSON or JSONL into a tenant's "
        "knowledge base. Re-running updates items (matched by their id, else their question); "
        "bad rows are reported with their line number and the rest is imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the file to read")
        parser.add_argument("--tenant", required=True, help="the tenant's schema name")
        parser.add_argument("--kb", required=True, help="knowledge base name (or id)")
        parser.add_argument(
            "--format", default="auto", choices=["auto", "csv", "json", "jsonl"], dest="fmt"
        )
        parser.add_argument(
            "--create", action="store_true", help="create the knowledge base when it is missing"
        )
        parser.add_argument(
            "--public", action="store_true", help="with --create: make it public (help center)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["path"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        tenant = get_tenant_model().objects.filter(schema_name=opts["tenant"]).first()
        if tenant is None or tenant.schema_name == "public":
            raise CommandError(f"No such tenant: {opts['tenant']}")
        try:
            rows = list(importer.read(path, opts["fmt"]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
        to_embed: list[int] = []
        with schema_context(tenant.schema_name):
            kb = self._kb(opts)
            for row in tqdm(
                rows, desc="import", unit="item", disable=opts["no_progress"], file=self.stderr._out
            ):
                if row.error is None:
                    try:
                        item, outcome = services.faq_upsert(
                            kb=kb,
                            question=row.question,
                            answer=row.answer,
                            category=row.category,
                            external_id=row.external_id,
                            index_later=False,
                        )
                        counts[outcome] += 1
                        if outcome != "unchanged" or item.embedding is None:
                            to_embed.append(item.pk)
                        continue
                    except ServiceError as exc:
                        row.error = exc.message
                counts["failed"] += 1
                self.stderr.write(f"{path.name}, {row.where}: {row.error}")
            if to_embed and embeddings.available():
                with tqdm(
                    total=len(to_embed),
                    desc="semantic index",
                    unit="item",
                    disable=opts["no_progress"],
                    file=self.stderr._out,
                ) as bar:
                    indexing.embed("faq", to_embed, progress=bar.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"{kb.name}: {counts['created']} created, {counts['updated']} updated, "
                f"{counts['unchanged']} unchanged, {counts['failed']} failed"
            )
        )

    def _kb(self, opts: dict[str, Any]) -> KnowledgeBase:
        name = opts["kb"]
        kb = KnowledgeBase.objects.filter(name=name).first()
        if kb is None and name.isdigit():
            kb = KnowledgeBase.objects.filter(pk=int(name)).first()
        if kb is None:
            if not opts["create"]:
                raise CommandError(f"No knowledge base {name!r} (add --create to make it)")
            kb = KnowledgeBase.objects.create(
                name=name, kind=KnowledgeBase.Kind.FAQ, is_public=opts["public"]
            )
        return kb
