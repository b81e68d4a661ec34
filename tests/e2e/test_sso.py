"""A person of a tenant with single sign-on clicks "Sign in with <provider>" on the inbox's
sign-in page, signs in on the provider's own page (tests/oidc_provider.py, a second process)
and lands in the inbox with an account made for them. Real Chromium, real HTTP both ways."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from org.models import SingleSignOn, User
from tests.e2e.test_live_chat import TIMEOUT
from tests.servers import daphne_start, oidc_provider_start

CLIENT_ID = "weiyu-e2e"
CLIENT_SECRET = "e2e-client-secret"
EMAIL = "mei.lin@example.com"
IDP_PASSWORD = "idp-password"


@pytest.mark.e2e
def test_a_person_signs_in_to_the_inbox_through_the_provider(browser, django_db_blocker):
    provider = oidc_provider_start(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, users={EMAIL: IDP_PASSWORD}
    )
    # the platform allows the self-hosted provider's address (WEIYU_OUTBOUND_ALLOW)
    server = daphne_start(name="e2e-sso", WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{provider.port}")
    context = browser.new_context(locale="en-US")
    try:
        with django_db_blocker.unblock(), schema_context("acme"):
            User.objects.filter(email__iexact=EMAIL).update(email="")
            row = SingleSignOn.current()
            row.enabled = True
            row.provider_name = "Test IdP"
            row.issuer = f"http://127.0.0.1:{provider.port}"
            row.client_id = CLIENT_ID
            row.client_secret = CLIENT_SECRET
            row.default_role = User.Role.AGENT
            row.allowed_domains = "example.com"
            row.save()

        # when the person opens the inbox's sign-in page and clicks the provider's button
        page = context.new_page()
        page.goto(server.url("acme.localhost", "/inbox/login/"))
        page.click("#sso-sign-in")

        # then the provider's page asks for their e-mail and password
        page.locator("#email").wait_for(timeout=TIMEOUT)
        assert page.url.startswith(f"http://127.0.0.1:{provider.port}/authorize")
        page.fill("#email", EMAIL)
        page.fill("#password", IDP_PASSWORD)
        page.click("#idp-submit")

        # then they are in the inbox, signed in with an agent account made for them
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)
        page.locator("#security-link").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context("acme"):
            user = User.objects.get(email__iexact=EMAIL)
            assert user.role == User.Role.AGENT
    finally:
        context.close()
        server.stop()
        provider.stop()
        with django_db_blocker.unblock(), schema_context("acme"):
            SingleSignOn.objects.update(enabled=False, password_sign_in_off=False)
