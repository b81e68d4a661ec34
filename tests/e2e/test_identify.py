"""Known customers in a real browser: a shop page on another origin calls
``Weiyu.identify(identity, hmac)``; the same customer on two browser contexts sees one history,
and a forged HMAC is refused with the reason shown (docs/protocol.md, "Known customers")."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import Channel, Visitor
from kefu.services.visitors import channel_identity_secret_rotate, identity_hmac
from tests.conftest import unique
from tests.e2e.test_live_chat import fresh_desk
from tests.e2e.test_widget_files import other_origin  # noqa: F401 (a fixture)
from tests.waits import WAIT_MS, wait_until

TIMEOUT = WAIT_MS

SHOP = """<!doctype html><html><head><title>Shop</title></head><body><h1>My account</h1>
<script src="{base}/widget.js" data-channel="{key}"></script>
<script>
  const p = new URLSearchParams(location.search);
  Weiyu.on('identify_failed', (message) => {{ document.title = 'refused: ' + message; }});
  Weiyu.on('identified', () => {{ document.title = 'identified'; }});
  Weiyu.identify({{ id: p.get('id'), name: p.get('name') }}, p.get('hmac'));
</script></body></html>"""


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker):
    """A tenant whose channel requires verified identities, and the channel's secret."""
    with django_db_blocker.unblock():
        desk = fresh_desk("ident")
        with schema_context(desk.tenant.schema_name):
            secret = channel_identity_secret_rotate(channel=desk.channel)
            Channel.objects.filter(pk=desk.channel.pk).update(identity_required=True)
        return desk, secret


def _open(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.click("#weiyu-launcher", timeout=TIMEOUT)
    widget = page.frame_locator("#weiyu-frame")
    widget.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
    return page, widget


def test_one_customer_on_two_browsers_sees_one_history_and_a_forged_hmac_is_refused(
    daphne_server,
    browser,
    desk,
    other_origin,  # noqa: F811 (the imported fixture)
):
    desk, secret = desk
    schema = desk.tenant.schema_name
    site_url, folder = other_origin
    base = daphne_server.url(f"{schema}.localhost", "").rstrip("/")
    (folder / "account.html").write_text(
        SHOP.format(base=base, key=desk.channel.public_key), encoding="utf-8"
    )
    customer = unique("cust-")
    good = identity_hmac(secret=secret, external_id=customer)
    url = f"{site_url}/account.html?id={customer}&name=Ann&hmac={good}"
    laptop_ctx = browser.new_context(locale="en-US")
    phone_ctx = browser.new_context(locale="en-US")
    forger_ctx = browser.new_context(locale="en-US")
    try:
        # given a logged-in customer on a laptop, identified by the shop page, who writes
        laptop, widget = _open(laptop_ctx, url)
        laptop.wait_for_function("document.title === 'identified'", timeout=TIMEOUT)
        widget.locator("#composer").fill("Hello from the laptop")
        widget.locator("#send").click()
        with schema_context(schema):
            said = wait_until(
                lambda: Message.objects.filter(content="Hello from the laptop").first(),
                what="the laptop's message",
            )
            contact = Visitor.objects.get(channel=desk.channel, external_id=customer)
            assert said.sender_key == contact.member_key
        # when the same customer opens the shop on a phone (another browser context)
        phone, on_phone = _open(phone_ctx, url)
        phone.wait_for_function("document.title === 'identified'", timeout=TIMEOUT)
        # then the phone shows the laptop's conversation: one contact, one history
        on_phone.locator("#messages .msg .msg-text", has_text="Hello from the laptop").wait_for(
            timeout=TIMEOUT
        )
        with schema_context(schema):
            assert Visitor.objects.filter(channel=desk.channel, external_id=customer).count() == 1
        # and an answer from the phone lands in the same conversation
        on_phone.locator("#composer").fill("And from the phone")
        on_phone.locator("#send").click()
        with schema_context(schema):
            second = wait_until(
                lambda: Message.objects.filter(content="And from the phone").first(),
                what="the phone's message",
            )
        assert second.conversation_id == said.conversation_id
        widget.locator("#messages .msg .msg-text", has_text="And from the phone").wait_for(
            timeout=TIMEOUT
        )

        # when someone forges an HMAC to open another customer's chat
        victim = unique("victim-")
        forged = identity_hmac(secret="guessed", external_id=victim)
        page, on_forger = _open(
            forger_ctx, f"{site_url}/account.html?id={victim}&name=Eve&hmac={forged}"
        )
        # then the widget says the identity could not be verified, and no contact exists
        page.wait_for_function("document.title.startsWith('refused')", timeout=TIMEOUT)
        error = on_forger.locator("#identity-error")
        error.wait_for(state="visible", timeout=TIMEOUT)
        assert "could not be verified" in error.inner_text()
        assert (
            on_forger.locator("#messages .msg-text", has_text="Hello from the laptop").count() == 0
        )
        with schema_context(schema):
            assert not Visitor.objects.filter(external_id=victim).exists()
    finally:
        laptop_ctx.close()
        phone_ctx.close()
        forger_ctx.close()
