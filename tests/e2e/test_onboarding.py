"""A company created in the platform admin is usable by its new administrator without a shell:
sign in with the one-time password, land on the getting-started page, create a channel, copy
its snippet, open the page carrying it and chat with a visitor. Real Chromium."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context

from kefu.models import Channel
from org.models import User
from tests.conftest import PASSWORD, unique
from tests.e2e.test_live_chat import TIMEOUT, _say

pytestmark = pytest.mark.e2e


def test_a_company_created_in_the_platform_admin_chats_with_its_first_visitor(
    daphne_server, browser, django_db_blocker
):
    from playwright.sync_api import expect

    with django_db_blocker.unblock():
        root = User.objects.create_user(
            username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
        )
    name = unique("onb")
    domain = f"{name}.localhost"
    base = daphne_server.url(domain, "").rstrip("/")
    platform_ctx = browser.new_context(locale="en-US")
    admin_ctx = browser.new_context(locale="en-US")
    admin_ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    visitor_ctx = browser.new_context(locale="en-US")
    try:
        # given the platform administrator on the "Add tenant" form
        platform = platform_ctx.new_page()
        platform.goto(daphne_server.url("localhost", "/admin/login/"))
        platform.fill("#id_username", root.username)
        platform.fill("#id_password", PASSWORD)
        platform.click("input[type=submit]")
        platform.wait_for_url("**/admin/", timeout=TIMEOUT)
        platform.goto(daphne_server.url("localhost", "/admin/tenants/tenant/add/"))

        # when they create the company with its first administrator
        platform.fill("#id_name", "Onboard 开张")
        platform.fill("#id_domain", domain)
        platform.fill("#id_admin_username", "founder")
        platform.fill("#id_admin_email", "founder@onboard.example")
        started = time.monotonic()
        platform.click("input[type=submit]")
        platform.locator("#tenant-admin-password").wait_for(timeout=TIMEOUT)
        print(f"\ntenant created in the platform admin in {time.monotonic() - started:.2f} s")

        # then the page shows the sign-in link and the one-time password
        password = platform.locator("#tenant-admin-password").inner_text().strip()
        sign_in = platform.locator("#tenant-sign-in").get_attribute("href")
        assert sign_in == f"{base}/admin/login/?next=%2Fadmin%2Fonboarding%2F"
        assert platform.locator("#tenant-admin-username").inner_text() == "founder"

        # when the new administrator signs in with them, they land on the getting-started page
        admin = admin_ctx.new_page()
        admin.goto(sign_in)
        admin.fill("#id_username", "founder")
        admin.fill("#id_password", password)
        admin.click("input[type=submit]")
        admin.wait_for_url("**/admin/onboarding/", timeout=TIMEOUT)
        for step in ("channel", "snippet", "agents", "faq"):
            expect(admin.locator(f"#step-{step}")).to_have_attribute("data-done", "false")

        # and create the company's chat channel there
        admin.fill("#channel-name", "Onboard website")
        admin.click("#channel-create")
        expect(admin.locator("#step-channel")).to_have_attribute(
            "data-done", "true", timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(name):
            key = Channel.objects.get(name="Onboard website").public_key

        # and copy its snippet with one click
        admin.locator("button[data-copy='weiyu-snippet']").click()
        expect(admin.locator("button[data-copy='weiyu-snippet']")).to_have_text("Copied")
        snippet = admin.evaluate("navigator.clipboard.readText()")
        assert snippet == f'<script src="{base}/widget.js" data-channel="{key}" async></script>'
        preview = admin.locator("#weiyu-snippet-preview").get_attribute("href")
        assert preview == f"{base}/?channel={key}"

        # and go online in the inbox
        inbox = admin_ctx.new_page()
        inbox.goto(f"{base}/inbox/")
        expect(inbox.locator("#agent-status")).to_be_enabled(timeout=TIMEOUT)
        inbox.select_option("#agent-status", "online")
        expect(inbox.locator("#status-wrap")).to_have_attribute(
            "data-status", "online", timeout=TIMEOUT
        )

        # when a visitor opens the snippet's page and writes
        site = visitor_ctx.new_page()
        site.goto(preview)
        expect(site.locator("h1")).to_have_text("Welcome to Onboard 开张.")
        site.click("#weiyu-launcher", timeout=TIMEOUT)
        widget = site.frame_locator("#weiyu-frame")
        widget.locator("#composer").wait_for(timeout=TIMEOUT)
        _say(widget, "你好, do you ship to Hangzhou?")

        # then the administrator gets the conversation and answers it
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox.locator("#messages .msg-text", has_text="do you ship to Hangzhou?").wait_for(
            timeout=TIMEOUT
        )
        _say(inbox, "Yes, in two days.")
        widget.locator("#messages .msg-text", has_text="Yes, in two days.").wait_for(
            timeout=TIMEOUT
        )

        # and the getting-started page ticks the snippet step: the chat is live
        admin.reload()
        expect(admin.locator("#step-snippet")).to_have_attribute("data-done", "true")
        expect(admin.locator("#step-agents")).to_have_attribute("data-done", "false")
    finally:
        platform_ctx.close()
        admin_ctx.close()
        visitor_ctx.close()
