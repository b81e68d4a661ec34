"""Single sign-on (INT-3, org.sso) against a real OpenID Connect provider in a second process
(tests/oidc_provider.py): real HTTP, RS256 signatures, PKCE. The browser's part is played by
Django's test client on our side and plain HTTP requests on the provider's."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_tenants.utils import schema_context

from org.models import AuditEntry, SingleSignOn, User, UserSession
from tests.conftest import PASSWORD, agent_client, unique
from tests.servers import LiveServer, oidc_provider_start

HOST = "acme.localhost"
CLIENT_ID = "weiyu-acme"
CLIENT_SECRET = "s3cret-of-the-client"
IDP_PASSWORD = "idp-password"
EMAILS = {
    "new": "new.person@example.com",
    "outsider": "someone@elsewhere.org",
    "unverified": "unverified@example.com",
}


@pytest.fixture(scope="module")
def provider() -> Iterator[LiveServer]:
    users = dict.fromkeys(EMAILS.values(), IDP_PASSWORD)
    users.update({f"p{i}@example.com": IDP_PASSWORD for i in range(20)})
    server = oidc_provider_start(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        users=users,
        unverified=(EMAILS["unverified"],),
    )
    yield server
    server.stop()


@pytest.fixture
def issuer(provider: LiveServer, settings) -> Iterator[str]:
    """acme's single sign-on pointed at the provider (allowed on loopback by the platform
    setting), turned off again afterwards."""
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{provider.port}"
    url = f"http://127.0.0.1:{provider.port}"
    with schema_context("acme"):
        row = SingleSignOn.current()
        row.enabled = True
        row.provider_name = "Test IdP"
        row.issuer = url
        row.client_id = CLIENT_ID
        row.client_secret = CLIENT_SECRET
        row.default_role = User.Role.AGENT
        row.allowed_domains = "example.com"
        row.create_users = True
        row.password_sign_in_off = False
        row.save()
    cache.clear()
    yield url
    with schema_context("acme"):
        SingleSignOn.objects.update(enabled=False, password_sign_in_off=False)


def _browser() -> Client:
    return Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en")


def _provider_sign_in(authorize_url: str, email: str, **tamper: str) -> httpx2.Response:
    """What a person does at the provider: open its page, type e-mail and password, submit.
    ``tamper`` changes hidden fields of its form first (an attacker's nonce)."""
    page = httpx2.get(authorize_url, timeout=30)
    assert page.status_code == 200, page.text
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    fields.update(email=email, password=IDP_PASSWORD, **tamper)
    return httpx2.post(
        str(page.url.copy_with(query=None)), data=fields, follow_redirects=False, timeout=30
    )


def _sign_in(client: Client, email: str, *, next_url: str = "", **tamper: str):
    """Start at our start URL, sign in at the provider, come back: our callback's response."""
    start = client.get("/account/sso/start/", {"next": next_url} if next_url else {})
    assert start.status_code == 302, start.content
    back = _provider_sign_in(start["Location"], email, **tamper)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["location"])
    assert callback.netloc == HOST
    return client.get(callback.path, {k: v[0] for k, v in parse_qs(callback.query).items()})


def test_the_start_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(issuer):
    # when someone clicks "Sign in with Test IdP"
    response = _browser().get("/account/sso/start/")

    # then they go to the provider's authorization endpoint with the code flow and PKCE
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{issuer}/authorize"
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 40
    assert len(query["nonce"]) >= 40
    assert set(query["scope"].split()) >= {"openid", "email", "profile"}
    assert query["redirect_uri"] == f"http://{HOST}/account/sso/callback/"


def test_the_login_pages_offer_the_provider_button(issuer):
    # when the inbox's and the back office's sign-in pages are opened
    inbox = _browser().get("/inbox/login/")
    admin = _browser().get("/admin/login/")

    # then both offer the provider, and still the password form
    for page in (inbox, admin):
        assert page.status_code == 200
        text = page.content.decode()
        assert "Sign in with Test IdP" in text
        assert 'name="password"' in text


