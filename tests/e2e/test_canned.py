"""Canned responses in the inbox: "/shortcut" in the composer inserts the answer, and a "/" that
matches nothing says so instead of being sent, in real Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

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
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
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


@pytest.mark.e2e
def test_an_agent_keeps_their_own_canned_responses(daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk("mycanned")
        with schema_context(desk.tenant.schema_name):
            CannedResponse.objects.create(shortcut="hours", title="Opening hours", content="9-18")
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx, agent_ctx = browser.new_context(), browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        inbox.on("dialog", lambda d: d.accept())
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "谢谢你的帮助")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)

        # given a reply the agent writes often, they save it from the composer
        inbox.locator("#composer").fill("不客气，祝您购物愉快！")
        inbox.click("#canned-btn")
        dialog = inbox.locator("#canned-dialog")
        dialog.locator(".cm-item", has_text="/hours").wait_for(timeout=TIMEOUT)
        assert dialog.locator(".cm-item", has_text="/hours").locator(".cm-edit").count() == 0
        assert dialog.locator("#cm-content").input_value() == "不客气，祝您购物愉快！"
        dialog.locator("#cm-shortcut").fill("/thanks")
        dialog.locator("#cm-title").fill("Thank you")
        dialog.locator("#cm-save").click()
        mine = dialog.locator(".cm-item", has_text="/thanks")
        mine.wait_for(timeout=TIMEOUT)
        # a second one with the same shortcut is refused with the reason
        dialog.locator("#cm-shortcut").fill("thanks")
        dialog.locator("#cm-title").fill("Again")
        dialog.locator("#cm-content").fill("x")
        dialog.locator("#cm-save").click()
        dialog.locator("#cm-error", has_text="/thanks").wait_for(timeout=TIMEOUT)
        # they edit it
        mine.locator(".cm-edit").click()
        dialog.locator("#cm-content").fill("不客气！祝您购物愉快。")
        dialog.locator("#cm-save").click()
        mine.locator(".cm-text", has_text="不客气！").wait_for(timeout=TIMEOUT)
        dialog.locator("#cm-close").click()

        # when they type the shortcut, their version is inserted and sent
        inbox.locator("#composer").fill("")
        inbox.locator("#composer").press_sequentially("/than")
        inbox.locator("#canned-list .canned-option", has_text="/thanks").wait_for(timeout=TIMEOUT)
        inbox.locator("#composer").press("Enter")
        assert inbox.locator("#composer").input_value() == "不客气！祝您购物愉快。"
        inbox.locator("#composer").press("Enter")
        widget.locator("#messages .msg .msg-text", has_text="祝您购物愉快").wait_for(
            timeout=TIMEOUT
        )

        # and from the top bar (nothing to insert into there) deleting it removes it
        inbox.click("#canned-link")
        dialog.locator(".cm-item", has_text="/hours").wait_for(timeout=TIMEOUT)
        assert dialog.locator(".cm-insert").count() == 0
        dialog.locator(".cm-item", has_text="/thanks").locator(".cm-delete").click()
        dialog.locator(".cm-item", has_text="/thanks").wait_for(state="detached", timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            assert not CannedResponse.objects.filter(shortcut="thanks").exists()
    finally:
        visitor_ctx.close()
        agent_ctx.close()


@pytest.mark.e2e
def test_slash_with_no_match_shows_a_hint_and_sends_nothing(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock():
        desk = fresh_desk("nomatch")
        with schema_context(desk.tenant.schema_name):
            CannedResponse.objects.create(shortcut="ship", title="Shipping time", content="24h")
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx, agent_ctx = browser.new_context(), browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "在吗？")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        composer = inbox.locator("#composer")

        # given the agent types a shortcut nobody has
        composer.press_sequentially("/zz")
        hint = inbox.locator("#canned-list #canned-hint")
        expect(hint).to_have_text("No canned response matches “/zz”. Esc to cancel.")

        # when they press Enter, or click Send
        composer.press("Enter")
        inbox.locator("#send").click()

        # then nothing is sent: the text and the hint stay
        expect(composer).to_have_value("/zz")
        expect(hint).to_be_visible()

        # and after Esc the line is plain text, which Enter sends as it is
        composer.press("Escape")
        expect(inbox.locator("#canned-list")).to_be_hidden()
        composer.press("Enter")
        expect(composer).to_have_value("")
        mine = widget.locator("#messages .msg.theirs:not(.system) .msg-text")
        expect(mine).to_have_text(["/zz"], timeout=TIMEOUT)
    finally:
        visitor_ctx.close()
        agent_ctx.close()


@pytest.mark.e2e
def test_slash_without_any_canned_response_says_how_to_add_one(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock():
        desk = fresh_desk("nocanned")
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx, agent_ctx = browser.new_context(), browser.new_context(locale="zh-CN")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "你好")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        composer = inbox.locator("#composer")

        # given no canned responses at all, "/" says so (in the agent's language)
        composer.press_sequentially("/")
        expect(inbox.locator("#canned-hint")).to_have_text(
            "还没有快捷回复：点回复框旁的 ⚡ 添加。按 Esc 取消。"
        )

        # when Enter is pressed nothing is sent; the agent's next real reply is the first
        composer.press("Enter")
        expect(composer).to_have_value("/")
        composer.fill("您好，请问有什么可以帮您？")
        composer.press("Enter")
        mine = widget.locator("#messages .msg.theirs:not(.system) .msg-text")
        expect(mine).to_have_text(["您好，请问有什么可以帮您？"], timeout=TIMEOUT)
    finally:
        visitor_ctx.close()
        agent_ctx.close()
