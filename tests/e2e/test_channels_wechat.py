"""A WeChat follower writes to the tenant's Official Account; the agent sees the message in the
inbox and replies, and the reply reaches WeChat's customer-service API. When WeChat cannot be
reached the reply shows "Not delivered" with a Retry button, which sends it. Real Chromium,
daphne, a Celery worker, and a local fake of the WeChat API (tests/fake_vendors.py)."""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import urlencode

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.channels.delivery import channel_health
from kefu.models import Channel
from tests import fake_vendors
from tests.channels import messaging_channel, wx_signed_query
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in, fresh_desk
from tests.servers import celery_worker_start, daphne_start
from tests.waits import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def wechat_site(django_db_blocker):
    """A fresh tenant with an Official Account channel pointing at the fake WeChat API, its own
    daphne and a worker (allowed to reach the fake) on a queue of their own."""
    fake = fake_vendors.FakeVendors().start()
    with django_db_blocker.unblock():
        desk = fresh_desk("wxsite")
        channel = messaging_channel(desk, Channel.Kind.WECHAT_MP, fake.base_url)
    queue = unique("wechat-e2e")
    worker = celery_worker_start(
        queue=queue,
        name="wechat-e2e",
        concurrency=1,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,  # what the worker enqueues itself (the robot, deliveries) stays here
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{fake_vendors.PORT}",
        WEIYU_CHANNEL_RETRY_S="0.2",
        WEIYU_CHANNEL_SEND_ATTEMPTS="2",
    )
    server = daphne_start(name="wechat-e2e-daphne", CELERY_QUEUE=queue)
    yield desk, channel, server, fake
    server.stop()
    worker.stop()
    fake.stop()


def _callback(server, host: str, channel: Channel, openid: str, text: str) -> bytes:
    """POST a signed plain-mode text message as WeChat does; returns the answer's body."""
    xml = (
        f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{time.time_ns()}</MsgId></xml>"
    )
    url = server.url("127.0.0.1", f"/hooks/wechat_mp/{channel.public_key}?") + urlencode(
        wx_signed_query()
    )
    request = urllib.request.Request(  # noqa: S310 - the local daphne
        url, data=xml.encode(), headers={"Content-Type": "text/xml", "Host": host}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return response.read()


def _texts_to(fake, openid: str) -> list[str]:
    return [
        c.json["text"]["content"]
        for c in fake.sent("/message/custom/send")
        if c.json["touser"] == openid and c.json["msgtype"] == "text"
    ]


def test_an_agent_answers_a_wechat_follower_from_the_inbox(browser, wechat_site):
    desk, channel, server, fake = wechat_site
    host = f"{desk.tenant.schema_name}.localhost"
    openid = unique("oWx-e2e-")
    ctx = browser.new_context(locale="en-US")
    try:
        inbox = ctx.new_page()
        _sign_in(inbox, server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)

        # when a follower writes to the Official Account
        assert _callback(server, host, channel, openid, "你好，我想退货") == b"success"

        # then the agent gets the conversation under the follower's WeChat name, with the text
        item = inbox.locator(".conv-item", has_text="小明")
        item.wait_for(timeout=TIMEOUT)
        item.click()
        inbox.locator("#messages .msg .msg-text", has_text="你好，我想退货").wait_for(
            timeout=TIMEOUT
        )
        expect(inbox.locator("#conv-heading-channel")).to_have_text("via WeChat")
        # and the composer offers what WeChat carries: pictures, no voice clips or stickers
        expect(inbox.locator("#attach-btn")).to_be_visible()
        expect(inbox.locator("#voice-btn")).to_be_hidden()
        expect(inbox.locator("#sticker-btn")).to_be_hidden()

        # when the agent replies
        inbox.locator("#composer").fill("好的，请把订单号发给我。")
        inbox.locator("#composer").press("Enter")

        # then WeChat's customer-service API receives it for that follower, after the line
        # saying who serves them
        wait_until(
            lambda: (
                _texts_to(fake, openid)
                == [f"客服 {desk.agents[0].name} 正在为您服务。", "好的，请把订单号发给我。"]
            ),
            what="the reply at the fake WeChat API",
        )

        # when WeChat cannot be reached for the next reply (both attempts fail)
        fake.fail_next = 2
        inbox.locator("#composer").fill("订单号是多少？")
        inbox.locator("#composer").press("Enter")

        # then the reply shows it was not delivered, with a Retry button that sends it
        failed = inbox.locator(".msg", has_text="订单号是多少？").locator(
            ".msg-delivery[data-status='failed']"
        )
        expect(failed).to_contain_text("Not delivered: HTTP 502", timeout=TIMEOUT)
        failed.locator(".msg-delivery-retry").click()
        expect(
            inbox.locator(".msg", has_text="订单号是多少？").locator(".msg-delivery")
        ).to_have_count(0, timeout=TIMEOUT)
        assert _texts_to(fake, openid)[-1] == "订单号是多少？"
        with schema_context(desk.tenant.schema_name):
            assert channel_health(channel=channel)["failed_today"] == 0
    finally:
        ctx.close()
