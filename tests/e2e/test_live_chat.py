"""A visitor on the tenant's website chats with an agent in the inbox, in real Chromium.

The dialogues are the real ones of the chatterbot-corpus package (``chinese`` and ``english``
``conversations.yml``): in each dialogue the lines alternate between the visitor and the agent.
Every dialogue is one conversation, which the agent closes at the end; each line must appear
exactly once, in order, on both screens and in the database.
"""

from __future__ import annotations

from pathlib import Path

import chatterbot_corpus
import pytest
import yaml
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import Session, Visitor
from org.models import VisitorLimits
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, unique
from tests.waits import WAIT_MS, wait_until

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS  # ms, for any one thing to show up on a screen


def corpus(language: str) -> list[list[str]]:
    path = Path(chatterbot_corpus.__file__).parent / "data" / language / "conversations.yml"
    dialogues = yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]
    return [[str(line).strip() for line in dialogue if str(line).strip()] for dialogue in dialogues]


def fresh_desk(prefix: str, *, cap: int = 5):
    """A fresh tenant whose website (the demo page) carries its only widget channel, served by
    one online agent."""
    schema = unique(prefix)
    tenant = tenant_create(
        name=prefix.title(),
        schema_name=schema,
        domain=f"{schema}.localhost",
        admin_username="bob",
        admin_password=PASSWORD,
    )
    return make_desk(tenant, agents=1, cap=cap)


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """The shop's one visitor replays whole dialogues back to back, faster than a person types:
    its tenant allows more messages per visitor and address than the defaults (30 a minute)."""
    with django_db_blocker.unblock():
        desk = fresh_desk("shop")
        with schema_context(desk.tenant.schema_name):
            limits = VisitorLimits.current()
            limits.messages_per_visitor_minute = 600
            limits.messages_per_ip_minute = 600
            limits.frames_per_visitor_minute = 2400
            limits.save()
        return desk


def _texts(locator) -> list[str]:
    return [t.strip() for t in locator.all_inner_texts()]


def _wait_texts(page_or_frame, selector: str, expected: list[str]) -> None:
    """Wait until the texts under ``selector`` equal ``expected``, then assert it."""
    from playwright.sync_api import expect

    locator = page_or_frame.locator(selector)
    expect(locator).to_have_text(expected, use_inner_text=True, timeout=TIMEOUT)
    assert _texts(locator) == expected


def _sign_in(page, url: str, username: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/inbox/", timeout=TIMEOUT)


def test_visitor_and_agent_replay_corpus_dialogues(daphne_server, browser, shop):
    host = f"{shop.tenant.schema_name}.localhost"
    agent = shop.agents[0]
    visitor_ctx = browser.new_context(locale="zh-CN")
    agent_ctx = browser.new_context(locale="zh-CN")
    try:
        site = visitor_ctx.new_page()
        inbox = agent_ctx.new_page()
        # given the tenant's website with the widget open, and the agent's inbox
        site.goto(daphne_server.url(host, "/"))
        site.click("#weiyu-launcher")
        widget = site.frame_locator("#weiyu-frame")
        widget.locator("#composer").wait_for(timeout=TIMEOUT)
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)

        dialogues = corpus("chinese") + corpus("english")
        for number, lines in enumerate(dialogues):
            conversation_id = None
            for index, line in enumerate(lines):
                if index % 2 == 0:  # the visitor speaks
                    widget.locator("#composer").fill(line)
                    widget.locator("#send").click()
                    if conversation_id is None:
                        conversation_id = _new_conversation(shop, number)
                        inbox.locator(f'.conv-item[data-id="{conversation_id}"]').click(
                            timeout=TIMEOUT
                        )
                else:  # the agent answers
                    inbox.locator("#composer").fill(line)
                    inbox.locator("#send").click()
                said = lines[: index + 1]
                # then the line shows once, in order, on both screens
                _wait_texts(
                    inbox,
                    f'#messages .msg[data-conversation="{conversation_id}"]:not(.system) .msg-text',
                    said,
                )
                _wait_texts(
                    widget,
                    f'#messages .msg[data-conversation="{conversation_id}"]:not(.system) .msg-text',
                    said,
                )
            # and in the database
            with schema_context(shop.tenant.schema_name):
                stored = list(
                    Message.objects.filter(conversation_id=conversation_id)
                    .exclude(sender_type="system")
                    .order_by("seq")
                    .values_list("content", flat=True)
                )
            assert stored == lines
            # when the agent closes it, the visitor sees that it ended
            inbox.locator("#close-conv").click()
            widget.locator(f'#messages .msg.ended[data-conversation="{conversation_id}"]').wait_for(
                timeout=TIMEOUT
            )
    finally:
        visitor_ctx.close()
        agent_ctx.close()


def _new_conversation(desk, number: int) -> int:
    """The id of the conversation the visitor's latest message opened (waits for it)."""
    with schema_context(desk.tenant.schema_name):
        visitor = Visitor.objects.filter(channel=desk.channel).order_by("-id").first()
        session = wait_until(
            lambda: Session.objects.filter(visitor=visitor).exclude(status="closed").first(),
            what=f"dialogue {number}'s conversation",
        )
    return session.conversation_id


