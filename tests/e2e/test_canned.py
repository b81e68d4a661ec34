"""Canned responses in the inbox: "/shortcut" in the composer inserts the answer, in real
Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import CannedResponse
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk


@pytest.mark.e2e
def test_slash_shortcut_in_the_inbox(daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk("canned")
        with schema_context(desk.tenant.schema_name):
            CannedResponse.objects.create(
                shortcut="ship", title="Shipping time", content="付款后 24 小时内发货。"
            )
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx, agent_ctx = browser.new_context(), browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "什么时候发货？")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox.locator("#composer").press_sequentially("/sh")
        inbox.locator("#canned-list .canned-option", has_text="/ship").wait_for(timeout=TIMEOUT)
        inbox.locator("#composer").press("Enter")
        assert inbox.locator("#composer").input_value() == "付款后 24 小时内发货。"
        inbox.locator("#composer").press("Enter")
        widget.locator("#messages .msg .msg-text", has_text="小时内发货").wait_for(timeout=TIMEOUT)
    finally:
        visitor_ctx.close()
        agent_ctx.close()
