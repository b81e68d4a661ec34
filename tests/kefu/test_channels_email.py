"""E-mail as a channel (kefu.channels.mail): mails in from a real IMAP server (pymap) or through
the inbound SMTP endpoint (aiosmtpd), threaded into conversations, trimmed for the agent with the
original kept; replies out by SMTP to a real local server (aiosmtpd) by the Celery worker, with
the thread's headers; nothing stored twice; failures shown with a retry; ticket replies of an
e-mail conversation mailed into the same thread."""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from aiosmtpd.controller import Controller
from django.utils import translation
from django_tenants.utils import schema_context

from im.models import Message
from kefu.channels import mail
from kefu.channels.delivery import delivery_retry
from kefu.channels.inbound import channel_event_handle
from kefu.channels.mail_inbound import (
    InboundSmtpHandler,
    imap_idle_wait,
    imap_poll_once,
    mail_accept,
)
from kefu.models import Channel, ChannelAccount, ChannelEvent, Delivery, Session
from kefu.services import messages
from org.models import User
from tests.conftest import agent_client, make_desk, unique
from tests.mail import SmtpInbox
from tests.servers import free_port
from tests.waits import wait_until
from tickets.services import comments, tickets
from tickets.services.email import reply_email_send

SIGNED = """Hello, my order 1042 has not arrived.

Best regards,
Ann Lee
Acme Corp

On Mon, 1 Dec 2026 at 10:00, Shop <help@shop.test> wrote:
> Your order has shipped.
> Kind regards
"""


def _mail(
    *,
    to: str,
    text: str = SIGNED,
    subject: str = "Order 1042",
    sender: str = "Ann Lee <ann@customer.test>",
    reply_to_id: str | None = None,
    html: str | None = None,
    files: tuple[tuple[str, bytes, str], ...] = (),
) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="customer.test")
    if reply_to_id:
        msg["In-Reply-To"] = reply_to_id
        msg["References"] = reply_to_id
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for name, data, ctype in files:
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes(), str(msg["Message-ID"]).strip("<>")


class RefusingInbox(SmtpInbox):
    """An :class:`SmtpInbox` that answers the next ``refusing`` mails "451 try again later"."""

    refusing = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.refusing > 0:
            self.refusing -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def customer_smtp():
    """The SMTP server the product sends replies to: ``(port, inbox)``."""
    inbox = RefusingInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture(scope="module")
def email_worker(django_db_setup, django_db_blocker, imap_server, customer_smtp):
    """A Celery worker on a queue of its own, allowed to reach the local IMAP and SMTP servers;
    failed sends are tried again after 0.2 s, 0.4 s and given up after 3 attempts."""
    from tests.servers import celery_worker_start
    from weiyu.celery import app

    queue = unique("email")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue,
        name="email",
        concurrency=2,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{imap_server.port},127.0.0.1:{customer_smtp[0]}",
        WEIYU_CHANNEL_RETRY_S="0.2",
        WEIYU_CHANNEL_SEND_ATTEMPTS="3",
    )
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


@pytest.fixture
def allow_local(settings, imap_server, customer_smtp):
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{imap_server.port},127.0.0.1:{customer_smtp[0]}"


def email_channel(desk, imap, smtp_port: int) -> Channel:
    """An e-mail channel on the desk's workgroup, reading the IMAP server's INBOX and sending by
    the SMTP server, both without TLS (local test servers)."""
    with schema_context(desk.tenant.schema_name):
        channel = Channel.objects.create(
            name=unique("mail"), kind=Channel.Kind.EMAIL, workgroup=desk.workgroup
        )
        ChannelAccount.objects.create(
            channel=channel,
            email_address=f"{unique('help')}@shop.test",
            email_name="Shop Support",
            imap_host="127.0.0.1",
            imap_port=imap.port,
            imap_tls="none",
            imap_user=imap.user,
            imap_password=imap.password,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_tls="none",
        )
    return channel


