"""Automatic lines in each reader's language, and the language switches of the inbox and the
widget: an English visitor and a Chinese inbox read the same line each in their own language.
Real Chromium, two browser contexts."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import Visitor
from org.models import User
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk

pytestmark = pytest.mark.e2e


def test_each_reader_reads_automatic_lines_in_their_language(
    daphne_server, browser, django_db_blocker
):
    # given a tenant with one agent whose browser speaks Chinese, and a visitor whose speaks English
    with django_db_blocker.unblock():
        desk = fresh_desk("lines")
    schema = desk.tenant.schema_name
    agent = desk.agents[0]
    host = f"{schema}.localhost"
    english_line = f"{agent.name} is now serving you."
    chinese_line = f"客服 {agent.name} 正在为您服务。"
    visitor_ctx = browser.new_context(locale="en-US")
    agent_ctx = browser.new_context(locale="zh-CN")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        site, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))

        # when the visitor writes and the agent is assigned
        _say(widget, "Hello, anyone there?")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox.locator("#messages .msg", has_text="anyone there").wait_for(timeout=TIMEOUT)

        # then the visitor reads the line in English and the agent in Chinese
        widget.locator("#messages .msg.system", has_text=english_line).wait_for(timeout=TIMEOUT)
        inbox.locator("#messages .msg.system", has_text=chinese_line).wait_for(timeout=TIMEOUT)
        assert inbox.locator("#messages .msg.system", has_text="is now serving").count() == 0

        # when the agent switches the inbox to English
        inbox.locator("#language-switch").select_option("en")
        inbox.locator("html[lang='en']").wait_for(state="attached", timeout=TIMEOUT)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        # then the page and the line are in English, and the choice is remembered on them
        inbox.locator("#messages .msg.system", has_text=english_line).wait_for(timeout=TIMEOUT)
        assert inbox.locator("#logout").inner_text() == "Log out"
        with django_db_blocker.unblock(), schema_context(schema):
            assert User.objects.get(pk=agent.pk).language == "en"

        # when the visitor switches the widget to Chinese
        widget.locator("#language-switch").select_option("zh-hans")
        # then the widget reloads in Chinese with the conversation, the line in Chinese
        widget.locator("#composer[placeholder='请输入消息…']").wait_for(timeout=TIMEOUT)
        widget.locator("#messages .msg.system", has_text=chinese_line).wait_for(timeout=TIMEOUT)
        widget.locator("#messages .msg", has_text="anyone there").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(schema):
            visitor = Visitor.objects.get(channel=desk.channel)
            assert visitor.language == "zh-hans"  # e-mailed transcripts follow

        # and the choice is remembered: the widget opens in Chinese on the next visit
        site.reload()
        site.click("#weiyu-launcher")
        widget.locator("#composer[placeholder='请输入消息…']").wait_for(timeout=TIMEOUT)
        widget.locator("#messages .msg.system", has_text=chinese_line).wait_for(timeout=TIMEOUT)
        assert widget.locator("#language-switch").input_value() == "zh-hans"

        # and "auto" goes back to the browser's English
        widget.locator("#language-switch").select_option("")
        widget.locator("#composer[placeholder='Type your message…']").wait_for(timeout=TIMEOUT)
        widget.locator("#messages .msg.system", has_text=english_line).wait_for(timeout=TIMEOUT)
    finally:
        visitor_ctx.close()
        agent_ctx.close()
