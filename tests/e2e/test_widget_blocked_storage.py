"""The widget on a host page of another site in a browser that blocks a third-party frame's
storage (Chromium with third-party cookies blocked, as Safari does): the chat frame cannot keep
the visitor's token, so the host page keeps it through the loader (docs/protocol.md §1) and a
reload brings the same visitor and conversation back instead of a new visitor."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.models import Visitor
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_live_chat import TIMEOUT, _say, fresh_desk
from tests.e2e.test_widget_files import other_origin  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

SHOP = """<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>
<script src="{base}/widget.js" data-channel="{key}"></script></body></html>"""
STORAGE = (
    "() => { try { localStorage.getItem('x'); return 'usable'; } catch (e) { return 'blocked'; } }"
)


@pytest.fixture
def strict_browser():
    """Chromium whose profile blocks third-party cookies (and with them a third-party frame's
    storage), as a user who chose it in the settings."""
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="weiyu-strict-"))
    (profile / "Default").mkdir()
    (profile / "Default" / "Preferences").write_text(
        json.dumps({"profile": {"block_third_party_cookies": True, "cookie_controls_mode": 1}})
    )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            locale="en-US",
        )
        yield context
        context.close()
    for path in sorted(profile.rglob("*"), reverse=True):
        (path.unlink if path.is_file() or path.is_symlink() else path.rmdir)()
    os.rmdir(profile)


def test_a_reload_keeps_the_visitor_and_conversation_when_frame_storage_is_blocked(
    daphne_server,
    strict_browser,
    django_db_blocker,
    other_origin,  # noqa: F811 (the imported fixture)
):
    # given a shop on another site embedding the widget, in a browser blocking its storage
    with django_db_blocker.unblock():
        desk = fresh_desk("strict")
    site_url, folder = other_origin
    base = daphne_server.url(f"{desk.tenant.schema_name}.localhost", "").rstrip("/")
    (folder / "shop.html").write_text(
        SHOP.format(base=base, key=desk.channel.public_key), encoding="utf-8"
    )
    page = strict_browser.new_page()
    page.goto(f"{site_url}/shop.html")
    page.click("#weiyu-launcher")
    widget = page.frame_locator("#weiyu-frame")
    widget.locator("#composer").wait_for(timeout=TIMEOUT)
    frame = page.locator("#weiyu-frame").element_handle().content_frame()
    assert frame.evaluate(STORAGE) == "blocked"

    # when the customer writes, and reloads the page
    _say(widget, "Is my order 42 on its way?")
    widget.locator("#messages .msg", has_text="order 42").wait_for(timeout=TIMEOUT)
    page.reload()
    page.click("#weiyu-launcher")

    # then the widget shows the same conversation, and no second visitor was made
    expect(widget.locator("#messages .msg", has_text="order 42")).to_be_visible(timeout=TIMEOUT)
    with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
        assert Visitor.objects.filter(channel=desk.channel).count() == 1
    page.close()
