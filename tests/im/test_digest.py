"""The e-mail digest of unread messages (im.digest): real SMTP server (aiosmtpd), the beat's task
run by a real Celery worker, then the scan run here to check what must not be sent again. A
message is "old" because the test moves its time back, as if written 20 minutes ago."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import schema_context

from im.digest import unread_digest
from im.models import Message
from im.services import groups
from im.services import messages as im_messages
from im.services.receipts import receipt_update
from im.tasks import unread_digest_task
from kefu import presence
from kefu.senders import agent_sender
from org.models import AlertPreferences
from tests.conftest import inbox_open, make_agent, unique
from tests.waits import wait_until


def _person(name: str, **prefs):
    with schema_context("acme"):
        user = make_agent(inbox=False, name=name)
        user.email = f"{user.username}@example.com"
        user.language = "en"  # the digest is written in the person's language
        user.save(update_fields=["email", "language"])
        if prefs:
            AlertPreferences.objects.create(user=user, **prefs)
    return user


def _say(group_id: int, author, text: str, *, minutes_ago: int = 0) -> Message:
    with schema_context("acme"):
        message, _ = im_messages.message_send(
            conversation_id=group_id,
            sender=agent_sender(author),
            content=text,
            client_msg_id=unique("m"),
        )
        if minutes_ago:
            Message.objects.filter(pk=message.pk).update(
                created_at=timezone.now() - timedelta(minutes=minutes_ago)
            )
    return message


def _mails_to(inbox, user) -> list:
    return [m for rcpt, m in inbox.messages if user.email in rcpt]


def _scan(port: int) -> int:
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
        ),
        schema_context("acme"),
    ):
        return unread_digest()


def test_unread_messages_are_mailed_once_after_the_chosen_delay(smtp, mail_worker):
    port, inbox = smtp
    author = _person("ann")
    reader = _person("ben")  # the default: a digest after 15 minutes
    with schema_context("acme"):
        group = groups.group_create(creator=author, title=unique("Ops"), member_ids=[reader.pk])
    _say(group.pk, author, "The refund for order 4411 is stuck", minutes_ago=20)
    _say(group.pk, author, "Can you call the customer back?", minutes_ago=18)
    _say(group.pk, author, "Never mind the second line, found it")  # just now: not yet due

    unread_digest_task.delay("acme")  # as the beat does, through the worker
    (mail,) = wait_until(lambda: _mails_to(inbox, reader), what="the digest")
    assert mail["Subject"] == "2 unread messages in Weiyu"
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert f"{author.name}: The refund for order 4411 is stuck" in body
    assert f"{author.name}: Can you call the customer back?" in body
    assert "Never mind" not in body
    assert f"/inbox/#c{group.pk}" in body
    assert "/inbox/alerts/" in body  # where to change it
    assert _mails_to(inbox, author) == []  # one's own messages are not "unread"

    # nothing new is due: no second mail with the same messages
    _scan(port)
    assert len(_mails_to(inbox, reader)) == 1
    # the third message becomes due: it alone is mailed
    with schema_context("acme"):
        Message.objects.filter(conversation_id=group.pk, content__startswith="Never").update(
            created_at=timezone.now() - timedelta(minutes=16)
        )
    _scan(port)
    second = _mails_to(inbox, reader)[1]
    assert second["Subject"] == "1 unread message in Weiyu"
    text = second.get_body(preferencelist=("plain",)).get_content()
    assert "Never mind the second line" in text
    assert "refund" not in text


def test_no_digest_when_read_when_the_inbox_is_open_or_when_turned_off(smtp):
    port, inbox = smtp
    author = _person("ann")
    reader, at_desk, no_mail = (
        _person("cat"),
        _person("dan"),
        _person("eve", digest_after_minutes=0),
    )
    slow = _person("fay", digest_after_minutes=60)
    with schema_context("acme"):
        group = groups.group_create(
            creator=author,
            title=unique("Ops"),
            member_ids=[reader.pk, at_desk.pk, no_mail.pk, slow.pk],
        )
        inbox_open(at_desk)
    message = _say(group.pk, author, "Stand-up moved to 10:30", minutes_ago=30)
    with schema_context("acme"):
        receipt_update(conversation_id=group.pk, member_key=reader.member_key, read_seq=message.seq)

    _scan(port)
    for user in (reader, at_desk, no_mail, slow):  # read; inbox open; off; 60 minutes not yet
        assert _mails_to(inbox, user) == [], user.username

    # the tab closed: the message, still unread, is mailed on the next scan
    with schema_context("acme"):
        presence.socket_closed(
            schema="acme", user_id=at_desk.pk, channel_name=f"tests.inbox!{at_desk.pk}"
        )
    _scan(port)
    assert len(_mails_to(inbox, at_desk)) == 1
    assert _mails_to(inbox, reader) == []