def test_first_sign_in_creates_the_person_with_the_default_role_and_the_second_matches(issuer):
    # given a person nobody has created here
    email = EMAILS["new"]
    with schema_context("acme"):
        User.objects.filter(email__iexact=email).update(email="")

    # when they sign in through the provider
    client = _browser()
    response = _sign_in(client, email, next_url="/inbox/")

    # then an account exists with the default role, they are in the inbox, the session is
    # listed like a password sign-in's and the audit log says what happened
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    with schema_context("acme"):
        user = User.objects.get(email__iexact=email)
        assert user.role == User.Role.AGENT
        assert not user.has_usable_password()
        assert user.display_name == "New Person"
        assert UserSession.objects.filter(user=user).count() == 1
        events = [
            (e.additional_data or {}).get("event")
            for e in AuditEntry.objects.filter(object_pk=str(user.pk))
        ]
        assert "sso_account_created" in events
        assert AuditEntry.objects.filter(
            object_pk=str(user.pk), additional_data__event="sign_in", additional_data__method="sso"
        ).exists()
    assert client.get("/inbox/").status_code == 200

    # when they sign in again in another browser
    again = _sign_in(_browser(), email)

    # then the same account is used
    assert again.status_code == 302
    with schema_context("acme"):
        assert User.objects.filter(email__iexact=email).count() == 1
        assert UserSession.objects.filter(user=user).count() == 2


def test_an_existing_account_is_matched_by_email(issuer):
    # given an agent created by the admin with an address (in other letter case)
    email = "p1@example.com"
    with schema_context("acme"):
        User.objects.filter(email__iexact=email).update(email="")
        agent = User.objects.create_user(
            username=unique("matched"), password=PASSWORD, email="P1@Example.COM", role="agent"
        )

    # when they sign in through the provider
    response = _sign_in(_browser(), email)

    # then it is that account
    assert response.status_code == 302
    with schema_context("acme"):
        assert UserSession.objects.filter(user=agent).count() == 1
        assert User.objects.filter(email__iexact=email).count() == 1


def test_a_domain_not_allowed_is_refused(issuer):
    # when someone from another domain signs in at the provider
    response = _sign_in(_browser(), EMAILS["outsider"])

    # then they are refused with the reason and no account is made
    assert response.status_code == 403
    assert "elsewhere.org cannot sign in here" in response.content.decode()
    with schema_context("acme"):
        assert not User.objects.filter(email__iexact=EMAILS["outsider"]).exists()
        assert AuditEntry.objects.filter(
            additional_data__event="sso_refused", additional_data__email=EMAILS["outsider"]
        ).exists()


def test_an_unverified_email_is_refused(issuer):
    response = _sign_in(_browser(), EMAILS["unverified"])

    assert response.status_code == 403
    assert "not verified" in response.content.decode()


def test_a_tampered_state_is_refused(issuer):
    # given a sign-in started in one browser and finished at the provider
    client = _browser()
    start = client.get("/account/sso/start/")
    back = _provider_sign_in(start["Location"], "p2@example.com")
    query = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}

    # when the callback comes with another state
    response = client.get("/account/sso/callback/", {**query, "state": "x" * 48})

    # then nobody is signed in, and the real state cannot be used afterwards either
    assert response.status_code == 400
    assert "not started here" in response.content.decode()
    assert client.get("/inbox/").status_code == 302
    replay = client.get("/account/sso/callback/", query)
    assert replay.status_code == 400


def test_a_callback_in_another_browser_is_refused(issuer):
    # given a sign-in started in the victim's browser... finished in the attacker's
    start = _browser().get("/account/sso/start/")
    back = _provider_sign_in(start["Location"], "p3@example.com")
    callback = urlsplit(back.headers["location"])

    response = _browser().get(callback.path, {k: v[0] for k, v in parse_qs(callback.query).items()})

    assert response.status_code == 400


def test_a_tampered_nonce_is_refused(issuer):
    # when the ID token comes back with a nonce other than the one this browser was given
    response = _sign_in(_browser(), "p4@example.com", nonce="n" * 48)

    # then the ID token is refused
    assert response.status_code == 400
    assert "ID token is not valid" in response.content.decode()
    with schema_context("acme"):
        assert not User.objects.filter(email__iexact="p4@example.com").exists()


def test_a_wrong_client_secret_is_refused_by_the_provider(issuer):
    with schema_context("acme"):
        SingleSignOn.objects.update(client_secret="wrong")

    response = _sign_in(_browser(), "p5@example.com")

    assert response.status_code == 502
    assert "HTTP 401" in response.content.decode()


