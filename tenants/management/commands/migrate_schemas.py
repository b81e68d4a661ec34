"""``manage.py migrate_schemas``: django-tenants' command, then the template schema too.

Migrating every schema (no ``--schema``, no ``--shared``) also creates the template schema new
tenants are cloned from (``settings.TENANT_TEMPLATE_SCHEMA``, tenants/template.py) and migrates it
like a tenant, so each deploy leaves it current. While it migrates, new tenants are migrated from
scratch instead of cloned (they do not wait).
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)

from tenants import template


class Command(MigrateSchemasCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **options)
        schema = template.template_schema()
        every_tenant = self.schema_name in (None, "", self.PUBLIC_SCHEMA_NAME)
        if schema is None or not self.sync_tenant or not every_tenant:
            return
        with template.template_refresh_lock():
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(schema)}")
            executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)
            executor.run_migrations(tenants=[schema])