def _poll(channel: Channel) -> int:
    with schema_context("acme"):
        return imap_poll_once(channel=channel)


def _session(channel: Channel, address: str, *, exclude: int | None = None) -> Session | None:
    with schema_context("acme"):
        sessions = Session.objects.select_related("visitor").filter(
            visitor__channel=channel, visitor__external_id=address, agent__isnull=False
        )
        if exclude:
            sessions = sessions.exclude(pk=exclude)
        return sessions.order_by("id").first()


def _texts(conversation_id: int) -> list[str]:
    with schema_context("acme"):
        return list(
            Message.objects.filter(conversation_id=conversation_id, sender_type="visitor")
            .order_by("seq")
            .values_list("content", flat=True)
        )


def _sent(inbox: SmtpInbox, text: str):
    return [m for _rcpt, m in inbox.messages if text in m.get_body(("plain",)).get_content()]


def test_parse_trims_quotes_and_signature_and_reduces_html_to_text():
    # given a reply with a signature and quoted history, and an HTML-only mail with a script
    raw, _mid = _mail(to="help@shop.test")
    html_only = EmailMessage()
    html_only["From"] = "bob@customer.test"
    html_only.set_content(
        "<p>Hi &amp; hello<script>alert(1)</script></p><div>second</div>", subtype="html"
    )

    # when they are parsed
    parsed = mail.mail_parse(raw)
    from_html = mail.mail_parse(html_only.as_bytes())

    # then the agent's text is the new part only; the HTML is plain text without the script
    assert parsed.trimmed == "Hello, my order 1042 has not arrived."
    assert "Ann Lee" in parsed.full
    assert "> Your order has shipped." in parsed.full
    assert parsed.sender == "ann@customer.test"
    assert from_html.trimmed == "Hi & hello\nsecond"


def test_malformed_mail_without_sender_is_refused():
    with pytest.raises(mail.ChannelInputError):
        mail.mail_parse(b"Subject: no sender\r\n\r\nbody")


