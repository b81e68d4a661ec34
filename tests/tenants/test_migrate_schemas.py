"""``migrate_schemas`` at many tenants (issue 16, "Ops at 1,000 tenants"): schemas already up to
date are skipped after one read, a schema behind is migrated with progress, and a run started
again goes on with what is still behind."""

from __future__ import annotations

import io
import uuid

from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tenants import template
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD


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