def test_a_provider_on_loopback_needs_the_platform_allow_list(issuer, settings):
    # given the platform does not allow the address
    settings.WEIYU_OUTBOUND_ALLOW = ""
    cache.clear()

    response = _browser().get("/account/sso/start/")

    # then the provider is not called
    assert response.status_code == 502
    assert "loopback" in response.content.decode()


def test_password_sign_in_off_refuses_the_password_forms_with_a_break_glass(issuer):
    # given an agent with a password, and password sign-in turned off
    with schema_context("acme"):
        agent = User.objects.create_user(username=unique("pw"), password=PASSWORD, role="agent")
        SingleSignOn.objects.update(password_sign_in_off=True)
    credentials = {"username": agent.username, "password": PASSWORD}

    # when they use the inbox's and the back office's password forms
    inbox = _browser().post("/inbox/login/", credentials)
    admin = _browser().post("/admin/login/", credentials)

    # then both refuse, and the pages offer only the provider
    assert inbox.status_code == 403
    assert "Password sign-in is off" in inbox.content.decode()
    assert admin.status_code == 403
    page = _browser().get("/inbox/login/").content.decode()
    assert "Sign in with Test IdP" in page
    assert 'name="password"' not in page

    # when the platform operator uses the break-glass command
    call_command("sso_password_sign_in", "acme", "on")

    # then the password works again
    response = _browser().post("/inbox/login/", credentials)
    assert response.status_code == 302


def test_the_admin_sets_up_sso_checked_against_the_provider(issuer, settings):
    # given the tenant admin on Organisation → Single sign-on
    with schema_context("acme"):
        row = SingleSignOn.current()
        bob = User.objects.get(username="bob")
    client = agent_client(bob)
    url = f"/admin/org/singlesignon/{row.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert f"http://{HOST}/account/sso/callback/" in page.content.decode()
    form = {
        "enabled": "on",
        "provider_name": "Keycloak",
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": "",
        "scopes": "openid email profile",
        "default_role": "staff",
        "create_users": "on",
        "allowed_domains": "example.com",
    }

    # when they save with the platform not allowing the provider's loopback address
    settings.WEIYU_OUTBOUND_ALLOW = ""
    refused = client.post(url, form)

    # then the form says why and nothing changed
    assert refused.status_code == 200
    assert "WEIYU_OUTBOUND_ALLOW" in refused.content.decode()

    # when the address is allowed and they save a new secret
    settings.WEIYU_OUTBOUND_ALLOW = issuer.removeprefix("http://")
    saved = client.post(url, {**form, "client_secret": "rotated-secret"})

    # then it is saved, the secret encrypted at rest and never shown back
    assert saved.status_code == 302
    with schema_context("acme"):
        row = SingleSignOn.objects.get(pk=row.pk)
        assert row.provider_name == "Keycloak"
        assert row.client_secret == "rotated-secret"
        with connection.cursor() as cursor:
            cursor.execute("SELECT client_secret FROM org_singlesignon WHERE id = %s", [row.pk])
            assert cursor.fetchone()[0].startswith("gA")
    assert "rotated-secret" not in client.get(url).content.decode()

    # when they save again leaving the secret empty, the stored one is kept
    client.post(url, {**form, "provider_name": "Keycloak 2"})
    with schema_context("acme"):
        assert SingleSignOn.objects.get(pk=row.pk).client_secret == "rotated-secret"


def test_a_person_with_an_authenticator_gives_its_code_after_the_provider(issuer):
    # given an agent with two-factor sign-in on
    email = "p6@example.com"
    with schema_context("acme"):
        User.objects.filter(email__iexact=email).update(email="")
        agent = User.objects.create_user(
            username=unique("otp"), password=PASSWORD, email=email, role="agent"
        )
        device = TOTPDevice.objects.create(user=agent, name="authenticator", confirmed=True)
    client = _browser()

    # when they come back from the provider
    response = _sign_in(client, email)

    # then they are asked for the code, not signed in yet
    assert response.status_code == 302
    assert response["Location"] == "/inbox/login/code/"
    assert client.get("/inbox/").status_code == 302

    # when they give the code of their authenticator
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    answer = client.post("/inbox/login/code/", {"code": f"{totp.token():06d}"})

    # then they are in, and the audit log says it was single sign-on
    assert answer.status_code == 302
    assert client.get("/inbox/").status_code == 200
    with schema_context("acme"):
        assert AuditEntry.objects.filter(
            object_pk=str(agent.pk), additional_data__event="sign_in", additional_data__method="sso"
        ).exists()