def test_a_mail_reaches_an_agent_the_reply_is_threaded_and_the_answer_joins_the_conversation(
    acme, imap_server, customer_smtp, email_worker, allow_local
):
    # given an e-mail channel served by an online agent
    port, inbox = customer_smtp
    desk = make_desk(acme, agents=1)
    channel = email_channel(desk, imap_server, port)
    address = channel.account.email_address
    raw, first_id = _mail(to=address, files=(("invoice.pdf", b"%PDF-1.4 test", "application/pdf"),))
    imap_server.append(raw)

    # when the channel's IMAP folder is polled (twice: the second finds nothing new)
    assert _poll(channel) == 1
    assert _poll(channel) == 0

    # then the customer is routed to the agent; the agent sees the new text only, with the
    # whole mail downloadable and the attachment as a file message
    session = wait_until(
        lambda: _session(channel, "ann@customer.test"), what="the mail's customer assigned"
    )
    assert session.visitor.name == "Ann Lee"
    conversation_id = session.conversation_id
    wait_until(lambda: len(_texts(conversation_id)) == 2, what="mail and attachment stored")
    with schema_context("acme"):
        stored = list(
            Message.objects.filter(conversation_id=conversation_id, sender_type="visitor")
            .select_related("attachment")
            .order_by("seq")
        )
        assert stored[0].content == "Order 1042\n\nHello, my order 1042 has not arrived."
        assert stored[0].attachment.name == "original.eml"
        with stored[0].attachment.file.open("rb") as fh:
            # byte for byte, but for the CRLF line ends IMAP stores
            assert fh.read().replace(b"\r\n", b"\n") == raw
        assert stored[1].attachment.name == "invoice.pdf"
        assert ChannelEvent.objects.filter(channel=channel).count() == 1

    # when the agent replies
    with schema_context("acme"):
        reply, _c = messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=conversation_id,
            client_msg_id=unique("c"),
            content="It ships today.",
        )

    # then the customer's SMTP server receives a reply in the thread, from the channel
    sent = wait_until(lambda: _sent(inbox, "It ships today."), what="the reply mailed")[0]
    assert sent["From"].addresses[0].addr_spec == address
    assert sent["From"].addresses[0].display_name == "Shop Support"
    assert sent["To"] == "ann@customer.test"
    assert sent["Subject"] == "Re: Order 1042"
    assert sent["In-Reply-To"] == f"<{first_id}>"
    assert f"<{first_id}>" in sent["References"]
    # as text and HTML, quoting the customer's words below the answer, as mail programs do
    plain = sent.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain.startswith("It ships today.\n")
    assert "Ann Lee wrote:" in plain
    assert "> Hello, my order 1042 has not arrived." in plain
    markup = sent.get_body(("html",)).get_content()
    assert "It ships today." in markup
    assert "Ann Lee wrote:" in markup
    assert "<blockquote" in markup
    assert "Hello, my order 1042 has not arrived." in markup.split("<blockquote", 1)[1]
    wait_until(lambda: _delivery_status(reply.pk) == "sent", what="the delivery marked sent")

    # when the customer answers that reply (quoting it) and, separately, writes about something else
    answer, _aid = _mail(
        to=address,
        text="Thanks!\n\nOn Tue, Shop wrote:\n> It ships today.\n",
        subject="Re: Order 1042",
        reply_to_id=str(sent["Message-ID"]),
    )
    other, _oid = _mail(to=address, text="Do you sell gift cards?", subject="Gift cards")
    imap_server.append(answer)
    imap_server.append(other)
    assert _poll(channel) == 2

    # then the answer joins the same conversation; the new subject starts another one
    wait_until(
        lambda: "Thanks!" in _texts(conversation_id), what="the answer in the same conversation"
    )
    second = wait_until(
        lambda: _session(channel, "ann@customer.test", exclude=session.pk),
        what="a second conversation for the new subject",
    )
    assert second.conversation_id != conversation_id
    assert second.visitor_id == session.visitor_id
    assert _texts(second.conversation_id) == ["Gift cards\n\nDo you sell gift cards?"]


def _delivery_status(message_id: int) -> str:
    with schema_context("acme"):
        delivery = Delivery.objects.filter(message_id=message_id).first()
        return delivery.status if delivery else ""


def test_the_inbound_smtp_endpoint_routes_by_recipient_and_refuses_other_addresses(
    acme, imap_server, customer_smtp, email_worker
):
    # given an e-mail channel and the inbound SMTP endpoint
    desk = make_desk(acme, agents=1)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    address = channel.account.email_address
    controller = Controller(InboundSmtpHandler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        raw, _mid = _mail(to=address, text="Is the shop open on Sunday?", sender="cy@customer.test")

        # when a mail server delivers a mail for the channel's address, twice (a retry)
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=30) as client:
            client.sendmail("cy@customer.test", [address], raw)
            client.sendmail("cy@customer.test", [address], raw)
            # and one for an address nobody receives
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("cy@customer.test", ["nobody@shop.test"], raw)
    finally:
        controller.stop()

    # then it is stored once and reaches the agent
    session = wait_until(lambda: _session(channel, "cy@customer.test"), what="routed")
    wait_until(lambda: _texts(session.conversation_id), what="the message stored")
    assert _texts(session.conversation_id) == ["Order 1042\n\nIs the shop open on Sunday?"]
    with schema_context("acme"):
        assert ChannelEvent.objects.filter(channel=channel).count() == 1


