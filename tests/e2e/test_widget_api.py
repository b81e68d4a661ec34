"""The widget's JavaScript API on a host page of another origin, in a real browser
(docs/protocol.md, "The widget's JavaScript API"): open, close and toggle, the events the page
listens to — ready, open, close, unread, and message with an agent's reply — and setLocale,
which switches the widget's language."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from im.models import Message
from im.services import messages as im_messages
from kefu.senders import agent_sender
from tests.e2e.test_live_chat import fresh_desk
from tests.e2e.test_widget_files import other_origin  # noqa: F401 (a fixture)
from tests.waits import WAIT_MS, wait_until

TIMEOUT = WAIT_MS

SHOP = """<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>
<script src="{base}/widget.js" data-channel="{key}"></script>
<script>
  window.seen = [];
  window.replies = [];
  for (const name of ['ready', 'open', 'close', 'unread']) {{
    Weiyu.on(name, (data) => window.seen.push(data === undefined ? name : name + ':' + data));
  }}
  const stop = Weiyu.on('message', (m) => window.replies.push(m));
  window.stopListening = stop;
</script></body></html>"""


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return fresh_desk("jsapi")


def test_the_host_page_drives_the_widget_and_hears_the_agent(
    daphne_server,
    browser,
    desk,
    other_origin,  # noqa: F811 (the imported fixture)
):
    schema = desk.tenant.schema_name
    site_url, folder = other_origin
    base = daphne_server.url(f"{schema}.localhost", "").rstrip("/")
    (folder / "shop.html").write_text(
        SHOP.format(base=base, key=desk.channel.public_key), encoding="utf-8"
    )
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{site_url}/shop.html")
        page.wait_for_function("window.seen.includes('ready')", timeout=TIMEOUT)
        widget = page.frame_locator("#weiyu-frame")
        frame = page.locator("#weiyu-frame")

        # open / close / toggle from the page, each heard as an event
        page.evaluate("Weiyu.open()")
        frame.wait_for(state="visible", timeout=TIMEOUT)
        assert page.evaluate("Weiyu.isOpen()") is True
        page.evaluate("Weiyu.close()")
        frame.wait_for(state="hidden", timeout=TIMEOUT)
        page.evaluate("Weiyu.toggle()")
        frame.wait_for(state="visible", timeout=TIMEOUT)
        assert page.evaluate("window.seen.filter((e) => e === 'open' || e === 'close')") == [
            "open",
            "close",
            "open",
        ]

        # the customer writes; the agent's reply reaches the page as a 'message' event
        widget.locator("#conn-status[data-state='open']").wait_for(
            state="attached", timeout=TIMEOUT
        )
        widget.locator("#composer").fill("Is the blue one in stock?")
        widget.locator("#send").click()
        with schema_context(schema):
            question = wait_until(
                lambda: Message.objects.filter(content="Is the blue one in stock?").first(),
                what="the customer's message",
            )
            wait_until(
                lambda: question.conversation.participants.filter(
                    user_id=desk.agents[0].pk, left_at__isnull=True
                ).exists(),
                what="the agent assigned",
            )
            im_messages.message_send(
                conversation_id=question.conversation_id,
                sender=agent_sender(desk.agents[0]),
                content="Yes, two left.",
            )
        page.wait_for_function("window.replies.length === 1", timeout=TIMEOUT)
        reply = page.evaluate("window.replies[0]")
        assert reply["text"] == "Yes, two left."
        assert reply["sender_type"] == "agent"
        assert reply["sender_name"] == desk.agents[0].name
        assert reply["conversation_id"] == question.conversation_id

        # a closed widget counts the next reply as unread, and the page hears the count
        page.evaluate("Weiyu.close()")
        with schema_context(schema):
            im_messages.message_send(
                conversation_id=question.conversation_id,
                sender=agent_sender(desk.agents[0]),
                content="Shall I reserve one?",
            )
        page.wait_for_function("Weiyu.unread() === 1", timeout=TIMEOUT)
        assert "unread:1" in page.evaluate("window.seen")
        # a removed listener hears nothing more
        page.evaluate("window.stopListening()")
        with schema_context(schema):
            im_messages.message_send(
                conversation_id=question.conversation_id,
                sender=agent_sender(desk.agents[0]),
                content="Until tomorrow.",
            )
        page.wait_for_function("Weiyu.unread() === 2", timeout=TIMEOUT)
        assert [r["text"] for r in page.evaluate("window.replies")] == [
            "Yes, two left.",
            "Shall I reserve one?",
        ]

        # setLocale switches the widget (and the launcher's label) to Chinese, reloading it once
        reloads: list[str] = []
        page.on(
            "framenavigated",
            lambda f: reloads.append(f.url) if "/widget/frame/" in f.url else None,
        )
        page.evaluate("Weiyu.setLocale('zh-CN')")
        widget.locator("html[lang='zh-hans']").wait_for(state="attached", timeout=TIMEOUT)
        assert (
            page.locator("#weiyu-launcher").get_attribute("aria-label").startswith("打开在线客服")
        )
        page.evaluate("Weiyu.open()")
        label = widget.locator("label[for='composer']")
        label.wait_for(state="attached", timeout=TIMEOUT)
        assert label.inner_text() == "您的消息"
        # once, not over and over: the page asks again at each ready, the widget is settled
        assert len(reloads) == 1, reloads
        assert "lang=zh-hans" in reloads[0]
    finally:
        context.close()
