"""Tenants are provisioned by copying the template schema; the copy is a migrated schema.

The test database's template is made by ``migrate`` (our ``migrate_schemas``) like production's.
Tenants are not dropped between tests, so every schema and domain here is unique to this run.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django_tenants.utils import schema_context

from kefu.models import Workgroup
from org.models import User
from tenants import pool, template
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD
from tests.tenants.schemas import schema_snapshot

TEMPLATE = "_tenant_template"
SAVED = "_saved_template"  # the template moved aside by a test


def _provision(prefix: str) -> Tenant:
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return tenant_create(
        name=prefix.title(),
        schema_name=schema,
        domain=f"{schema.replace('_', '-')}.localhost",
        admin_username="bob",
        admin_password=PASSWORD,
    )


def _differences(left: dict, right: dict) -> dict[str, tuple]:
    """Per part, what only ``left`` has and what only ``right`` has (a few of each)."""
    out = {}
    for part, mine in left.items():
        theirs = right[part]
        if part == "rows":
            diff = sorted(t for t in set(mine) | set(theirs) if mine.get(t) != theirs.get(t))
            if diff:
                out[part] = (diff, [])
        elif mine != theirs:
            out[part] = (sorted(set(mine) - set(theirs))[:5], sorted(set(theirs) - set(mine))[:5])
    return out


def test_the_template_is_current_and_is_no_tenant():
    # given the test database, migrated like a deploy does
    # then the template exists, is current, and is neither a tenant nor reachable
    assert template.template_schema() == TEMPLATE
    assert template.template_stale_reason() is None
    assert not Tenant.objects.filter(schema_name=TEMPLATE).exists()
    # and acme and globex were made from it: their admins are their only users
    for schema in ("acme", "globex"):
        with schema_context(schema):
            assert User.objects.filter(username="bob").exists()
    with schema_context(TEMPLATE):
        assert not User.objects.exists()


def test_a_cloned_tenant_has_the_same_schema_and_rows_as_a_migrated_one(caplog):
    # given one tenant provisioned by running the migrations and one by cloning the template
    with caplog.at_level(logging.INFO, logger="tenants.services"):
        with override_settings(TENANT_TEMPLATE_SCHEMA=""):
            migrated = _provision("mig")
        cloned = _provision("clone")
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"tenant {migrated.schema_name}: schema migrated" in m for m in messages)
    assert any(f"tenant {cloned.schema_name}: schema cloned from {TEMPLATE}" in m for m in messages)

    # when their schemas are read from the catalogs (the admins' rows differ by password salt
    # and time of creation, so the user table's rows are compared by username below, and so do
    # the audit log's entries of that creation, compared by what they record)
    volatile = frozenset({"org_user", "auditlog_logentry"})
    left = schema_snapshot(migrated.schema_name, skip_rows=volatile)
    right = schema_snapshot(cloned.schema_name, skip_rows=volatile)

    # then tables, columns, defaults, indexes, constraints (foreign keys inside the tenant's own
    # schema), sequences and their positions, migrations and rows are the same
    assert _differences(left, right) == {}
    assert left["migrations"]  # not two empty snapshots
    assert left["rows"]["django_content_type"]  # rows the migrations insert are there
    assert all(row[7] for row in right["constraints"] if row[2] == "f")  # FKs stay inside
    for tenant in (migrated, cloned):
        with schema_context(tenant.schema_name):
            assert list(User.objects.values_list("pk", "username")) == [(1, "bob")]
            entries = LogEntry.objects.values_list("action", "object_pk", "object_repr")
            assert list(entries) == [(LogEntry.Action.CREATE, "1", "bob")]


def test_a_cloned_tenant_is_independent_of_the_template_and_its_siblings():
    # given two tenants cloned from the template
    first, second = _provision("one"), _provision("two")

    # when each gets rows
    with schema_context(first.schema_name):
        a = Workgroup.objects.create(name="Sales")
        User.objects.create_user(username="amy", password=PASSWORD, role="agent")
    with schema_context(second.schema_name):
        b = Workgroup.objects.create(name="Support")

    # then each numbers its own rows from 1 and sees only its own; the template stays empty
    assert (a.pk, b.pk) == (1, 1)
    with schema_context(second.schema_name):
        assert list(Workgroup.objects.values_list("name", flat=True)) == ["Support"]
        assert not User.objects.filter(username="amy").exists()
    with schema_context(TEMPLATE):
        assert not Workgroup.objects.exists()


def test_with_a_stale_template_a_tenant_is_migrated_and_the_log_says_why(caplog):
    # given a template that lacks one of the code's migrations (rolled back at the end)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TEMPLATE}.django_migrations WHERE app = 'kefu' "  # noqa: S608
                f"AND name = (SELECT max(name) FROM {TEMPLATE}.django_migrations WHERE app = 'kefu')"
            )
        reason = template.template_stale_reason()
        assert reason is not None
        assert "lacks 1 migration" in reason

        # when a tenant is created
        with caplog.at_level(logging.INFO, logger="tenants.services"):
            tenant = _provision("stale")

        # then its schema was migrated, complete, and the log says why
        messages = [r.getMessage() for r in caplog.records]
        assert any(
            f"{tenant.schema_name}: migrating its schema from scratch" in m for m in messages
        )
        assert any(reason in m for m in messages)
        with schema_context(tenant.schema_name):
            assert Workgroup.objects.count() == 0
        transaction.set_rollback(True)
    assert template.template_stale_reason() is None


def test_migrate_schemas_builds_the_template_again_identical(caplog):
    # given no template (the real one moved aside, restored at the end): tenants are migrated
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER SCHEMA "{TEMPLATE}" RENAME TO "{SAVED}"')
    try:
        assert "does not exist" in template.template_stale_reason()

        # when a deploy migrates every schema
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

        # then the template is back, current, and the same as the one built with the database
        assert template.template_stale_reason() is None
        assert _differences(schema_snapshot(SAVED), schema_snapshot(TEMPLATE)) == {}
        # and new tenants are copied from it again
        with caplog.at_level(logging.INFO, logger="tenants.services"):
            tenant = _provision("again")
        assert f"tenant {tenant.schema_name}: schema cloned from {TEMPLATE}" in caplog.text
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{TEMPLATE}" CASCADE')
            cursor.execute(f'ALTER SCHEMA "{SAVED}" RENAME TO "{TEMPLATE}"')


def test_a_failed_copy_leaves_the_connection_as_it_was(acme):
    # given a target schema that exists
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        (before,) = cursor.fetchone()

    # when the template is copied onto it
    with pytest.raises(DatabaseError):
        template.schema_clone(source=TEMPLATE, target="acme")

    # then nothing changed: same search path, acme's tables untouched
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        assert cursor.fetchone() == (before,)
    assert Tenant.objects.filter(schema_name="acme").exists()
    with schema_context("acme"):
        assert User.objects.filter(username="bob").exists()


def _spares_drop() -> None:
    with override_settings(WEIYU_SPARE_SCHEMAS=0):
        pool.spares_fill()  # a pool of none: every spare dropped
    assert pool.spare_schemas() == []


def test_a_tenant_renamed_from_a_spare_has_the_same_schema_and_rows_as_a_migrated_one(caplog):
    # given a pool of one spare schema, made by the worker's task
    try:
        with override_settings(WEIYU_SPARE_SCHEMAS=1):
            assert pool.spares_fill() == {"dropped": 0, "made": 1}
            (spare,) = pool.spare_schemas()
            assert spare.startswith("_spare_")
            assert not Tenant.objects.filter(schema_name=spare).exists()

            # when a tenant is provisioned, and another one migrated from scratch
            with caplog.at_level(logging.INFO, logger="tenants.services"):
                pooled = _provision("pool")
                with override_settings(TENANT_TEMPLATE_SCHEMA=""):
                    migrated = _provision("mig")
            # then the first one is the spare, renamed: the pool is empty
            assert f"tenant {pooled.schema_name}: schema renamed from spare {spare}" in caplog.text
            assert pool.spare_schemas() == []

            # and its schema and rows are those of a migrated schema
            volatile = frozenset({"org_user", "auditlog_logentry"})
            left = schema_snapshot(migrated.schema_name, skip_rows=volatile)
            right = schema_snapshot(pooled.schema_name, skip_rows=volatile)
            assert _differences(left, right) == {}
            assert left["migrations"]
            with schema_context(pooled.schema_name):
                assert list(User.objects.values_list("pk", "username")) == [(1, "bob")]
                assert User.objects.get().check_password(PASSWORD)
                assert Workgroup.objects.create(name="Sales").pk == 1

            # and the worker's refill makes a new spare
            assert pool.spares_fill() == {"dropped": 0, "made": 1}
            assert pool.spare_schemas() != [spare]
    finally:
        _spares_drop()


def test_a_spare_behind_the_code_is_not_taken_and_the_refill_replaces_it(caplog):
    # given a pool of one spare that lacks one of the code's migrations (as after a deploy)
    try:
        with override_settings(WEIYU_SPARE_SCHEMAS=1):
            pool.spares_fill()
            (spare,) = pool.spare_schemas()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {spare}.django_migrations WHERE id = "  # noqa: S608
                    f"(SELECT max(id) FROM {spare}.django_migrations)"
                )

            # when a tenant is provisioned
            with caplog.at_level(logging.INFO, logger="tenants.services"):
                tenant = _provision("behind")

            # then it was copied from the template, and the spare left alone
            assert f"tenant {tenant.schema_name}: schema cloned from {TEMPLATE}" in caplog.text
            assert pool.spare_schemas() == [spare]

            # and the refill drops it and copies a current one
            assert pool.spares_fill() == {"dropped": 1, "made": 1}
            assert spare not in pool.spare_schemas()
            assert template.schemas_behind(pool.spare_schemas()) == []
    finally:
        _spares_drop()
