"""A customer mails the tenant's support address; the agent sees the mail in the inbox without
its quoted history and signature, with the original downloadable, and replies; the customer's
SMTP server receives the reply in the thread, and the customer's answer lands in the same
conversation. Real Chromium, daphne, a Celery worker, a real IMAP server (pymap) and a real SMTP
server (aiosmtpd)."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.channels.mail_inbound import imap_poll_once
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in, fresh_desk
from tests.kefu.test_channels_email import SIGNED, _mail, email_channel
from tests.mail import ImapServer, SmtpInbox
from tests.servers import celery_worker_start, daphne_start, free_port
from tests.waits import wait_until
from weiyu.celery import app

pytestmark = pytest.mark.e2e


@pytest.fixture
def mail_site(django_db_blocker, settings):
    """A fresh tenant with an e-mail channel reading a local IMAP server and sending to a local
    SMTP server, its own daphne and a worker allowed to reach both."""
    imap = ImapServer()
    inbox = SmtpInbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    allow = f"127.0.0.1:{imap.port},127.0.0.1:{smtp.port}"
    settings.WEIYU_OUTBOUND_ALLOW = allow
    with django_db_blocker.unblock():
        desk = fresh_desk("mailsite")
        channel = email_channel(desk, imap, smtp.port)
    queue = unique("mail-e2e")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue  # the mails this process polls are handled there
    worker = celery_worker_start(
        queue=queue,
        name="mail-e2e",
        concurrency=1,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,
        WEIYU_OUTBOUND_ALLOW=allow,
    )
    server = daphne_start(name="mail-e2e-daphne", CELERY_QUEUE=queue)
    yield desk, channel, server, imap, inbox, django_db_blocker
    server.stop()
    worker.stop()
    app.conf.task_default_queue = previous
    smtp.stop()
    imap.stop()


def _poll(desk, channel, blocker) -> int:
    with blocker.unblock(), schema_context(desk.tenant.schema_name):
        return imap_poll_once(channel=channel)


def test_an_agent_answers_a_mail_from_the_inbox_in_the_customers_thread(browser, mail_site):
    desk, channel, server, imap, smtp_inbox, blocker = mail_site
    host = f"{desk.tenant.schema_name}.localhost"
    address = channel.account.email_address
    ctx = browser.new_context(locale="en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, server.url(host, "/inbox/login/"), desk.agents[0].username)
        page.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)

        # when a customer's mail (signed, quoting an older mail) arrives in the support mailbox
        raw, first_id = _mail(to=address, text=SIGNED)
        imap.append(raw)
        assert _poll(desk, channel, blocker) == 1

        # then the agent gets the conversation under the customer's name, showing the new text
        # only, with the original mail to download
        page.locator(".conv-item", has_text="Ann Lee").click(timeout=TIMEOUT)
        mail_message = page.locator("#messages .msg", has_text="has not arrived")
        mail_message.wait_for(timeout=TIMEOUT)
        expect(mail_message).not_to_contain_text("Your order has shipped")
        expect(mail_message).not_to_contain_text("Acme Corp")
        expect(mail_message).to_contain_text("original.eml")
        expect(page.locator("#conv-heading-channel")).to_have_text("via e-mail")

        # when the agent replies
        page.locator("#composer").fill("A new parcel leaves today.")
        page.locator("#composer").press("Enter")

        # then the customer's SMTP server receives it in the thread, from the support address
        sent = wait_until(
            lambda: [m for _r, m in smtp_inbox.messages if "A new parcel" in str(m)],
            what="the reply at the SMTP server",
        )[0]
        assert sent["In-Reply-To"] == f"<{first_id}>"
        assert sent["Subject"] == "Re: Order 1042"
        assert sent["From"].addresses[0].addr_spec == address

        # when the customer answers the reply
        answer, _aid = _mail(
            to=address,
            text="Great, thank you!\n\nOn Tue, Shop wrote:\n> A new parcel leaves today.\n",
            subject="Re: Order 1042",
            reply_to_id=str(sent["Message-ID"]),
        )
        imap.append(answer)
        assert _poll(desk, channel, blocker) == 1

        # then it appears in the same conversation, still open in the inbox
        page.locator("#messages .msg", has_text="Great, thank you!").wait_for(timeout=TIMEOUT)
        expect(page.locator(".conv-item", has_text="Ann Lee")).to_have_count(1)
    finally:
        ctx.close()