def test_a_reply_the_smtp_server_keeps_refusing_shows_not_delivered_and_can_be_retried(
    acme, imap_server, customer_smtp, email_worker, allow_local
):
    # given an e-mail conversation, and an SMTP server that answers "try again later" three times
    port, inbox = customer_smtp
    desk = make_desk(acme, agents=1)
    channel = email_channel(desk, imap_server, port)
    raw, _mid = _mail(to=channel.account.email_address, sender="dee@customer.test")
    imap_server.append(raw)
    _poll(channel)
    session = wait_until(lambda: _session(channel, "dee@customer.test"), what="routed")
    inbox.refusing = 3

    # when the agent replies
    with schema_context("acme"):
        reply, _c = messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=session.conversation_id,
            client_msg_id=unique("c"),
            content="We are on it.",
        )

    # then, after its three attempts, the reply reads "not delivered" with the server's reason
    wait_until(lambda: _delivery_status(reply.pk) == "failed", what="the delivery failed")
    with schema_context("acme"):
        meta = Message.objects.get(pk=reply.pk).meta["delivery"]
        assert meta["attempts"] == 3
        assert "451" in meta["error"]
    assert not _sent(inbox, "We are on it.")

    # when the agent retries, the mail goes out
    with schema_context("acme"):
        delivery_id = Delivery.objects.get(message_id=reply.pk).pk
        delivery_retry(user=desk.agents[0], delivery_id=delivery_id)
    wait_until(lambda: _sent(inbox, "We are on it."), what="the retried mail")
    wait_until(lambda: _delivery_status(reply.pk) == "sent", what="marked sent")


def test_a_ticket_reply_of_an_email_conversation_goes_out_in_the_thread(
    acme, imap_server, customer_smtp, email_worker, allow_local
):
    # given a ticket made from an e-mail conversation
    desk = make_desk(acme, agents=1)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    raw, first_id = _mail(to=channel.account.email_address, sender="eve@customer.test")
    imap_server.append(raw)
    _poll(channel)
    session = wait_until(lambda: _session(channel, "eve@customer.test"), what="routed")
    with schema_context("acme"):
        ticket = tickets.ticket_create(
            subject="Order 1042 missing",
            body="See the conversation.",
            source="conversation",
            creator=desk.agents[0],
            requester_visitor=session.visitor,
            conversation_id=session.conversation_id,
        )
        comment = comments.comment_add(
            ticket_id=ticket.pk, body="A new parcel is on its way.", user=desk.agents[0]
        )

        # when the reply is mailed (by the worker, or here: whichever comes first, once)
        reply_email_send(comment_id=comment.pk)

    # then it arrives from the channel's address in the customer's thread
    sent = wait_until(lambda: _sent(customer_smtp[1], "A new parcel is on its way."), what="mail")[
        0
    ]
    assert sent["From"].addresses[0].addr_spec == channel.account.email_address
    assert sent["In-Reply-To"] == f"<{first_id}>"
    assert sent["Subject"] == "Re: Order 1042"


def test_connection_test_logs_in_to_both_servers(acme, imap_server, customer_smtp, allow_local):
    # given a channel whose IMAP password is right, then wrong
    desk = make_desk(acme, agents=0)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    with schema_context("acme"):
        account = ChannelAccount.objects.get(channel=channel)

        # then the test says both log-ins work
        assert [ok for ok, _t in mail.connection_test(account)] == [True, True]

        account.imap_password = "wrong"
        results = mail.connection_test(account)
    assert results[0][0] is False
    assert results[0][1].startswith("IMAP")


def test_a_private_server_is_refused_without_the_operators_allowance(acme, customer_smtp):
    # given a channel whose SMTP host is a loopback address nobody allowed
    desk = make_desk(acme, agents=0)
    with schema_context("acme"):
        channel = Channel.objects.create(name=unique("m"), kind="email", workgroup=desk.workgroup)
        account = ChannelAccount.objects.create(
            channel=channel, email_address="x@shop.test", smtp_host="127.0.0.1",
            smtp_port=customer_smtp[0], smtp_tls="none",
        )  # fmt: skip

        # then connecting is refused for good, with the reason
        with pytest.raises(mail.DeliveryError) as refused:
            mail.smtp_connect(account)
    assert refused.value.permanent
    assert "loopback" in refused.value.message


