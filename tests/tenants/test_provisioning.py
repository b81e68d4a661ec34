"""``manage.py create_tenant`` (TEN-1): a new tenant is reachable at once; bad input creates nothing.

Tenants are not dropped between tests, so every schema and domain here is unique to this run.
"""

from __future__ import annotations

import io
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import translation
from django_tenants.utils import schema_context, schema_exists

from kefu.models import Workgroup
from org.models import User
from tenants.models import Domain, Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD, session_cookie, unique
from tests.ws import connect
from weiyu.errors import ServiceError


def _fresh(prefix: str = "prov") -> tuple[str, str]:
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return schema, f"{schema.replace('_', '-')}.localhost"


def _schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        return {row[0] for row in cursor.fetchall()}


def _create(**options: str) -> str:
    """Run the command as an English-speaking operator would; return what it printed."""
    out = io.StringIO()
    with translation.override("en"):
        call_command("create_tenant", stdout=out, **options)
    return out.getvalue()


def test_create_tenant_makes_a_tenant_that_is_reachable_at_once():
    # given a free schema name and host name
    schema, domain = _fresh()

    # when the operator runs create_tenant
    output = _create(
        name="Initech",
        schema=schema,
        domain=domain,
        admin_username="peter",
        admin_password=PASSWORD,
    )

    # then the schema exists, migrated, with the host as its primary domain
    assert schema in output
    assert domain in output
    tenant = Tenant.objects.get(schema_name=schema)
    assert tenant.name == "Initech"
    assert tenant.is_active
    assert schema in _schemas()
    assert list(Domain.objects.filter(tenant=tenant).values_list("domain", "is_primary")) == [
        (domain, True)
    ]
    with schema_context(schema):
        assert Workgroup.objects.count() == 0  # tenant tables exist and are empty
        admin = User.objects.get(username="peter")
        assert admin.is_superuser
        assert admin.is_staff
    assert not User.objects.filter(username="peter").exists()  # not a platform user

    # and its host serves it: health check, sign-in page, inbox and back office
    client = Client(HTTP_HOST=domain)
    health = client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "schema": schema})
    login = client.post("/inbox/login/", {"username": "peter", "password": PASSWORD})
    assert login.status_code == 302
    assert login["Location"] == "/inbox/"
    # (a company with nothing set up yet starts on the getting-started page, kefu.onboarding)
    assert client.get("/admin/")["Location"] == "/admin/onboarding/"
    assert client.get("/admin/onboarding/").status_code == 200
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/kefu/workgroup/").status_code == 200

    # and the first administrator can open the inbox socket there right away
    cookie = session_cookie(tenant, admin)

    async def hello() -> dict:
        ws, frame = await connect("/ws/agent/", domain, cookie=cookie)
        await ws.disconnect()
        return frame

    frame = async_to_sync(hello)()
    assert frame["type"] == "hello"
    assert frame["member"]["key"] == f"u:{admin.pk}"


@pytest.mark.parametrize("taken", ["acme.localhost", " ACME.localhost "])
def test_create_tenant_with_a_taken_domain_is_refused_and_creates_nothing(acme, taken):
    # given a domain already serving acme
    schema, _domain = _fresh("dup")

    # when a new tenant is created with it
    with pytest.raises(CommandError) as error:
        _create(
            name="Acme Copy",
            schema=schema,
            domain=taken,
            admin_username="eve",
            admin_password=PASSWORD,
        )

    # then the error names the domain, and no tenant, domain or schema was made
    assert "acme.localhost" in str(error.value)
    assert not Tenant.objects.filter(schema_name=schema).exists()
    assert schema not in _schemas()
    assert list(
        Domain.objects.filter(domain="acme.localhost").values_list("tenant", flat=True)
    ) == [acme.pk]


@pytest.mark.parametrize("bad", ["Bad-Name", "public", "pg_x", "1abc"])
def test_create_tenant_with_a_bad_schema_name_is_refused_and_creates_nothing(bad):
    # given a schema name PostgreSQL or the platform cannot give to a tenant
    _schema, domain = _fresh("bad")
    tenants_before = Tenant.objects.count()
    schemas_before = _schemas()

    # when a tenant is created with it
    with pytest.raises(CommandError) as error:
        _create(
            name="Bad", schema=bad, domain=domain, admin_username="eve", admin_password=PASSWORD
        )

    # then the operator is told what a schema name may be, and nothing was made
    assert "Schema names are 2-63 characters" in str(error.value)
    assert Tenant.objects.count() == tenants_before
    assert not Domain.objects.filter(domain=domain).exists()
    assert _schemas() == schemas_before


def test_create_tenant_with_an_unusable_admin_name_is_refused_and_leaves_nothing_behind():
    # given a free schema and domain but a username the user table cannot hold
    schema, domain = _fresh("half")
    schemas_before = _schemas()

    # when the operator runs create_tenant (the schema is created and migrated before the admin)
    with pytest.raises(Exception) as error:  # noqa: PT011 - the type is checked last
        _create(
            name="Half",
            schema=schema,
            domain=domain,
            admin_username="x" * 200,
            admin_password=PASSWORD,
        )

    # then no tenant, domain or schema is left behind
    assert not Tenant.objects.filter(schema_name=schema).exists()
    assert not Domain.objects.filter(domain=domain).exists()
    assert _schemas() == schemas_before
    # and the operator gets a plain error message, not a traceback
    if not isinstance(error.value, CommandError):
        raise error.value


def test_a_bad_administrator_address_is_refused_before_anything_is_made():
    schema = unique("badmail")
    with pytest.raises(ServiceError) as caught:
        tenant_create(
            name="Badmail",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="admin",
            admin_password=PASSWORD,
            admin_email="not an address",
        )
    assert (caught.value.code, caught.value.field) == ("invalid", "admin_email")
    assert not Tenant.objects.filter(schema_name=schema).exists()
    assert not schema_exists(schema)
