"""``manage.py rotate_field_keys``: re-encrypt every secret at rest with the first key of
``WEIYU_FIELD_KEYS`` (weiyu/fields.py; docs/security.md, "Secrets at rest")."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django_tenants.utils import get_tenant_model, schema_context

from weiyu import fields


def encrypted_columns() -> list[tuple[str, str, list[str]]]:
    """``[(db_table, pk column, [encrypted columns])]`` over every installed model."""
    found = []
    for model in apps.get_models():
        columns = [
            f.column for f in model._meta.local_fields if isinstance(f, fields.EncryptedTextField)
        ]
        if columns and not model._meta.proxy and model._meta.managed:
            found.append((model._meta.db_table, model._meta.pk.column, columns))
    return found


class Command(BaseCommand):
    help = (
        "Re-encrypt the secrets kept in every tenant's tables with the first key of "
        "WEIYU_FIELD_KEYS, so older keys can be removed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--schema", help="Only this tenant schema.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = get_tenant_model().objects.exclude(schema_name="public")
        if options["schema"]:
            tenants = tenants.filter(schema_name=options["schema"])
            if not tenants.exists():
                raise CommandError(f"No tenant with schema {options['schema']!r}.")
        targets = encrypted_columns()
        total = 0
        schemas = [t.schema_name for t in tenants.order_by("schema_name")]
        if not options["schema"]:
            # the tenants' rows kept in the public schema (their SMTP passwords, tenants.mail)
            schemas.insert(0, "public")
        for schema_name in schemas:
            rewritten = 0
            with (
                schema_context(schema_name),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                for table, pk, columns in targets:
                    cursor.execute(
                        "SELECT to_regclass(%s) IS NOT NULL",
                        [f"{schema_name}.{table}"],
                    )
                    if not cursor.fetchone()[0]:
                        continue
                    names = ", ".join(connection.ops.quote_name(c) for c in columns)
                    cursor.execute(
                        # identifiers from the models' metadata, quoted
                        f"SELECT {connection.ops.quote_name(pk)}, {names} "  # noqa: S608
                        f"FROM {connection.ops.quote_name(table)} FOR UPDATE"
                    )
                    for row in cursor.fetchall():
                        try:
                            new = [fields.rotate(value or "") for value in row[1:]]
                        except fields.FieldKeyError as exc:
                            raise CommandError(
                                f"{schema_name}.{table} row {row[0]}: {exc}"
                            ) from exc
                        sets = ", ".join(f"{connection.ops.quote_name(c)} = %s" for c in columns)
                        cursor.execute(
                            f"UPDATE {connection.ops.quote_name(table)} SET {sets} "  # noqa: S608
                            f"WHERE {connection.ops.quote_name(pk)} = %s",
                            [*new, row[0]],
                        )
                        rewritten += 1
            total += rewritten
            self.stdout.write(f"{schema_name}: {rewritten} rows re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"{total} rows re-encrypted"))
