"""A public reply reaches the requester by e-mail, sent by a real Celery worker to a real SMTP
server started by the test (aiosmtpd); internal notes never leave."""

from __future__ import annotations

import time
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from django_tenants.utils import schema_context

from kefu.services import visitor_start
from tests.conftest import unique
from tests.servers import celery_worker_start, free_port
from tickets import services
from tickets.models import Comment
from weiyu.celery import app


class _Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def mail_worker(smtp):
    port, _inbox = smtp
    queue = unique("mail")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="mail", concurrency=1, EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(port)
    )
    yield
    worker.stop()
    app.conf.task_default_queue = previous


def test_a_public_reply_is_emailed_once_and_a_note_never(desk, smtp, mail_worker):
    _port, inbox = smtp
    with schema_context(desk.tenant.schema_name):
        visitor, _token = visitor_start(channel=desk.channel, language="en-GB")
        ticket = services.leave_message(
            visitor=visitor, body="Where is my refund?", email="li.lei@example.com"
        )
        services.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="VIP customer", public=False
        )
        reply = services.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="您的退款已于今天退回。Refunded today."
        )
    deadline = time.monotonic() + 30
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # a second mail would show up now
    assert len(inbox.messages) == 1
    recipients, mail = inbox.messages[0]
    assert recipients == ["li.lei@example.com"]
    assert mail["Subject"] == f"Re: [#{ticket.number}] Where is my refund?"
    text = mail.get_content()
    assert "您的退款已于今天退回。Refunded today." in text
    assert "VIP" not in text
    with schema_context(desk.tenant.schema_name):
        assert Comment.objects.get(pk=reply.pk).emailed_at is not None
