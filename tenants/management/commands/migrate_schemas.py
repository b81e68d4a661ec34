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
parallel, each worker process with its own connection. ``--all-schemas`` runs ``migrate`` in
every tenant schema, as django-tenants does; ``--schema``, an app label or migration name,
``--plan``, ``--check``, ``--fake``, ``--fake-initial`` and ``--prune`` always do.

On that path (and for the template) the work Django's ``migrate`` repeats in every schema
although it is the same for all is done once per process (issue 16, docs/benchmarks.md): the
system checks run once before the first schema, and the project state of the applied
migrations (every model rendered, ~40 % of a schema's time) is built once per set of applied
migrations and copied for each schema, as ``migrate`` itself copies it between its steps. A
schema whose migration fails is reported (``Tenant schema X failed: …`` and its traceback) and
the others go on; the command then exits with an error naming the failed schemas, which the
next run migrates again.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import time
import traceback
from collections.abc import Iterator
from typing import Any, ClassVar

from django.conf import settings
from django.core.management import CommandError
from django.core.management.commands import migrate as django_migrate
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import ProjectState
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)
from django_tenants.migration_executors.base import run_migrations
from django_tenants.utils import get_tenant_migration_order

from tenants import pool, template
from tenants.models import Tenant

#: options that need Django's migrate in every schema (they report or change what is recorded)
_EVERY_SCHEMA = ("plan", "check_unapplied", "fake", "fake_initial", "prune", "all_schemas")


class _StateOnceExecutor(MigrationExecutor):
    """Django's executor, except that the project state of the applied migrations is built
    (and its models rendered) once per process for each set of applied migrations, and each
    caller gets a copy (``ProjectState.clone``, which ``migrate`` itself uses to keep the state
    it hands to ``pre_migrate`` apart from the one it migrates). The state depends only on the
    code's migrations and which of them are applied, never on the schema."""

    _states: ClassVar[dict[frozenset, ProjectState]] = {}

    def _create_project_state(self, with_applied_migrations: bool = False) -> ProjectState:
        if not with_applied_migrations:
            return super()._create_project_state(with_applied_migrations=False)
        key = frozenset(self.loader.applied_migrations)
        if (state := self._states.get(key)) is None:
            state = super()._create_project_state(with_applied_migrations=True)
            state.apps  # noqa: B018 - rendered here, once, not in each copy
            self._states.clear()  # one set at a time: schemas behind mostly share theirs
            self._states[key] = state
        return state.clone()


@contextlib.contextmanager
def _state_once() -> Iterator[None]:
    """Django's ``migrate`` command uses :class:`_StateOnceExecutor` in the block (its module
    names the executor class it builds; there is no setting for it). Workers forked in the
    block keep it."""
    saved = django_migrate.MigrationExecutor
    django_migrate.MigrationExecutor = _StateOnceExecutor
    try:
        yield
    finally:
        django_migrate.MigrationExecutor = saved
        _StateOnceExecutor._states.clear()


def _migrate_schema(
    args: tuple, options: dict, codename: str, count: int, item: tuple[int, str]
) -> tuple[str, str | None]:
    """Django's ``migrate`` in one schema, as django-tenants runs it, with its ``[i/K]``
    progress; returns ``(schema, None)``, or ``(schema, traceback)`` if it failed."""
    index, schema = item
    try:
        run_migrations(args, options, codename, schema, idx=index, count=count)
    except Exception:  # one schema's failure is reported, the others go on
        failure = traceback.format_exc()
        connections[options["database"]].close()
        return schema, failure
    return schema, None


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
        failed: list[str] = []
        if skip_current:
            if not options.get("tenant"):
                super().handle(*args, **{**options, "shared": True, "tenant": False})
            if not options["skip_checks"]:
                # once here, not again in each schema's migrate (with the database's own checks)
                self.check(databases=[options["database"]])
                options = {**options, "skip_checks": True}
            with _state_once():
                failed = self._tenants_behind(*args, **options)
        else:
            if options.get("executor") == "multiprocessing":
                # forked workers would share the open connections (and the pool's dead threads)
                connection.close()
                connection.close_pool()
            super().handle(*args, **options)
        schema = template.template_schema()
        if schema is not None and every_tenant:
            self._template_refresh(schema, *args, **options)
        if failed:
            raise CommandError(
                f"{len(failed)} tenant schema(s) failed to migrate (the next run tries them "
                f"again): {', '.join(failed)}"
            )

    def _template_refresh(self, schema: str, *args: Any, **options: Any) -> None:
        """Migrate the template schema, then drop and copy again the spares made from it."""
        with template.template_refresh_lock():
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(schema)}")
            options = {**options, "shared": False, "tenant": True}
            executor = GET_EXECUTOR_FUNCTION(codename=options.get("executor"))(args, options)
            with _state_once():
                executor.run_migrations(tenants=[schema])
        # spares copied from the old template are dropped and copied again from the new one
        connection.set_schema_to_public()
        filled = pool.spares_fill()
        if filled["dropped"] or filled["made"]:
            self.stdout.write(
                f"Spare schemas: {filled['dropped']} dropped, {filled['made']} copied"
            )

    def _tenants_behind(self, *args: Any, **options: Any) -> list[str]:
        """Migrate the tenant schemas that lack a migration of this code, with progress, one
        after the other or (``--executor=multiprocessing``) in worker processes; returns the
        schemas whose migration failed, each reported on stderr with its traceback."""
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
            return []
        started = time.monotonic()
        options = {**options, "shared": False, "tenant": True}
        codename = GET_EXECUTOR_FUNCTION(codename=options.get("executor")).codename
        migrate = functools.partial(_migrate_schema, args, options, codename, len(behind))
        if codename == "multiprocessing":
            processes = getattr(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 2)
            # forked workers would share the open connections (and the pool's dead threads);
            # each makes its own and keeps it from one schema to the next
            connection.close()
            connection.close_pool()
            with multiprocessing.get_context("fork").Pool(processes) as workers:
                results = list(workers.imap_unordered(migrate, enumerate(behind)))
                workers.close()
                workers.join()  # they end normally, writing out what they printed
        else:
            results = [migrate(item) for item in enumerate(behind)]
        connection.set_schema_to_public()
        failed = []
        for schema, failure in results:
            if failure is not None:
                failed.append(schema)
                self.stderr.write(f"Tenant schema {schema} failed:\n{failure}")
        self.stdout.write(
            f"Migrated {len(behind) - len(failed)} tenant schemas in "
            f"{time.monotonic() - started:.1f} s"
            + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
        )
        return failed
