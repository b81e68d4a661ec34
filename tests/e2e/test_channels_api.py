"""The tenant's own system sends a customer's message through the API channel; the agent sees it
in the inbox and replies, and the reply reaches the system's callback URL, signed. When the
callback refuses, the reply shows "Not delivered" with a Retry button, which sends it. Real
Chromium, daphne, a Celery worker, and a local receiver (tests/fake_vendors.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.channels.api import api_channel_credentials_rotate
from kefu.models import Channel, ChannelAccount
from tests import fake_vendors
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in, fresh_desk
from tests.servers import celery_worker_start, daphne_start
from tests.waits import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_site(django_db_blocker):
    """A fresh tenant with an API channel whose callback is the local receiver, its own daphne
    and a worker (allowed to reach the receiver) on a queue of their own."""
    fake = fake_vendors.FakeVendors().start()
    with django_db_blocker.unblock():
        desk = fresh_desk("apisite")
        with schema_context(desk.tenant.schema_name):
            channel = Channel.objects.create(
                name=unique("api"), kind=Channel.Kind.API, workgroup=desk.workgroup
            )
            key, secret = api_channel_credentials_rotate(channel=channel)
            ChannelAccount.objects.filter(channel=channel).update(
                api_base_url=f"{fake.base_url}/receiver"
            )
    queue = unique("api-e2e")
    worker = celery_worker_start(
        queue=queue,
        name="api-e2e",
        concurrency=1,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{fake_vendors.PORT}",
        WEIYU_CHANNEL_RETRY_S="0.2",
        WEIYU_CHANNEL_SEND_ATTEMPTS="2",
    )
    server = daphne_start(name="api-e2e-daphne", CELERY_QUEUE=queue)
    yield desk, channel, key, secret, server, fake
    server.stop()
    worker.stop()
    fake.stop()


def _send(server, host: str, channel: Channel, key: str, body: dict) -> int:
    request = urllib.request.Request(  # noqa: S310 - the local daphne
        server.url("127.0.0.1", f"/api/v1/kefu/channels/{channel.public_key}/messages"),
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Host": host,
            "Authorization": f"Bearer {key}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return response.status


def _received(fake, secret: str, contact: str) -> list[str]:
    """The texts of the signed callbacks for ``contact`` (a bad signature fails the test)."""
    texts = []
    for call in fake.sent("/receiver"):
        parts = dict(p.split("=", 1) for p in call.headers["Weiyu-Signature"].split(","))
        mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + call.raw, hashlib.sha256)
        assert hmac.compare_digest(mac.hexdigest(), parts["v1"])
        body = json.loads(call.raw)
        if body["contact"]["id"] == contact and body["message"]["type"] == "text":
            texts.append(body["message"]["text"])
    return texts


def test_an_agent_answers_an_api_customer_from_the_inbox(browser, api_site):
    desk, channel, key, secret, server, fake = api_site
    host = f"{desk.tenant.schema_name}.localhost"
    contact = unique("crm-")
    ctx = browser.new_context(locale="en-US")
    try:
        inbox = ctx.new_page()
        _sign_in(inbox, server.url(host, "/inbox/login/"), desk.agents[0].username)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)

        # when the tenant's system posts a customer's message
        status = _send(
            server,
            host,
            channel,
            key,
            {"contact": {"id": contact, "name": "Ann Lee"}, "text": "Where is order 7?"},
        )
        assert status == 202

        # then the agent gets the conversation under the customer's name, with the text
        item = inbox.locator(".conv-item", has_text="Ann Lee")
        item.wait_for(timeout=TIMEOUT)
        item.click()
        inbox.locator("#messages .msg .msg-text", has_text="Where is order 7?").wait_for(
            timeout=TIMEOUT
        )
        expect(inbox.locator("#conv-heading-channel")).to_have_text("via the API")

        # when the agent replies, the callback receives it, signed
        inbox.locator("#composer").fill("It ships today.")
        inbox.locator("#composer").press("Enter")
        wait_until(
            lambda: "It ships today." in _received(fake, secret, contact),
            what="the reply at the receiver",
        )

        # when the receiver refuses the next reply
        fake.refuse = True
        inbox.locator("#composer").fill("Tracking number follows.")
        inbox.locator("#composer").press("Enter")

        # then the reply shows it was not delivered, with a Retry button that sends it
        failed = inbox.locator(".msg", has_text="Tracking number follows.").locator(
            ".msg-delivery[data-status='failed']"
        )
        # (the reason was written by the worker, in the tenant's language)
        expect(failed).to_contain_text("Not delivered: 回调地址返回了 HTTP 410", timeout=TIMEOUT)
        fake.refuse = False
        failed.locator(".msg-delivery-retry").click()
        expect(
            inbox.locator(".msg", has_text="Tracking number follows.").locator(".msg-delivery")
        ).to_have_count(0, timeout=TIMEOUT)
        assert _received(fake, secret, contact)[-1] == "Tracking number follows."
    finally:
        ctx.close()