def test_the_admin_offers_the_email_settings_and_keeps_passwords_secret(acme, imap_server):
    desk = make_desk(acme, agents=0)
    channel = email_channel(desk, imap_server, 25)
    with schema_context("acme"):
        admin = User.objects.create_user(
            username=unique("root"), password="pw-Long-enough-1", is_staff=True, is_superuser=True
        )
    client = agent_client(admin)
    page = client.get(f"/admin/kefu/channel/{channel.pk}/change/").content.decode()
    assert "IMAP host" in page
    assert "SMTP password" in page
    assert imap_server.password not in page


def test_imap_idle_wakes_up_when_a_mail_arrives_and_times_out_otherwise(
    acme, imap_server, customer_smtp, allow_local
):
    # given an e-mail channel on a server that offers IDLE
    desk = make_desk(acme, agents=0)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    with schema_context("acme"):
        # then waiting without a new mail ends at the time-out
        assert imap_idle_wait(channel=channel, timeout_s=1) is False

    # when a mail arrives while the channel waits
    woke: list[bool] = []

    def wait() -> None:
        with schema_context("acme"):
            woke.append(imap_idle_wait(channel=channel, timeout_s=60))

    waiter = threading.Thread(target=wait)
    waiter.start()
    raw, _mid = _mail(to=channel.account.email_address, sender="fay@customer.test")
    # the waiter may not be idling yet: add mails until it has seen one
    wait_until(lambda: woke or imap_server.append(raw), what="IDLE woken", interval=0.5)
    waiter.join(timeout=60)

    # then it wakes up at once, and the poll fetches the mail
    assert woke == [True]
    assert _poll(channel) >= 1


def test_oversized_and_senderless_mails_are_refused_or_skipped_with_nothing_stored(
    acme, imap_server, customer_smtp, settings
):
    # given an e-mail channel that accepts mails up to 2 KB
    settings.WEIYU_EMAIL_MAX_BYTES = 2048
    desk = make_desk(acme, agents=1)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    big, _mid = _mail(to="x@shop.test", text="x" * 4096, sender="gil@customer.test")
    senderless = b"Subject: hello\r\nMessage-ID: <nofrom@x.test>\r\n\r\nWho am I?\r\n"
    with schema_context("acme"):
        # then the oversized one is refused before anything is stored
        with pytest.raises(mail.ChannelInputError):
            mail_accept(channel=channel, raw=big)
        assert not ChannelEvent.objects.filter(channel=channel).exists()

        # and the one without a sender is stored once, then handled into nothing, with its reason
        assert mail_accept(channel=channel, raw=senderless) is True
        assert mail_accept(channel=channel, raw=senderless) is False
        event = ChannelEvent.objects.get(channel=channel)
        with translation.override("en"):  # the reason is written in the handler's language
            assert channel_event_handle(event_id=event.pk) is None
        event.refresh_from_db()
        assert event.handled_at is not None
        assert event.error == "The mail has no sender address."
        assert not Session.objects.filter(channel=channel).exists()


def test_the_admin_action_tests_the_connection_and_says_what_failed(
    acme, imap_server, customer_smtp, allow_local
):
    # given an e-mail channel whose SMTP host is missing
    desk = make_desk(acme, agents=0)
    channel = email_channel(desk, imap_server, customer_smtp[0])
    with schema_context("acme"):
        ChannelAccount.objects.filter(channel=channel).update(smtp_host="")
        admin = User.objects.create_user(
            username=unique("root"), password="pw-Long-enough-1", is_staff=True, is_superuser=True
        )

    # when the administrator runs "Test the e-mail connection" on it
    response = agent_client(admin).post(
        "/admin/kefu/channel/",
        {"action": "email_connection_test", "_selected_action": [channel.pk]},
        follow=True,
    )

    # then the page says IMAP works and SMTP has no host
    page = response.content.decode()
    assert "IMAP: connected and logged in." in page
    assert "SMTP: no host set." in page
