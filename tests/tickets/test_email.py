"""A public reply reaches the requester by e-mail, sent by a real Celery worker to a real SMTP
server started by the test (aiosmtpd); internal notes never leave."""

from __future__ import annotations

import time

from django_tenants.utils import schema_context

from kefu.services.visitors import visitor_start
from tests.waits import wait_until
from tickets import tasks
from tickets.models import Comment
from tickets.services import comments as ticket_comments
from tickets.services import email
from tickets.services import tickets as ticket_services
from weiyu.celery import app


def test_a_public_reply_is_emailed_once_and_a_note_never(desk, smtp, mail_worker):
    _port, inbox = smtp
    with schema_context(desk.tenant.schema_name):
        visitor, _token = visitor_start(channel=desk.channel, language="en-GB")
        ticket = ticket_services.ticket_leave_message(
            visitor=visitor, body="Where is my refund?", email="li.lei@example.com"
        )
        ticket_comments.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="VIP customer", public=False
        )
        reply = ticket_comments.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="您的退款已于今天退回。Refunded today."
        )
    wait_until(lambda: inbox.messages, what="the reply's mail")
    time.sleep(1)  # a quiet window: a second mail would show up now
    assert len(inbox.messages) == 1
    recipients, mail = inbox.messages[0]
    assert recipients == ["li.lei@example.com"]
    assert mail["Subject"] == f"Re: [#{ticket.number}] Where is my refund?"
    text = mail.get_content()
    assert "您的退款已于今天退回。Refunded today." in text
    assert "VIP" not in text
    with schema_context(desk.tenant.schema_name):
        assert Comment.objects.get(pk=reply.pk).emailed_at is not None


def test_the_reply_is_queued_under_the_name_of_its_task():
    # the comment service queues the e-mail by name (tickets.tasks imports the services)
    assert tasks.reply_email_task.name == email.REPLY_EMAIL_TASK
    assert email.REPLY_EMAIL_TASK in app.tasks
