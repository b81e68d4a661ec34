"""``manage.py migrate_schemas``: django-tenants' command, then the template schema too.

Migrating every schema (no ``--schema``, no ``--shared``) also creates the template schema new
tenants are cloned from (``settings.TENANT_TEMPLATE_SCHEMA``, tenants/template.py) and migrates it
like a tenant, so each deploy leaves it current. While it migrates, new tenants are migrated from
scratch instead of cloned (they do not wait). Then the spare schemas (tenants/pool.py) copied from
the previous template are dropped and the pool is filled again from the new one.

With many tenants, running Django's ``migrate`` in every schema costs seconds each even when
nothing is to be done. So a plain run over every tenant first reads which tenant schemas lack a
migration of this code (:func:`tenants.template.schemas_behind`, one statement per 200 schemas)
and migrates only those, printing ``Tenant schemas: N up to date, K to migrate`` and each one's
``[i/K]`` progress — an interrupted run, started again, goes on with the schemas still behind.
``--executor=multiprocessing`` (``TENANT_MULTIPROCESSING_MAX_PROCESSES``) migrates them in
parallel. ``--all-schemas`` runs ``migrate`` in every tenant schema, as django-tenants does;
``--schema``, an app label or migration name, ``--plan``, ``--check``, ``--fake``,
``--fake-initial`` and ``--prune`` always do.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)
from django_tenants.utils import get_tenant_migration_order

from tenants import pool, template
from tenants.models import Tenant

#: options that need Django's migrate in every schema (they report or change what is recorded)
_EVERY_SCHEMA = ("plan", "check_unapplied", "fake", "fake_initial", "prune", "all_schemas")


class Command(MigrateSchemasCommand):
    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--all-schemas",
            action="store_true",
            help="Run migrate in every tenant schema, also those already up to date.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every_tenant = not options.get("schema_name") and not options.get("shared")
        skip_current = (
            every_tenant
            and not options.get("app_label")
            and not options.get("migration_name")
            and not any(options.get(name) for name in _EVERY_SCHEMA)
        )
        if skip_current:
            if not options.get("tenant"):
                super().handle(*args, **{**options, "shared": True, "tenant": False})
            self._tenants_behind(*args, **options)
        else:
            super().handle(*args, **options)
        schema = template.template_schema()
        if schema is None or not every_tenant:
            return
        with template.template_refresh_lock():
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(schema)}")
            options = {**options, "shared": False, "tenant": True}
            executor = GET_EXECUTOR_FUNCTION(codename=options.get("executor"))(args, options)
            executor.run_migrations(tenants=[schema])
        # spares copied from the old template are dropped and copied again from the new one
        connection.set_schema_to_public()
        filled = pool.spares_fill()
        if filled["dropped"] or filled["made"]:
            self.stdout.write(
                f"Spare schemas: {filled['dropped']} dropped, {filled['made']} copied"
            )

    def _tenants_behind(self, *args: Any, **options: Any) -> None:
        """Migrate the tenant schemas that lack a migration of this code, with progress."""
        connection.set_schema_to_public()
        tenants = Tenant.objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        if (order := get_tenant_migration_order()) is not None:
            tenants = tenants.order_by(*order)
        schemas = list(tenants.values_list("schema_name", flat=True))
        behind = template.schemas_behind(schemas)
        self.stdout.write(
            f"Tenant schemas: {len(schemas) - len(behind)} up to date, {len(behind)} to migrate"
        )
        if not behind:
            return
        started = time.monotonic()
        options = {**options, "shared": False, "tenant": True}
        executor = GET_EXECUTOR_FUNCTION(codename=options.get("executor"))(args, options)
        if executor.codename == "multiprocessing":
            # forked workers would share the pool's open connections (and its dead threads)
            connection.close_pool()
        executor.run_migrations(tenants=behind)
        self.stdout.write(
            f"Migrated {len(behind)} tenant schemas in {time.monotonic() - started:.1f} s"
        )
