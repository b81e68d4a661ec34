"""A visitor of a company over its plan's conversations, or of a suspended company, is never left
with a silent widget: it offers Leave a message, and the message becomes a ticket. Real
Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from tenants import quotas, services
from tenants.models import Plan
from tests.conftest import PASSWORD, make_desk, unique
from tests.e2e.test_widget_files import other_origin  # noqa: F401 (fixture)
from tests.tenants.test_quotas import usage_reset
from tests.waits import WAIT_MS
from tickets.models import Ticket

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS


@pytest.fixture(scope="module")
def capped(django_db_setup, django_db_blocker):
    """A tenant with an online agent whose plan allows one conversation a month, used up."""
    with django_db_blocker.unblock():
        schema = unique("capped")
        tenant = services.tenant_create(
            name="Capped",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        tenant.plan = Plan.objects.create(
            code=unique("tiny"), name="Tiny", conversations_per_month=1
        )
        tenant.save()
        usage_reset(schema)
        quotas.count("conversations", schema=schema)
        return make_desk(tenant, agents=1, status="online")


def _ticket_left(schema: str, text: str) -> Ticket | None:
    with schema_context(schema):
        return Ticket.objects.filter(subject__startswith=text).first()


def test_a_visitor_over_the_plans_conversations_leaves_a_message(
    daphne_server, browser, capped, django_db_blocker
):
    schema = capped.tenant.schema_name
    context = browser.new_context(locale="en-US")
    try:
        site = context.new_page()
        site.goto(
            daphne_server.url(f"{schema}.localhost", f"/?channel={capped.channel.public_key}")
        )
        site.click("#weiyu-launcher", timeout=TIMEOUT)
        widget = site.frame_locator("#weiyu-frame")
        # the widget says nobody answers now, though an agent is online
        widget.locator("#offline-banner").wait_for(timeout=TIMEOUT)
        widget.locator("#conn-status[data-state='open']").wait_for(
            state="attached", timeout=TIMEOUT
        )
        # when the visitor writes anyway, the text moves into the leave-a-message form
        widget.locator("#composer").fill("Do you deliver to Suzhou?")
        widget.locator("#send").click()
        body = widget.locator("#leave-body")
        body.wait_for(timeout=TIMEOUT)
        assert body.input_value() == "Do you deliver to Suzhou?"
        widget.locator("#leave-email").fill("li.lei@example.com")
        widget.locator("#leave-send").click()
        # then it is a ticket the company answers
        widget.locator(".ticket-card", has_text="Do you deliver to Suzhou?").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock():
            assert _ticket_left(schema, "Do you deliver to Suzhou?") is not None
    finally:
        context.close()


def test_a_visitor_of_a_suspended_company_leaves_a_message(
    daphne_server,
    browser,
    capped,
    django_db_blocker,
    other_origin,  # noqa: F811
):
    schema = capped.tenant.schema_name
    with django_db_blocker.unblock():
        services.tenants_suspend(tenant_ids=[capped.tenant.pk])
    context = browser.new_context(locale="en-US")
    try:
        site = context.new_page()
        # the company's own pages say it is suspended
        response = site.goto(daphne_server.url(f"{schema}.localhost", "/admin/"))
        assert response.status == 403
        assert "suspended" in site.locator("#tenant-suspended").inner_text()
        # its widget, on the company's own website, still takes a message
        site_url, folder = other_origin
        base = daphne_server.url(f"{schema}.localhost", "").rstrip("/")
        (folder / "index.html").write_text(
            "<!doctype html><html><body><h1>Capped shop</h1>"
            f'<script src="{base}/widget.js" data-channel="{capped.channel.public_key}" async>'
            "</script></body></html>",
            encoding="utf-8",
        )
        site.goto(f"{site_url}/index.html")
        site.click("#weiyu-launcher", timeout=TIMEOUT)
        widget = site.frame_locator("#weiyu-frame")
        widget.locator("#offline-banner").wait_for(timeout=TIMEOUT)
        widget.locator("#offline-leave").click()
        widget.locator("#leave-email").fill("han.mei@example.com")
        widget.locator("#leave-body").fill("Please call me about my order.")
        widget.locator("#leave-send").click()
        widget.locator(".ticket-card", has_text="Please call me about my order.").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock():
            assert _ticket_left(schema, "Please call me about my order.") is not None
    finally:
        context.close()
        with django_db_blocker.unblock():
            services.tenants_resume(tenant_ids=[capped.tenant.pk])