def _open_widget(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.click("#weiyu-launcher")
    widget = page.frame_locator("#weiyu-frame")
    widget.locator("#composer").wait_for(timeout=TIMEOUT)
    return page, widget


def _say(widget_or_page, text: str) -> None:
    widget_or_page.locator("#composer").fill(text)
    widget_or_page.locator("#send").click()


def test_queue_position_reload_and_reconnect(daphne_server, browser, django_db_blocker):
    # given a tenant whose only agent takes one conversation at a time
    with django_db_blocker.unblock():
        desk = fresh_desk("queue", cap=1)
    tenant = desk.tenant
    schema = tenant.schema_name
    host = f"{schema}.localhost"
    contexts = [browser.new_context(locale="en-US") for _ in range(4)]
    try:
        first_ctx, second_ctx, third_ctx, agent_ctx = contexts
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        _first_page, first = _open_widget(first_ctx, daphne_server.url(host, "/"))
        _say(first, "I am first")
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)

        # when two more visitors write while the agent is at the cap
        second_page, second = _open_widget(second_ctx, daphne_server.url(host, "/"))
        _say(second, "I am second")
        _third_page, third = _open_widget(third_ctx, daphne_server.url(host, "/"))
        _say(third, "I am third")

        # then they are told they wait, and where
        banner2, banner3 = second.locator("#queue-banner"), third.locator("#queue-banner")
        banner2.filter(has_text="1").wait_for(timeout=TIMEOUT)
        banner3.filter(has_text="2").wait_for(timeout=TIMEOUT)

        # when the agent ends the first conversation
        inbox.locator("#close-conv").click()

        # then the second visitor is served and the third moves up to number 1, live
        banner2.wait_for(state="hidden", timeout=TIMEOUT)
        banner3.filter(has_text="1").wait_for(timeout=TIMEOUT)
        second_id = _new_conversation_of(tenant.schema_name, "I am second")
        inbox.locator(f'.conv-item[data-id="{second_id}"]').click(timeout=TIMEOUT)
        _say(inbox, "Hello second, how can I help?")
        mine = f'#messages .msg[data-conversation="{second_id}"]:not(.system) .msg-text'
        _wait_texts(second, mine, ["I am second", "Hello second, how can I help?"])

        # when the visitor loses the network and the agent writes meanwhile
        second_ctx.set_offline(True)
        second.locator("#conn-status").filter(has_text="Reconnecting").wait_for(timeout=TIMEOUT)
        _say(inbox, "Are you still there?")
        _say(inbox, "We can also call you.")
        second_ctx.set_offline(False)

        # then, back online, the visitor sees what was missed, once and in order
        expected = [
            "I am second",
            "Hello second, how can I help?",
            "Are you still there?",
            "We can also call you.",
        ]
        _wait_texts(second, mine, expected)

        # when both sides reload, the whole history is there, in order
        second_page.reload()
        second_page.click("#weiyu-launcher")
        _wait_texts(second_page.frame_locator("#weiyu-frame"), mine, expected)
        inbox.reload()
        inbox.locator(f'.conv-item[data-id="{second_id}"]').click(timeout=TIMEOUT)
        _wait_texts(inbox, mine, expected)
    finally:
        for context in contexts:
            context.close()


def _new_conversation_of(schema: str, first_line: str) -> int:
    with schema_context(schema):
        return Message.objects.get(content=first_line).conversation_id


def test_the_widget_on_a_phone(daphne_server, browser, django_db_blocker):
    # given a visitor on a phone-sized screen
    with django_db_blocker.unblock():
        desk = fresh_desk("phone")
    host = f"{desk.tenant.schema_name}.localhost"
    phone = browser.new_context(
        viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True, locale="en-US"
    )
    agent_ctx = browser.new_context(locale="en-US")
    try:
        page, widget = _open_widget(phone, daphne_server.url(host, "/"))
        # when the chat opens, it takes the whole screen and nothing sticks out sideways
        box = page.locator("#weiyu-frame").bounding_box()
        assert box["width"] >= 370
        assert box["height"] >= 600
        composer = widget.locator("#composer").bounding_box()
        assert composer["y"] + composer["height"] <= 667
        overflow = widget.locator("body").evaluate(
            "b => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        assert overflow <= 0
        # the visitor chats as on a computer
        _say(widget, "Hi, I am on my phone")
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        inbox.locator("#composer").fill("Hello! How can I help?")
        inbox.locator("#composer").press("Enter")
        widget.locator("#messages .msg .msg-text", has_text="How can I help").wait_for(
            timeout=TIMEOUT
        )
        # and closes it with the button inside the chat
        widget.locator("#close-widget").tap()
        page.locator("#weiyu-frame").wait_for(state="hidden", timeout=TIMEOUT)
    finally:
        phone.close()
        agent_ctx.close()


def test_a_message_sent_before_the_chat_session_starts_is_not_lost(
    daphne_server, browser, django_db_blocker
):
    # given a visitor whose chat session is slow to start (the first request held back)
    with django_db_blocker.unblock():
        desk = fresh_desk("early")
    host = f"{desk.tenant.schema_name}.localhost"
    held = []

    def hold(route):
        held.append(route)

    context = browser.new_context(locale="en-US")
    context.route("**/api/v1/widget/session", hold)
    try:
        page = context.new_page()
        page.goto(daphne_server.url(host, "/"))
        page.click("#weiyu-launcher")
        widget = page.frame_locator("#weiyu-frame")
        widget.locator("#composer").wait_for(timeout=TIMEOUT)
        # (each call into the browser lets the held request reach the list)
        wait_until(lambda: held or (page.title() and held), what="the session request")
        # when they write and press Send before it has started
        widget.locator("#composer").fill("Hello, anyone there?")
        widget.locator("#send").click()
        held[0].continue_()
        # then the message goes once the session exists, and reaches the agent
        widget.locator("#messages .msg.mine .msg-text", has_text="Hello, anyone there?").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            sent = wait_until(
                lambda: Message.objects.filter(content="Hello, anyone there?").first(),
                what="the message stored",
            )
        assert widget.locator("#composer").input_value() == ""
        assert sent.sender_type == "visitor"
    finally:
        context.close()
