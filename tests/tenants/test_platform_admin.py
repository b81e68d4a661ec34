"""The platform admin (public domains) changes tenants and domains through tenants.services, and
its platform-users page is org's (tenants imports no app above it)."""

from __future__ import annotations

import re
import time

from django.test import Client
from django_tenants.utils import schema_context, schema_exists

from org.admin import PlatformUserAdmin
from org.models import User
from tenants.admin import platform_admin_site
from tenants.models import Domain, Tenant
from tests.conftest import PASSWORD, unique
from tests.waits import wait_until

ADD = "/admin/tenants/tenant/add/"


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
        {"name": "Hooli", "domain": f"{schema}.localhost", "admin_username": "gavin"},
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    assert "One-time password" in response.content.decode()
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


def _shown(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]+)<', html)
    assert match, html[:3000]
    return match.group(1)


def test_a_company_added_in_the_platform_admin_can_sign_in_to_its_back_office():
    client = _platform_client()
    schema = unique("initech")
    domain = f"{schema.replace('initech', 'initech-')}.localhost"
    # given the add form, which asks for the company and its first administrator
    form = client.get(ADD).content.decode()
    for field in ("name", "domain", "schema_name", "admin_username", "admin_email"):
        assert f'name="{field}"' in form

    # when the platform admin fills it in
    started = time.monotonic()
    response = client.post(
        ADD,
        {
            "name": "Initech",
            "domain": domain,
            "admin_username": "peter",
            "admin_email": "peter@initech.example",
        },
    )
    took = time.monotonic() - started

    # then the tenant exists with its schema made from the domain, in seconds, not minutes
    assert response.status_code == 200, response.content.decode()[:3000]
    assert response["Cache-Control"].count("no-store") == 1
    tenant = Tenant.objects.get(domains__domain=domain)
    assert tenant.schema_name == schema.replace("initech", "initech_")
    assert schema_exists(tenant.schema_name)
    assert took < 60
    # and the page shows, once, where and how its administrator signs in
    html = response.content.decode()
    password = _shown(html, "tenant-admin-password")
    assert _shown(html, "tenant-admin-username") == "peter"
    assert _shown(html, "tenant-sign-in") == (
        f"http://{domain}/admin/login/?next=%2Fadmin%2Fonboarding%2F"
    )
    with schema_context(tenant.schema_name):
        admin = User.objects.get(username="peter")
        assert (admin.email, admin.role, admin.is_superuser) == (
            "peter@initech.example",
            "admin",
            True,
        )
        assert password not in admin.password  # stored as a hash only
    # and with that password the administrator signs in to the company's back office
    back_office = Client(HTTP_HOST=domain, HTTP_ACCEPT_LANGUAGE="en")
    signed_in = back_office.post(
        "/admin/login/?next=/admin/", {"username": "peter", "password": password}
    )
    assert signed_in.status_code == 302
    assert back_office.get("/admin/org/user/").status_code == 200
    # and the tenant list shows it; its change page edits it with its domains
    assert domain in client.get("/admin/tenants/tenant/").content.decode()
    assert (
        'name="domains-0-domain"'
        in client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    )


def test_the_add_form_says_what_is_wrong_and_leaves_nothing_behind():
    client = _platform_client()
    tenants_before = Tenant.objects.count()
    cases = [
        ({"name": "", "domain": "x.localhost", "admin_username": "a"}, "This field is required."),
        ({"name": "X", "domain": "not a host", "admin_username": "a"}, "is not a valid host name"),
        ({"name": "X", "domain": "acme.localhost", "admin_username": "a"}, "is taken"),
        ({"name": "X", "domain": "new1.localhost", "admin_username": "a b/c"}, "Enter a valid"),
        (
            {
                "name": "X",
                "domain": "new2.localhost",
                "schema_name": "public",
                "admin_username": "a",
            },
            "Schema names are",
        ),
        (
            {"name": "X", "domain": "n.localhost", "admin_username": "a", "admin_email": "x"},
            "valid",
        ),
    ]
    for data, error in cases:
        response = client.post(ADD, data)
        assert response.status_code == 200
        html = response.content.decode()
        assert "Please correct the errors below." in html, data
        assert error in html, data
        assert "tenant-admin-password" not in html
    assert Tenant.objects.count() == tenants_before
    # and only platform superusers may add tenants
    clerk = User.objects.create_user(username=unique("clerk"), password=PASSWORD, is_staff=True)
    other = Client(HTTP_HOST="localhost")
    assert other.login(username=clerk.username, password=PASSWORD)
    assert (
        other.post(ADD, {"name": "Y", "domain": "y.localhost", "admin_username": "a"}).status_code
        == 403
    )
    assert not Tenant.objects.filter(domains__domain="y.localhost").exists()


def test_the_new_administrator_is_invited_to_choose_a_password(smtp, mail_worker):
    _port, inbox = smtp
    client = _platform_client()
    schema = unique("umbrella")
    domain = f"{schema}.localhost"
    # given a company added with its administrator's e-mail address
    response = client.post(
        ADD,
        {
            "name": "Umbrella",
            "domain": domain,
            "admin_username": "alice",
            "admin_email": "alice@umbrella.example",
        },
    )
    assert response.status_code == 200
    assert "is on its way to alice@umbrella.example" in response.content.decode()

    # then an invitation with a set-password link reaches them
    wait_until(lambda: inbox.messages, what="the invitation mail")
    recipients, mail = inbox.messages[0]
    assert recipients == ["alice@umbrella.example"]
    assert mail["Subject"] == "Your Weiyu back office for Umbrella"
    body = mail.get_content()
    assert f"http://{domain}/admin/" in body
    assert "alice" in body
    link = re.search(rf"http://{re.escape(domain)}(/admin/set-password/\S+/)", body).group(1)

    # when they follow it and choose a password
    tenant_web = Client(HTTP_HOST=domain, HTTP_ACCEPT_LANGUAGE="en")
    form_url = tenant_web.get(link)["Location"]
    page = tenant_web.get(form_url)
    assert "new_password1" in page.content.decode()
    new_password = "umbrella-brolly-42-rain"
    done = tenant_web.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert done["Location"] == "/admin/set-password/done/"
    assert (
        'href="/admin/login/?next=/admin/onboarding/"'
        in tenant_web.get(done["Location"]).content.decode()
    )

    # then they sign in with it and land on the getting-started page
    signed_in = tenant_web.post(
        "/admin/login/?next=/admin/onboarding/", {"username": "alice", "password": new_password}
    )
    assert signed_in["Location"] == "/admin/onboarding/"
    assert tenant_web.get("/admin/onboarding/").status_code == 200
    # and the link works only once
    again = Client(HTTP_HOST=domain, HTTP_ACCEPT_LANGUAGE="en").get(link, follow=True)
    assert "This link has expired or has been used already" in again.content.decode()
    # and no e-mail address, no invitation: only the one-time password
    client.post(ADD, {"name": "Quiet", "domain": f"q{domain}", "admin_username": "q"})
    assert len(inbox.messages) == 1
