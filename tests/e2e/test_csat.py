"""The visitor rates a conversation the agent ended; the agent sees the stars. Real Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import Session
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk

pytestmark = pytest.mark.e2e


def test_the_visitor_rates_the_conversation(daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk("csat")
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="zh-CN")
    agent_ctx = browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "我的包裹到了，谢谢")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox.locator("#messages .msg", has_text="我的包裹到了").wait_for(timeout=TIMEOUT)
        inbox.fill("#composer", "不客气！")
        inbox.click("#send")
        widget.locator("#messages .msg", has_text="不客气").wait_for(timeout=TIMEOUT)

        # when the agent ends the conversation
        inbox.once("dialog", lambda dialog: dialog.accept())
        inbox.click("#close-conv")

        # then the visitor is asked to rate it, in their language
        survey = widget.locator(".csat-box")
        survey.wait_for(timeout=TIMEOUT)
        assert "您对本次服务满意吗" in survey.inner_text()
        send = survey.locator(".csat-send")
        assert send.is_disabled()
        survey.locator(".csat-star[data-score='4']").click()
        assert survey.locator(".csat-star.on").count() == 4
        survey.locator(".csat-comment").fill("回复很快")
        send.click()
        widget.locator(".csat-box", has_text="感谢您的评价").wait_for(timeout=TIMEOUT)
        assert "★★★★" in widget.locator(".csat-box").inner_text()

        # and the agent sees the rating in the visitor panel
        inbox.locator("#v-csat", has_text="★★★★☆").wait_for(timeout=TIMEOUT)
        assert "回复很快" in inbox.locator("#v-csat").inner_text()
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            session = Session.objects.get(channel=desk.channel)
            assert (session.csat_score, session.csat_comment) == (4, "回复很快")
    finally:
        visitor_ctx.close()
        agent_ctx.close()
