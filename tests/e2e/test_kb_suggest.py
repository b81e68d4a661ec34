"""An agent answers a visitor with a suggested reply from the knowledge base, in real Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kbase import services as kb_services
from kbase.models import KnowledgeBase
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk

pytestmark = pytest.mark.e2e


def test_a_suggested_answer_goes_to_the_visitor(daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk("kbsuggest")
        with schema_context(desk.tenant.schema_name):
            kb = KnowledgeBase.objects.create(name="FAQ", is_public=True)
            kb_services.faq_upsert(
                kb=kb,
                question="如何申请退款？",
                answer="在“我的订单”中点击“申请退款”，三个工作日内到账。",
                external_id="refund",
            )
            kb_services.faq_upsert(
                kb=kb, question="多久发货？", answer="付款后 24 小时内发货。", external_id="ship"
            )
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="zh-CN")
    agent_ctx = browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "你好，我想申请退款")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        # the inbox suggests the refund answer for what the visitor asked
        item = inbox.locator("#kb-suggest .kb-item", has_text="如何申请退款？")
        item.wait_for(timeout=TIMEOUT)
        assert inbox.locator("#kb-suggest .kb-item").first.inner_text().startswith("如何申请退款？")
        item.locator("button").click()
        assert (
            inbox.locator("#composer").input_value()
            == "在“我的订单”中点击“申请退款”，三个工作日内到账。"
        )
        inbox.click("#send")
        widget.locator("#messages .msg .msg-text", has_text="三个工作日内到账").wait_for(
            timeout=TIMEOUT
        )
    finally:
        visitor_ctx.close()
        agent_ctx.close()
