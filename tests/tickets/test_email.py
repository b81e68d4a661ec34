"""A public reply reaches the requester by e-mail, sent by a real Celery worker to a real SMTP
server started by the test (aiosmtpd); internal notes never leave."""

from __future__ import annotations

import time

from django_tenants.utils import schema_context

from kefu.services import visitor_start
from tests.waits import wait_until
from tickets import services
from tickets.models import Comment


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
