"""An agent turns two-factor sign-in on from the inbox, logs out everywhere else (their other
browser's inbox goes to the sign-in page), and signs in again with the code of their
authenticator, computed here from the key the page shows. Real Chromium."""

from __future__ import annotations

import time
from base64 import b32decode

import pytest
from django_otp.oath import TOTP
from django_tenants.utils import schema_context

from tests.conftest import PASSWORD, make_agent
from tests.e2e.test_live_chat import TIMEOUT, _sign_in


def _authenticator(secret: str, steps: int = 0) -> str:
    """What an authenticator app given ``secret`` (as the page shows it) displays ``steps``
    30-second steps from now."""
    key = b32decode(secret.replace(" ", "") + "=" * (-len(secret.replace(" ", "")) % 8))
    totp = TOTP(key)
    totp.time = time.time() + steps * 30
    return f"{totp.token():06d}"


@pytest.mark.e2e
def test_an_agent_turns_on_two_factors_and_signs_in_with_a_code(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock(), schema_context("acme"):
        agent = make_agent(name="otp")
    host = "acme.localhost"
    here_ctx = browser.new_context(locale="en-US")
    there_ctx = browser.new_context(locale="en-US")
    try:
        # given an agent signed in on two browsers
        there = there_ctx.new_page()
        _sign_in(there, daphne_server.url(host, "/inbox/login/"), agent.username)
        page = here_ctx.new_page()
        _sign_in(page, daphne_server.url(host, "/inbox/login/"), agent.username)

        # when they open Security from the inbox and confirm the authenticator with its code
        page.click("#security-link")
        page.locator(".qr-code svg").wait_for(timeout=TIMEOUT)
        secret = page.locator("#totp-secret").inner_text()
        page.fill("#id_code", _authenticator(secret))
        page.click("button[type=submit]")
        # then ten recovery codes are shown
        page.locator("#recovery-codes li").nth(9).wait_for(timeout=TIMEOUT)
        assert page.locator("#recovery-codes li").count() == 10

        # when they log out everywhere else, the other browser's inbox goes to the sign-in page
        page.click("#end-sessions")
        page.get_by_text("You are signed out everywhere else.").wait_for(timeout=TIMEOUT)
        there.wait_for_url("**/inbox/login/**", timeout=TIMEOUT)

        # when they sign out and in again: the password, then the code
        page.goto(daphne_server.url(host, "/inbox/"))
        page.click("#logout")
        page.wait_for_url("**/inbox/login/", timeout=TIMEOUT)
        page.fill("#id_username", agent.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/inbox/login/code/", timeout=TIMEOUT)
        page.fill("#id_code", _authenticator(secret, steps=1))
        page.click("button[type=submit]")
        # then the inbox opens
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)
        page.locator("#security-link").wait_for(timeout=TIMEOUT)
    finally:
        here_ctx.close()
        there_ctx.close()
