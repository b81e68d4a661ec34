"""The Content-Security-Policy of the production profile keeps every page working, in real
Chromium: the tenant's website with the widget (a visitor chats with an agent), the inbox, the
help center and the admin's report with its charts — and the browser reports no violation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.test_live_chat import _sign_in, _wait_texts, fresh_desk
from tests.servers import LiveServer, daphne_start
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def csp_server(django_db_setup: None) -> Iterator[LiveServer]:
    """A daphne with the policy on (WEIYU_CSP=1, as WEIYU_ENV=production does)."""
    server = daphne_start(name="e2e-csp", WEIYU_CSP="1")
    yield server
    server.stop()


def _watch(page: Any, problems: list[str]) -> None:
    """Collect what the browser says about refused content and script errors."""
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda e: problems.append(str(e)))


def test_widget_inbox_help_center_and_admin_work_under_the_policy(
    csp_server, browser, django_db_blocker
):
    with django_db_blocker.unblock():
        desk = fresh_desk("csp")
    host = f"{desk.tenant.schema_name}.localhost"
    problems: list[str] = []
    visitor_ctx, agent_ctx = browser.new_context(locale="en-US"), browser.new_context()
    try:
        site, inbox = visitor_ctx.new_page(), agent_ctx.new_page()
        _watch(site, problems)
        _watch(inbox, problems)
        response = site.goto(csp_server.url(host, "/"))
        # the header is there
        assert "script-src 'self'" in response.headers["content-security-policy"]
        # the site's "Chat with us" button (a nonce'd script) opens the widget
        site.click("#chat-cta")
        widget = site.frame_locator("#weiyu-frame")
        widget.locator("#composer").wait_for(timeout=WAIT_MS)
        _sign_in(inbox, csp_server.url(host, "/inbox/login/"), desk.agents[0].username)
        # a visitor and an agent chat
        widget.locator("#composer").fill("Hello under a policy")
        widget.locator("#send").click()
        inbox.locator(".conv-item").first.click(timeout=WAIT_MS)
        inbox.locator("#composer").fill("Hello back")
        inbox.locator("#send").click()
        _wait_texts(
            widget, "#messages .msg:not(.system) .msg-text", ["Hello under a policy", "Hello back"]
        )
        # the help center and the admin's report with its charts
        inbox.goto(csp_server.url(host, "/help/?q=hello"))
        inbox.locator("form.search").wait_for(timeout=WAIT_MS)
        admin = agent_ctx.new_page()
        _watch(admin, problems)
        admin.goto(csp_server.url(host, "/admin/login/"))
        admin.fill("#id_username", "bob")
        admin.fill("#id_password", PASSWORD)
        admin.click("input[type=submit]")
        admin.wait_for_url("**/admin/", timeout=WAIT_MS)
        admin.goto(csp_server.url(host, "/admin/kefu/session/reports/"))
        admin.locator("canvas").first.wait_for(timeout=WAIT_MS)
        admin.wait_for_load_state("networkidle")
    finally:
        visitor_ctx.close()
        agent_ctx.close()
    assert problems == []
