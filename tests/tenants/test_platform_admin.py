"""The platform admin (public domains) changes tenants and domains through tenants.services, and
its platform-users page is org's (tenants imports no app above it)."""

from __future__ import annotations

from django.test import Client
from django_tenants.utils import schema_exists

from org.admin import PlatformUserAdmin
from org.models import User
from tenants.admin import platform_admin_site
from tenants.models import Domain, Tenant
from tests.conftest import PASSWORD, unique


def _platform_client() -> Client:
    root = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    assert client.login(username=root.username, password=PASSWORD)
    return client


def _action(client: Client, action: str, *tenants: Tenant) -> None:
    response = client.post(
        "/admin/tenants/tenant/",
        {"action": action, "_selected_action": [t.pk for t in tenants]},
    )
    assert response.status_code == 302


def test_a_tenant_lives_its_whole_life_in_the_platform_admin():
    client = _platform_client()
    schema = unique("hooli")
    public = Tenant.objects.get(schema_name="public")
    # given a tenant added with its domain in the admin form
    response = client.post(
        "/admin/tenants/tenant/add/",
        {
            "name": "Hooli",
            "schema_name": schema,
            "is_active": "on",
            "domains-TOTAL_FORMS": "1",
            "domains-INITIAL_FORMS": "0",
            "domains-MIN_NUM_FORMS": "0",
            "domains-MAX_NUM_FORMS": "1000",
            "domains-0-domain": f"{schema}.localhost",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(schema_name=schema)
    assert schema_exists(schema)
    # a tenant's first domain becomes its primary one
    assert list(tenant.domains.values_list("domain", "is_primary")) == [
        (f"{schema}.localhost", True)
    ]

    # when it is suspended together with the public tenant
    _action(client, "suspend", tenant, public)
    # then only the tenant is suspended
    tenant.refresh_from_db()
    public.refresh_from_db()
    assert (tenant.is_active, public.is_active) == (False, True)
    # and resuming brings it back
    _action(client, "resume", tenant)
    tenant.refresh_from_db()
    assert tenant.is_active

    # when a second domain is added as primary, then it is the only primary one
    response = client.post(
        "/admin/tenants/domain/add/",
        {"domain": f"support.{schema}.localhost", "tenant": tenant.pk, "is_primary": "on"},
    )
    assert response.status_code == 302
    assert dict(tenant.domains.values_list("domain", "is_primary")) == {
        f"{schema}.localhost": False,
        f"support.{schema}.localhost": True,
    }
    # and a domain deleted stops pointing at the tenant
    second = Domain.objects.get(domain=f"support.{schema}.localhost")
    response = client.post(f"/admin/tenants/domain/{second.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Domain.objects.filter(pk=second.pk).exists()

    # when the tenant is deleted, then its row and domains go and its schema stays
    response = client.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Domain.objects.filter(domain__endswith=f"{schema}.localhost").exists()
    assert schema_exists(schema)


def test_platform_users_are_registered_by_org():
    assert isinstance(platform_admin_site._registry[User], PlatformUserAdmin)
    client = _platform_client()
    assert client.get("/admin/org/user/").status_code == 200
