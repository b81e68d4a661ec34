"""Public sign-up (TEN-4): form → verification mail (real SMTP, a Celery worker) → a tenant
cloned from the template on the trial plan → the administrator signed in on the getting-started
page; and each abuse control."""

from __future__ import annotations

import itertools
import re

import pytest
from django.db import connection
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from org.models import User
from tenants import signup
from tenants.models import Signup, Tenant
from tests.conftest import unique
from tests.tenants.test_quotas import usage_reset
from tests.waits import fresh_window, wait_until

PASSWORD = "a-long-and-unusual-passphrase"
_addresses = itertools.count(1)


def _address(prefix: str) -> str:
    """A fresh client address under ``prefix`` (``"10.9"``): each octet stays below 256 however
    many the run makes."""
    n = next(_addresses)
    return f"{prefix}.{n // 250 % 250}.{n % 250 + 1}"


def _public(ip: str | None = None) -> Client:
    return Client(
        HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=ip or _address("10.9")
    )


def _form(sub: str, **changes: str) -> dict[str, str]:
    return {
        "company": "Signup 测试",
        "subdomain": sub,
        "email": f"founder@{sub}.example.com",
        "password": PASSWORD,
        "website": "",
        **changes,
    }


def test_a_company_signs_up_verifies_its_mail_and_lands_on_its_getting_started_page(
    smtp, mail_worker
):
    _port, inbox = smtp
    sub = unique("acmeco")
    web = _public()
    # when a company fills the sign-up form
    page = web.post("/signup/", _form(sub))
    assert page.status_code == 200
    assert "Check your mail" in page.content.decode()
    # then a verification mail arrives with a link on the platform domain
    wait_until(lambda: inbox.messages, what="the verification mail")
    rcpt, mail = inbox.messages[-1]
    assert rcpt == [f"founder@{sub}.example.com"]
    body = mail.get_content()
    assert f"{sub}.localhost" in body
    link = re.search(r"http://localhost/signup/verify/\S+/", body).group(0)
    path = link.removeprefix("http://localhost")
    # and nothing is created until the button on the linked page is pressed
    assert "Create my workspace" in web.get(path).content.decode()
    assert not Tenant.objects.filter(schema_name=sub).exists()
    response = web.post(path)
    assert response.status_code == 302
    welcome = response["Location"]
    assert welcome.startswith(f"http://{sub}.localhost/signup/welcome/")
    # the tenant exists, on the trial plan, with the administrator and the chosen password
    tenant = Tenant.objects.get(schema_name=sub)
    assert tenant.plan.code == "trial"
    assert tenant.trial_ends_at is not None
    with schema_context(sub):
        admin = User.objects.get(username=f"founder@{sub}.example.com")
        assert admin.is_superuser
        assert admin.check_password(PASSWORD)
    connection.set_schema_to_public()
    # when the browser follows the redirect it is signed in on the getting-started page
    tenant_web = Client(HTTP_HOST=f"{sub}.localhost", HTTP_ACCEPT_LANGUAGE="en")
    landed = tenant_web.get(welcome.removeprefix(f"http://{sub}.localhost"), follow=True)
    assert landed.redirect_chain[-1][0] == "/admin/onboarding/"
    assert 'id="step-channel"' in landed.content.decode()
    # and the link works once: again, it asks to sign in
    again = Client(HTTP_HOST=f"{sub}.localhost").get(
        welcome.removeprefix(f"http://{sub}.localhost")
    )
    assert again["Location"].startswith("/admin/login/")
    # the verification link again says the workspace exists
    connection.set_schema_to_public()
    assert "was created already" in web.get(path).content.decode()
    assert Signup.objects.get(subdomain=sub).password_hash == ""
    usage_reset(sub)


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        ("admin", "is reserved"),
        ("adm1n", "is reserved"),  # reads like a reserved name
        ("xn--80ak6aa92e", "no accents or other scripts"),  # punycode
        ("аpple", "no accents or other scripts"),  # its first letter is Cyrillic
        ("a", "3 to 32 letters"),
        ("-abc", "3 to 32 letters"),
        ("ab_c", "3 to 32 letters"),
        ("acme", "is taken"),  # the test tenant's acme.localhost
        ("acrne", "is taken"),  # rn reads as m
    ],
)
def test_subdomains_reserved_confusable_punycode_or_taken_are_refused(sub, message):
    page = _public().post("/signup/", _form("x", subdomain=sub, email="a@corp.example.com"))
    assert page.status_code == 200
    assert message in page.content.decode()
    assert not Signup.objects.filter(subdomain=sub).exists()


def test_disposable_addresses_are_refused_and_the_list_is_configurable():
    sub = unique("disp")
    page = _public().post("/signup/", _form(sub, email="me@mailinator.com"))
    assert "not a disposable one" in page.content.decode()
    with override_settings(WEIYU_SIGNUP_DISPOSABLE_DOMAINS=["burner.example"]):
        page = _public().post("/signup/", _form(sub, email="me@burner.example"))
    assert "not a disposable one" in page.content.decode()
    assert not Signup.objects.filter(subdomain=sub).exists()


def test_a_filled_honeypot_looks_accepted_but_stores_and_sends_nothing():
    sub = unique("bot")
    page = _public().post("/signup/", _form(sub, website="http://spam.example"))
    assert "Check your mail" in page.content.decode()
    assert not Signup.objects.filter(subdomain=sub).exists()


@override_settings(WEIYU_SIGNUP_PER_IP_HOUR=2, WEIYU_RATE_LIMITS=True)
def test_sign_ups_per_address_are_rate_limited():
    ip = _address("10.77")
    fresh_window(3600, need_s=60)
    for _ in range(2):
        assert _public(ip).post("/signup/", _form(unique("rl"))).status_code == 200
    refused = _public(ip).post("/signup/", _form(unique("rl")))
    assert refused.status_code == 429
    assert "Too many sign-ups from your address" in refused.content.decode()


def test_the_platform_can_close_sign_up():
    with override_settings(WEIYU_SIGNUP=False):
        page = _public().get("/signup/")
    assert page.status_code == 403
    assert "Sign-up is closed" in page.content.decode()


def test_sign_ups_never_verified_are_deleted_once_their_link_has_expired():
    import datetime as dt

    from django.utils import timezone

    from tenants.tasks import signups_purge_task

    old = Signup.objects.create(company="Old", subdomain=unique("old"), email="o@corp.example.com")
    fresh = Signup.objects.create(
        company="Fresh", subdomain=unique("fresh"), email="f@corp.example.com"
    )
    Signup.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    assert signups_purge_task() >= 1
    assert not Signup.objects.filter(pk=old.pk).exists()
    assert Signup.objects.filter(pk=fresh.pk).exists()


def test_forged_or_expired_links_create_nothing():
    pending = Signup.objects.create(
        company="Late", subdomain=unique("late"), email="late@corp.example.com"
    )
    token = signup.verification_token(pending)
    web = _public()
    assert web.post("/signup/verify/forged-token/").status_code == 400
    with override_settings(WEIYU_SIGNUP_LINK_MAX_AGE_S=-1):
        page = web.post(f"/signup/verify/{token}/")
    assert page.status_code == 400
    assert "expired" in page.content.decode()
    assert not Tenant.objects.filter(schema_name=pending.subdomain).exists()
