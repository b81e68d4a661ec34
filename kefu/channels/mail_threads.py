"""A received mail handled into the inbox (docs/channels.md, "E-mail"): its contact, its
thread's conversation, its text and files — through the widget's own send path. Called by the
shared event handler (kefu.channels.inbound) for events of e-mail channels."""

from __future__ import annotations

import base64
import hashlib

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.translation import gettext as _

from im.attachments import attachment_upload
from im.models import Message
from kefu.channels.base import ChannelInputError, logger
from kefu.channels.contacts import visitor_for_external
from kefu.channels.mail import ParsedMail, mail_parse, reference_add
from kefu.models import Channel, ChannelEvent, EmailReference, Visitor
from kefu.services.messages import visitor_message_send
from weiyu.errors import ServiceError


def _thread(channel: Channel, mail: ParsedMail) -> tuple[str, EmailReference | None]:
    """The thread a mail belongs to: ``(thread key, the reference it answers or None)``."""
    if mail.references:
        known = (
            EmailReference.objects.filter(channel=channel, message_id__in=mail.references)
            .order_by("-id")
            .first()
        )
        if known is not None:
            return known.thread_key, known
    seed = mail.message_id or f"{mail.sender}:{mail.subject}:{mail.full[:200]}"
    return hashlib.sha256(seed.encode()).hexdigest()[:64], None


def mail_store(*, channel: Channel, event: ChannelEvent) -> Message | None:
    """Handle a stored mail (inside the event handler's transaction): the contact (one visitor
    per sender address), the thread's live session (or a new one, routed like a widget
    visitor's), the trimmed text as a file message carrying ``original.eml``, then one message
    per attachment. ``client_msg_id`` ``ch<event id>`` (``ch<id>a<n>`` for attachments) keeps a
    second run from storing anything twice. Returns the text's message. Raises ``ServiceError``
    as ``visitor_message_send`` does (closed, queue full, blocked…)."""
    raw = base64.b64decode(event.payload.get("mail", ""))
    mail = mail_parse(raw)
    visitor, _created = visitor_for_external(
        channel=channel, user_id=mail.sender, name=mail.sender_name or mail.sender
    )
    if not visitor.email:
        Visitor.objects.filter(pk=visitor.pk).update(email=mail.sender[:254])
    thread_key, _known = _thread(channel, mail)
    original = attachment_upload(
        conversation_id=None,
        uploader_key=visitor.member_key,
        upload=SimpleUploadedFile("original.eml", raw),
        kind="file",
        standalone=True,
    )
    text = mail.trimmed or mail.subject or _("(empty mail)")
    if mail.subject and not _known:
        text = f"{mail.subject}\n\n{text}"
    message, _c = visitor_message_send(
        visitor=visitor,
        conversation_id=None,
        content=text[: settings.WEIYU_MESSAGE_MAX_CHARS],
        client_msg_id=f"ch{event.pk}",
        msg_type="file",
        attachment_id=original.pk,
        thread_key=thread_key,
    )
    if mail.message_id:
        reference_add(channel, mail.message_id, message.conversation_id, thread_key, mail.subject)
    for number, (name, data, kind) in enumerate(mail.attachments, start=1):
        try:
            file = attachment_upload(
                conversation_id=None,
                uploader_key=visitor.member_key,
                upload=SimpleUploadedFile(name, data),
                kind=kind,
                standalone=True,
            )
        except ServiceError as exc:
            # a blocked type or an oversized file: the mail stays, the file is named in a line
            logger.info("email channel %s: attachment %r refused: %s", channel.pk, name, exc)
            continue
        visitor_message_send(
            visitor=visitor,
            conversation_id=message.conversation_id,
            content="",
            client_msg_id=f"ch{event.pk}a{number}",
            msg_type=kind,
            attachment_id=file.pk,
        )
    return message


def mail_sender(payload: dict) -> str:
    """The sender address of a stored mail event ("" when it cannot be read)."""
    try:
        return mail_parse(base64.b64decode(payload.get("mail", ""))).sender
    except (ValueError, ChannelInputError):
        return ""
