"""``migrate_schemas`` at many tenants (issue 16, "Ops at 1,000 tenants"): schemas already up to
date are skipped after one read, a schema behind is migrated with progress (ending the same as
under Django's own ``migrate``), a schema that fails is reported while the others are migrated,
and a run started again goes on with what is still behind."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tenants import template
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD
from tests.servers import _server_environment
from tests.tenants.schemas import schema_snapshot


def _reversible_leaf() -> tuple[str, str, str]:
    """``(app, leaf, parent)``: a tenant app's newest migration that can be unapplied."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app in ("kefu", "im", "tickets", "kbase", "org"):
        for leaf in loader.graph.leaf_nodes(app):
            migration = loader.graph.nodes[leaf]
            parents = [p for p in loader.graph.node_map[leaf].parents if p.key[0] == app]
            if parents and all(op.reversible for op in migration.operations):
                return app, leaf[1], parents[0].key[1]
    raise AssertionError("no reversible newest migration in any tenant app")


def _command(*args: str) -> tuple[int, str, str]:
    """``manage.py migrate_schemas *args`` in a process of its own, as a deploy runs it: the
    multiprocessing executor forks and closes its process's connection pool, which this test
    process still needs. Returns ``(exit status, stdout, stderr)``."""
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate_schemas", *args],
        cwd=settings.BASE_DIR,
        env=_server_environment(None, {}),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _migrate(executor: str, capfd: pytest.CaptureFixture[str]) -> tuple[bool, str, str]:
    """``migrate_schemas --tenant --executor=<executor>``: ``(succeeded, stdout, stderr)``;
    the standard executor in this process, the multiprocessing one in a process of its own."""
    if executor == "multiprocessing":
        status, out, err = _command("--tenant", "--executor=multiprocessing")
        return status == 0, out, err
    try:
        call_command("migrate_schemas", "--tenant", "--executor=standard")
    except CommandError as exc:
        captured = capfd.readouterr()
        return False, captured.out, captured.err + f"CommandError: {exc}"
    captured = capfd.readouterr()
    return True, captured.out, captured.err


def _tenants() -> list[str]:
    return list(Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True))


def test_up_to_date_tenants_are_skipped_and_one_behind_is_migrated(capfd):
    schema = f"mg_{uuid.uuid4().hex[:10]}"
    tenant = tenant_create(
        name="Behind Co",
        schema_name=schema,
        domain=f"{schema.replace('_', '-')}.localhost",
        admin_username="owner",
        admin_password=PASSWORD,
    )
    try:
        assert template.schemas_behind(_tenants()) == []
        quiet = io.StringIO()
        call_command("migrate_schemas", "--tenant", stdout=quiet)
        total = len(_tenants())
        # django-tenants prints each schema's progress on the process's own stdout
        printed = quiet.getvalue() + capfd.readouterr().out
        assert f"Tenant schemas: {total} up to date, 0 to migrate" in printed
        assert f":{schema}]" not in printed  # no migrate ran in it
        assert ":_tenant_template]" in printed  # the template is refreshed as before

        # when: the tenant's newest migration of one app is taken back
        app, leaf, parent = _reversible_leaf()
        call_command("migrate_schemas", "--schema", schema, app, parent, stdout=io.StringIO())
        assert template.schemas_behind(["acme", schema, "globex"]) == [schema]

        # then: the next run migrates that schema alone, with its progress line
        out = io.StringIO()
        call_command("migrate_schemas", "--tenant", stdout=out)
        text = out.getvalue() + capfd.readouterr().out
        assert f"Tenant schemas: {total - 1} up to date, 1 to migrate" in text
        assert f"1/1 (100%) standard:{schema}]" in text
        assert f"Applying {app}.{leaf}" in text
        assert "Migrated 1 tenant schemas in" in text
        assert template.schemas_behind(_tenants()) == []
    finally:
        connection.set_schema_to_public()
        tenant.delete(force_drop=True)


