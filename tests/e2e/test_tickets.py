"""Nobody is online: a visitor leaves a message in the widget, it becomes a ticket with its SLA
clock in the inbox, an agent replies, and the visitor reads the reply in the widget — real
Chromium on both sides."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import AgentState
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, unique
from tests.waits import WAIT_MS
from tickets.models import SlaClock, SlaPolicy, SlaTarget, Ticket

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A tenant whose only agent is offline, with an SLA policy on the workgroup."""
    with django_db_blocker.unblock():
        schema = unique("helpdesk")
        tenant = tenant_create(
            name="Helpdesk",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        desk = make_desk(tenant, agents=1, status="offline")
        with schema_context(schema):
            policy = SlaPolicy.objects.create(name="Standard")
            policy.workgroups.add(desk.workgroup)
            SlaTarget.objects.create(
                policy=policy, priority="normal", first_response_s=4 * 3600, resolution_s=86400
            )
        return desk


def _sign_in(page, url: str, username: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/inbox/", timeout=TIMEOUT)


def test_a_message_left_offline_is_answered_as_a_ticket(daphne_server, browser, shop):
    host = f"{shop.tenant.schema_name}.localhost"
    agent = shop.agents[0]
    with schema_context(shop.tenant.schema_name):
        assert AgentState.objects.get(user=agent).status == "offline"
    visitor_ctx = browser.new_context(locale="en-US")
    agent_ctx = browser.new_context(locale="en-US")
    try:
        site = visitor_ctx.new_page()
        site.goto(daphne_server.url(host, "/"))
        site.click("#weiyu-launcher")
        widget = site.frame_locator("#weiyu-frame")
        # given nobody is online, the widget offers to leave a message
        widget.locator("#offline-banner").wait_for(timeout=TIMEOUT)
        widget.locator("#offline-leave").click()
        widget.locator("#leave-name").fill("Wang Fang")
        widget.locator("#leave-email").fill("wang.fang@example.com")
        widget.locator("#leave-body").fill("我的订单 #8812 还没有发货，请帮忙查一下。")
        widget.locator("#leave-send").click()
        card = widget.locator(".ticket-card", has_text="我的订单 #8812")
        card.wait_for(timeout=TIMEOUT)
        with schema_context(shop.tenant.schema_name):
            ticket = Ticket.objects.get(subject__startswith="我的订单 #8812")
            assert ticket.source == Ticket.Source.WIDGET
            assert ticket.requester_visitor.name == "Wang Fang"
            assert ticket.requester_email == "wang.fang@example.com"
        assert f"#{ticket.number}" in card.inner_text()

        # when the agent opens the inbox's Tickets tab, the ticket is there with its SLA clock
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        inbox.click("#tab-tickets")
        inbox.select_option("#ticket-view-select", "unassigned")
        item = inbox.locator(".ticket-item", has_text="我的订单 #8812")
        item.locator(".sla-dot", has_text="on track").wait_for(timeout=TIMEOUT)
        item.locator(".ticket-open").click()
        inbox.locator("#ticket-heading", has_text=f"#{ticket.number}").wait_for(timeout=TIMEOUT)
        first = inbox.locator('.sla-clock[data-kind="first_response"]')
        assert first.get_attribute("data-state") == "ok"
        assert "Wang Fang" in inbox.locator("#ticket-requester").inner_text()
        # and replies publicly
        inbox.fill("#ticket-reply", "已经查到了，明天上午发货。")
        inbox.set_input_files(
            "#ticket-attach",
            files=[
                {"name": "运单 waybill.txt", "mimeType": "text/plain", "buffer": b"SF1234567890"}
            ],
        )
        inbox.click("#ticket-reply-send")
        inbox.locator(".comment.public .comment-body", has_text="明天上午发货").wait_for(
            timeout=TIMEOUT
        )
        inbox.locator('.sla-clock[data-kind="first_response"][data-state="met"]').wait_for(
            timeout=TIMEOUT
        )

        # then the visitor sees the reply in the widget, live
        card.locator(".ticket-comment.theirs .ticket-body", has_text="明天上午发货").wait_for(
            timeout=TIMEOUT
        )
        # with the waybill, which the visitor can download
        waybill = card.locator(".ticket-file", has_text="运单 waybill.txt")
        href = waybill.get_attribute("href")
        body = (
            site.frame_locator("#weiyu-frame")
            .locator("body")
            .evaluate("async (b, url) => await (await fetch(url)).text()", href)
        )
        assert body == "SF1234567890"
        # and answers back, which reaches the agent's ticket
        card.locator(".ticket-reply textarea").fill("谢谢！")
        card.locator(".ticket-reply button").click()
        card.locator(".ticket-comment.mine .ticket-body", has_text="谢谢").wait_for(timeout=TIMEOUT)
        inbox.locator(".comment.public .comment-body", has_text="谢谢").wait_for(timeout=TIMEOUT)
        with schema_context(shop.tenant.schema_name):
            clock = SlaClock.objects.get(ticket=ticket, kind="first_response")
            assert clock.met_at is not None
            assert clock.breached_at is None
    finally:
        visitor_ctx.close()
        agent_ctx.close()
