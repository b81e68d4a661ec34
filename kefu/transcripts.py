"""Visitor details from the widget's pre-chat form, and conversation transcripts by e-mail
(KF-11, KF-12)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im.models import Message
from im.services import conversations as im_conversations
from im.syslines import message_text
from kefu.models import Session, Visitor
from org import limits
from tenants import mail
from weiyu import ratelimit
from weiyu.errors import ServiceError

PHONE_RE = re.compile(r"^[0-9+()\-. ]{5,32}$")
#: a visitor may ask for the same conversation's transcript again after this long
RESEND_AFTER = timedelta(minutes=5)


def _email(value: object, field: str = "email") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("invalid", _("Enter your e-mail address."), field=field)
    try:
        validate_email(value.strip())
    except ValidationError as exc:
        raise ServiceError("invalid", _("Enter a valid e-mail address."), field=field) from exc
    return value.strip()[:254]


def visitor_payload(visitor: Visitor) -> dict[str, Any]:
    """``{"id", "key", "name", "email", "phone", "profile_done"}`` — ``profile_done``: every
    field of the channel's pre-chat form is filled in."""
    return {
        "id": visitor.pk,
        "key": visitor.member_key,
        "name": visitor.name,
        "email": visitor.email,
        "phone": visitor.phone,
        "profile_done": all(getattr(visitor, f) for f in visitor.channel.prechat if f != "name")
        and ("name" not in visitor.channel.prechat or visitor.name_given),
    }


def profile_update(
    *, visitor: Visitor, name: object = None, email: object = None, phone: object = None
) -> Visitor:
    """The pre-chat form: store what the visitor gave. Every field of the channel's form is
    required; others may be given too. Raises ``ServiceError("invalid")`` naming the field."""
    wanted = visitor.channel.prechat
    values = {"name": name, "email": email, "phone": phone}
    for field in wanted:
        value = values[field]
        if not isinstance(value, str) or not value.strip():
            raise ServiceError("invalid", _("Please fill in this field."), field=field)
    if isinstance(name, str) and name.strip():
        if len(name.strip()) > 100:
            raise ServiceError("invalid", _("The name is at most 100 characters."), field="name")
        visitor.name = name.strip()
        visitor.name_given = True
    if isinstance(email, str) and email.strip():
        visitor.email = _email(email)
    if isinstance(phone, str) and phone.strip():
        if not PHONE_RE.match(phone.strip()):
            raise ServiceError("invalid", _("Enter a valid phone number."), field="phone")
        visitor.phone = phone.strip()
    visitor.save(update_fields=["name", "name_given", "email", "phone"])
    # the conversations' participant name follows
    im_conversations.participant_rename(member_key=visitor.member_key, name=visitor.name)
    return visitor


def transcript_request(*, visitor: Visitor, conversation_id: object, email: object = None) -> str:
    """Have a worker e-mail the transcript of one of the visitor's conversations to ``email``
    (default: the address they gave). Returns the address. Raises ``ServiceError``: ``invalid``
    (no or bad address, bad id), ``not_found``, ``conflict`` (asked less than 5 minutes ago);
    ``RateLimitedError`` past the e-mails per visitor or per address and day
    (:func:`org.limits.transcript_email`)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    address = _email(email if email not in (None, "") else visitor.email)
    with transaction.atomic():
        session = (
            Session.objects.select_for_update()
            .filter(conversation_id=conversation_id, visitor=visitor)
            .first()
        )
        if session is None:
            raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
        now = timezone.now()
        if session.transcript_sent_at and now - session.transcript_sent_at < RESEND_AFTER:
            raise ServiceError("conflict", _("The transcript is on its way. Try again later."))
        ratelimit.check(
            limits.transcript_email(limits.effective(), visitor_id=visitor.pk, address=address)
        )
        session.transcript_sent_at = now
        session.save(update_fields=["transcript_sent_at"])
        if not visitor.email:
            Visitor.objects.filter(pk=visitor.pk).update(email=address)
        schema, session_id = connection.schema_name, session.pk

        def enqueue() -> None:
            transcript_email_task.delay(schema, session_id, address)

        transaction.on_commit(enqueue)
    return address


def transcript_send(*, session_id: int, address: str) -> bool:
    """Compose and send one transcript (the body of ``transcript_email_task``) in the visitor's
    language: every public message with its time and author (automatic lines in the visitor's
    language too); internal notes never."""
    session = Session.objects.select_related("visitor", "channel").filter(pk=session_id).first()
    if session is None:
        return False
    language = "en" if session.visitor.language.lower().startswith("en") else "zh-hans"
    messages = (
        Message.objects.filter(conversation_id=session.conversation_id, internal=False)
        .exclude(msg_type=Message.Type.RECALL)
        .order_by("seq")
    )
    with translation.override(language):
        lines = []
        for m in messages:
            when = timezone.localtime(m.created_at).strftime("%Y-%m-%d %H:%M")
            who = (
                _("You") if m.sender_type == Message.SenderType.VISITOR else (m.sender_name or "—")
            )
            text = _("(recalled)") if m.recalled_at else message_text(m)
            if m.attachment_id and not m.recalled_at:
                text = f"{text} [{_('file')}: {m.attachment.name}]".strip()
            lines.append(f"[{when}] {who}: {text}")
        title = session.channel.title or session.channel.name
        mail.mail_send(
            subject=_("Your conversation with %(site)s") % {"site": title},
            body="\n".join([*lines, "", _("Thank you for contacting us.")]),
            to=[address],
        )
    return True


# Defined beside the service it runs, under its historic name; kefu/tasks.py re-exports it.
@shared_task(
    name="kefu.tasks.transcript_email_task",
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=8,
)
def transcript_email_task(schema: str, session_id: int, address: str) -> bool:
    """E-mail a conversation's transcript to the visitor (:func:`transcript_send`); SMTP errors
    retry with back-off. Returns whether a mail was sent."""
    with schema_context(schema):
        return transcript_send(session_id=session_id, address=address)