def test_a_schema_without_the_migrations_table_is_behind():
    schema = f"nm_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    try:
        assert template.schemas_behind([schema, "acme"]) == [schema]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _tenant(prefix: str) -> Tenant:
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return tenant_create(
        name=prefix.title(),
        schema_name=schema,
        domain=f"{schema.replace('_', '-')}.localhost",
        admin_username="owner",
        admin_password=PASSWORD,
    )


def _take_back(schemas: list[str]) -> tuple[str, str]:
    """Unapply the newest reversible migration of a tenant app in ``schemas``; ``(app, leaf)``."""
    app, leaf, parent = _reversible_leaf()
    for schema in schemas:
        call_command("migrate_schemas", "--schema", schema, app, parent, stdout=io.StringIO())
    assert template.schemas_behind(schemas) == schemas
    return app, leaf


def test_schemas_migrated_by_the_skipping_path_are_identical_to_djangos_migrate():
    # given three tenants whose newest migration of one app is taken back
    tenants = [_tenant("same") for _ in range(3)]
    normal, *skipping = [t.schema_name for t in tenants]
    try:
        app, leaf = _take_back([normal, *skipping])

        # when one is migrated by Django's migrate as django-tenants runs it (--schema) and the
        # two others by a run over every tenant, in worker processes
        call_command("migrate_schemas", "--schema", normal, stdout=io.StringIO())
        status, printed, errors = _command("--tenant", "--executor=multiprocessing")

        # then all three have the migration and the same tables, columns, indexes, constraints,
        # sequences, migrations and rows (the admins' rows differ by salt and time of creation)
        assert status == 0, errors
        assert "up to date, 2 to migrate" in printed
        assert all(f"multiprocessing:{s}]   Applying {app}.{leaf}" in printed for s in skipping)
        assert template.schemas_behind([normal, *skipping]) == []
        volatile = frozenset({"org_user", "auditlog_logentry"})
        expected = schema_snapshot(normal, skip_rows=volatile)
        assert (app, leaf) in expected["migrations"]
        for schema in skipping:
            assert schema_snapshot(schema, skip_rows=volatile) == expected
    finally:
        connection.set_schema_to_public()
        for tenant in tenants:
            tenant.delete(force_drop=True)


@pytest.mark.parametrize("executor", ["standard", "multiprocessing"])
def test_a_failing_tenant_is_reported_the_others_are_migrated_and_a_rerun_resumes(executor, capfd):
    # given three tenants behind, the middle one refusing to record the migration
    tenants = [_tenant("fail") for _ in range(3)]
    first, broken, last = schemas = [t.schema_name for t in tenants]
    try:
        app, leaf = _take_back(schemas)
        with connection.cursor() as cursor:
            cursor.execute(
                f'ALTER TABLE "{broken}".django_migrations ADD CONSTRAINT refuse '
                "CHECK (app <> %s OR name <> %s) NOT VALID",
                [app, leaf],
            )

        # when every tenant is migrated
        succeeded, out, err = _migrate(executor, capfd)

        # then the failure is reported with its cause, the tenants around it are migrated and
        # the broken one is left as it was (its migration rolled back)
        assert not succeeded
        assert re.search(f"CommandError: 1 tenant schema\\(s\\) failed.*{broken}", err), err
        assert f"Tenant schema {broken} failed:" in err
        assert 'violates check constraint "refuse"' in err
        assert f"; 1 failed: {broken}" in out
        assert all(f"{executor}:{s}]   Applying {app}.{leaf}" in out for s in (first, last))
        assert template.schemas_behind(schemas) == [broken]

        # when the cause is gone and the command runs again
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{broken}".django_migrations DROP CONSTRAINT refuse')
        succeeded, printed, err = _migrate(executor, capfd)

        # then it migrates only the schema still behind
        assert succeeded, err
        assert "0 up to date, 1 to migrate" not in printed  # other tenants of the suite count
        assert "up to date, 1 to migrate" in printed
        assert f"1/1 (100%) {executor}:{broken}]   Applying {app}.{leaf}" in printed
        assert template.schemas_behind(schemas) == []
    finally:
        connection.set_schema_to_public()
        for tenant in tenants:
            tenant.delete(force_drop=True)
