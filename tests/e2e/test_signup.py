"""A company signs up on the public site and chats with its first visitor, without anyone of the
platform: sign-up form → verification mail (a real SMTP server, a Celery worker) → the link →
its getting-started page, signed in → a channel, its snippet pasted on a page of another origin
→ a visitor writes and the new administrator answers in the inbox. Real Chromium."""

from __future__ import annotations

import re
import time

import pytest
from django_tenants.utils import schema_context

from tenants.models import Tenant
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _say
from tests.e2e.test_widget_files import other_origin  # noqa: F401 (fixture)
from tests.servers import celery_worker_start, daphne_start
from tests.tenants.test_quotas import usage_reset
from tests.waits import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def signup_site(smtp, django_db_setup):
    """daphne and a mail worker on a queue of their own, the worker sending to :func:`smtp`."""
    port, inbox = smtp
    queue = unique("signup-e2e")
    worker = celery_worker_start(
        queue=queue, name="signup-mail", concurrency=1, EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port), WEIYU_SEMANTIC="off",
    )  # fmt: skip
    server = daphne_start(name="signup-e2e-daphne", CELERY_QUEUE=queue)
    yield server, inbox
    server.stop()
    worker.stop()


def test_a_company_signs_up_and_chats_with_its_first_visitor_on_its_own_website(
    browser,
    signup_site,
    other_origin,  # noqa: F811
    django_db_blocker,
):
    from playwright.sync_api import expect

    server, inbox = signup_site
    site_url, folder = other_origin
    sub = unique("newco")
    email = f"owner@{sub}.example.com"
    base = server.url(f"{sub}.localhost", "").rstrip("/")
    admin_ctx = browser.new_context(locale="en-US")
    admin_ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    visitor_ctx = browser.new_context(locale="en-US")
    try:
        # given a company on the public site's sign-up page
        page = admin_ctx.new_page()
        page.goto(server.url("localhost", "/"))
        page.click("#landing-signup")
        page.fill("#id_company", "NewCo 新公司")
        page.fill("#id_subdomain", sub)
        page.fill("#id_email", email)
        page.fill("#id_password", "a-long-and-unusual-passphrase")
        # when it sends the form
        page.click("#signup-submit")
        expect(page.locator("#signup-sent")).to_have_text("Check your mail", timeout=TIMEOUT)

        # then the verification mail reaches its address
        wait_until(lambda: inbox.messages, what="the verification mail")
        rcpt, mail = inbox.messages[-1]
        assert rcpt == [email]
        link = re.search(r"http://\S+/signup/verify/\S+/", mail.get_content()).group(0)

        # when the link is opened and the workspace created
        page.goto(link)
        started = time.monotonic()
        page.click("#signup-create")
        # then the administrator is signed in on the new workspace's getting-started page
        page.wait_for_url(f"{base}/admin/onboarding/", timeout=TIMEOUT)
        print(f"\nworkspace created and signed in within {time.monotonic() - started:.2f} s")
        for step in ("channel", "snippet", "agents", "faq"):
            expect(page.locator(f"#step-{step}")).to_have_attribute("data-done", "false")
        with django_db_blocker.unblock():
            assert Tenant.objects.get(schema_name=sub).plan.code == "trial"

        # when they create the chat channel and copy its snippet
        page.fill("#channel-name", "NewCo website")
        page.click("#channel-create")
        expect(page.locator("#step-channel")).to_have_attribute(
            "data-done", "true", timeout=TIMEOUT
        )
        page.locator("button[data-copy='weiyu-snippet']").click()
        expect(page.locator("button[data-copy='weiyu-snippet']")).to_have_text("Copied")
        snippet = page.evaluate("navigator.clipboard.readText()")
        assert snippet.startswith(f'<script src="{base}/widget.js" data-channel="')

        # and go online in the inbox
        inbox_page = admin_ctx.new_page()
        inbox_page.goto(f"{base}/inbox/")
        expect(inbox_page.locator("#agent-status")).to_be_enabled(timeout=TIMEOUT)
        inbox_page.select_option("#agent-status", "online")
        expect(inbox_page.locator("#status-wrap")).to_have_attribute(
            "data-status", "online", timeout=TIMEOUT
        )

        # and paste the snippet into their website, on another origin
        (folder / "index.html").write_text(
            "<!doctype html><html><head><title>NewCo</title></head><body><h1>NewCo shop</h1>"
            f"{snippet}</body></html>",
            encoding="utf-8",
        )
        site = visitor_ctx.new_page()
        site.goto(f"{site_url}/index.html")
        site.click("#weiyu-launcher", timeout=TIMEOUT)
        widget = site.frame_locator("#weiyu-frame")
        widget.locator("#conn-status[data-state='open']").wait_for(
            state="attached", timeout=TIMEOUT
        )

        # when a visitor writes there
        _say(widget, "Hello NewCo, are you open on Sunday?")

        # then the new administrator gets the conversation and answers it
        inbox_page.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox_page.locator("#messages .msg-text", has_text="open on Sunday?").wait_for(
            timeout=TIMEOUT
        )
        _say(inbox_page, "Yes, from 10 to 4.")
        widget.locator("#messages .msg-text", has_text="Yes, from 10 to 4.").wait_for(
            timeout=TIMEOUT
        )
    finally:
        admin_ctx.close()
        visitor_ctx.close()
        with django_db_blocker.unblock(), schema_context("public"):
            usage_reset(sub)
