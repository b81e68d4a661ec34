"""An agent finds customer conversations in the inbox, in real Chromium: a Chinese word inside a
sentence, a filter, the customer's name, and opening a result at the highlighted message."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import Channel, Workgroup
from tenants.services import tenant_create
from tests.conftest import PASSWORD, Desk, make_agent, unique
from tests.kefu.conversations import customer_conversation
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A fresh tenant whose agent served three customers."""
    with django_db_blocker.unblock():
        schema = unique("shop")
        tenant = tenant_create(
            name="Shop",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        with schema_context(schema):
            agent = make_agent(name="amy", status="offline")
            workgroup = Workgroup.objects.create(name="Sales")
            workgroup.agents.add(agent)
            channel = Channel.objects.create(name="Web", workgroup=workgroup)
            desk = Desk(tenant=tenant, workgroup=workgroup, channel=channel, agents=[agent])
            refund = customer_conversation(
                desk,
                agent,
                name="李雷",
                lines=[
                    ("visitor", "你好"),
                    ("visitor", "我想申请退款，订单 8812"),
                    ("agent", "好的"),
                ],
            )
            customer_conversation(
                desk, agent, name="Han Meimei", status="closed", csat_score=5,
                lines=[("visitor", "退款 already arrived, thanks")],
            )  # fmt: skip
            customer_conversation(
                desk, agent, name="Zoe Miller", email="zoe@example.com",
                lines=[("visitor", "Where is my parcel?")],
            )  # fmt: skip
        return tenant, agent, refund


def test_find_a_conversation_and_open_it_at_the_message(daphne_server, browser, shop):
    tenant, agent, refund = shop
    host = f"{tenant.schema_name}.localhost"
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(daphne_server.url(host, "/inbox/login/"))
        page.fill("#id_username", agent.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)

        # when the agent searches a two-character Chinese word
        page.click("#conv-search-open")
        page.fill("#cs-q", "退款")
        page.click("#cs-go")
        hits = page.locator("#cs-results .cs-hit")
        page.locator("#cs-summary", has_text="Conversations found: 2").wait_for(timeout=TIMEOUT)
        # then both conversations show, newest first, the word highlighted
        assert hits.nth(0).locator(".cs-who").inner_text().startswith("Han Meimei")
        assert hits.nth(1).locator(".cs-who").inner_text().startswith("李雷")
        assert hits.nth(1).locator(".cs-text mark").inner_text() == "退款"
        assert "我想申请退款" in hits.nth(1).locator(".cs-text").inner_text()

        # when a filter narrows it to closed conversations
        page.select_option("#cs-status", "closed")
        page.click("#cs-go")
        page.locator("#cs-summary", has_text="Conversations found: 1").wait_for(timeout=TIMEOUT)
        assert "★★★★★" in hits.nth(0).inner_text()

        # the customer's e-mail finds the customer even when no message says it
        page.select_option("#cs-status", "")
        page.fill("#cs-q", "zoe@example")
        page.click("#cs-go")
        page.locator("#cs-results .cs-who mark", has_text="zoe@example").wait_for(timeout=TIMEOUT)
        assert hits.count() == 1

        # when the agent opens the Chinese hit, the conversation shows at that message
        page.fill("#cs-q", "申请退款")
        page.click("#cs-go")
        page.locator("#cs-summary", has_text="Conversations found: 1").wait_for(timeout=TIMEOUT)
        hits.nth(0).click()
        page.locator("#messages .msg.hit", has_text="我想申请退款").wait_for(timeout=TIMEOUT)
        assert not page.locator("#conv-search-dialog").is_visible()
        assert "李雷" in page.locator("#conv-heading").inner_text()
        assert refund.conversation_id
    finally:
        context.close()
