"""An agent registers a passkey from the inbox's Security page and signs in with it, after the
password and then without one: real Chromium with its DevTools virtual authenticator (CTAP2,
built in, user verification on) — the browser makes the credential and the signatures, the
server checks them with py_webauthn."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from org.models import SecurityKey
from tests.conftest import PASSWORD, make_agent
from tests.e2e.test_live_chat import TIMEOUT, _sign_in


@pytest.mark.e2e
def test_an_agent_registers_a_passkey_and_signs_in_with_it_after_the_password_and_alone(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock(), schema_context("acme"):
        agent = make_agent(name="key")
    host = "acme.localhost"
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        # given an agent signed in to the inbox
        _sign_in(page, daphne_server.url(host, "/inbox/login/"), agent.username)

        # when they open Security and add a key named "Laptop"
        page.click("#security-link")
        page.fill("#id_key_name", "Laptop")
        page.click("#key-add")
        # then the recovery codes are shown once, and after Done the key is listed
        page.locator("#key-recovery-codes li").nth(9).wait_for(timeout=TIMEOUT)
        assert page.locator("#key-recovery-codes li").count() == 10
        page.click("#key-codes a")
        page.locator("#key-list .key-name", has_text="Laptop").wait_for(timeout=TIMEOUT)
        assert "never used" in page.locator("#key-list").inner_text()

        # when they sign out and in again: the password, then the key
        page.goto(daphne_server.url(host, "/inbox/"))
        page.click("#logout")
        page.wait_for_url("**/inbox/login/", timeout=TIMEOUT)
        page.fill("#id_username", agent.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/inbox/login/code/", timeout=TIMEOUT)
        page.click("#use-key")
        # then the inbox opens
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)
        page.locator("#security-link").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context("acme"):
            key = SecurityKey.objects.get(user=agent)
        assert key.name == "Laptop"
        assert key.last_used_at is not None
        # and the security page says when the key was last used
        page.click("#security-link")
        page.locator("#key-list").get_by_text("last used").wait_for(timeout=TIMEOUT)

        # when they sign out and use "Sign in with a passkey": no username, no password
        page.goto(daphne_server.url(host, "/inbox/"))
        page.click("#logout")
        page.wait_for_url("**/inbox/login/", timeout=TIMEOUT)
        page.click("#passkey-sign-in")
        # then the inbox opens
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)
        page.locator("#security-link").wait_for(timeout=TIMEOUT)
    finally:
        context.close()
