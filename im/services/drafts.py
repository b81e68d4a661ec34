"""Checking what a sender wants to send before anything is written (IM-3, IM-4, IM-12): the
message's type, text, file or sticker, mentions and ``client_msg_id``. :func:`message_draft` turns
a frame's fields into a :class:`MessageDraft` that :func:`im.services.messages.message_send`
stores; a caller that must refuse bad input before it creates anything validates first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from im.models import Attachment, Message, Participant, Sticker
from im.senders import ROBOT_KEY, SYSTEM, Sender
from weiyu import parsing
from weiyu.errors import ServiceError

CLIENT_MSG_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _validate_text(content: object) -> str:
    if not isinstance(content, str):
        raise ServiceError("invalid", _("The message must be text."), field="content")
    text = content.strip()
    if not text:
        raise ServiceError("invalid", _("The message is empty."), field="content")
    limit = settings.WEIYU_MESSAGE_MAX_CHARS
    if len(text) > limit:
        raise ServiceError(
            "invalid",
            _("The message is longer than %(limit)d characters.") % {"limit": limit},
            field="content",
        )
    return text


USER_TYPES = {
    Message.Type.TEXT,
    Message.Type.IMAGE,
    Message.Type.VOICE,
    Message.Type.VIDEO,
    Message.Type.FILE,
    Message.Type.STICKER,
}
MEDIA_TYPES = {Message.Type.IMAGE, Message.Type.VOICE, Message.Type.VIDEO, Message.Type.FILE}
MAX_MENTIONS = 50
MENTION_ALL = "all"
MENTION_KEY_RE = re.compile(r"^u:[1-9][0-9]{0,18}$")
GROUP_ADMINS = {Participant.Role.OWNER, Participant.Role.ADMIN}


@dataclass
class MessageDraft:
    """A validated message before it is stored (:func:`message_draft`); a kind's send hook
    (:mod:`im.hooks`) may rewrite ``content`` before it is written."""

    msg_type: str
    content: str
    attachment: Attachment | None = None
    sticker_id: int | None = None
    mentions: list[str] | None = None
    internal: bool = False
    ref_seq: int | None = None
    meta: dict[str, Any] | None = None
    #: a system line's code and parameters (im/syslines.py); ``content`` is its default rendering
    code: str = ""
    params: dict[str, Any] | None = None


def _validate_mentions(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_MENTIONS:
        raise ServiceError(
            "invalid",
            _("mentions must be a list of at most %(n)d member keys.") % {"n": MAX_MENTIONS},
            field="mentions",
        )
    keys: list[str] = []
    for item in value:
        if not isinstance(item, str) or not (item == MENTION_ALL or MENTION_KEY_RE.match(item)):
            raise ServiceError(
                "invalid", _('mentions may only hold "all" and user keys.'), field="mentions"
            )
        if item not in keys:
            keys.append(item)
    return keys


def _draft(
    *,
    sender: Sender,
    msg_type: object,
    content: object,
    attachment_id: object,
    sticker_id: object,
    conversation_id: int,
) -> MessageDraft:
    if msg_type not in USER_TYPES:
        raise ServiceError("invalid", _("Unknown message type."), field="msg_type")
    if msg_type == Message.Type.TEXT:
        return MessageDraft(msg_type=msg_type, content=_validate_text(content))
    if msg_type == Message.Type.STICKER:
        sticker = parsing.positive_int(sticker_id, "sticker_id")
        if not Sticker.objects.filter(pk=sticker, is_active=True).exists():
            raise ServiceError("invalid", _("No such sticker."), field="sticker_id")
        return MessageDraft(msg_type=msg_type, content="", sticker_id=sticker)
    attachment = Attachment.objects.filter(
        pk=parsing.positive_int(attachment_id, "attachment_id"),
        conversation_id=conversation_id,
        uploader_key=sender.key,
    ).first()
    if attachment is None:
        raise ServiceError(
            "invalid",
            _("Upload the file to this conversation first."),
            field="attachment_id",
        )
    if attachment.kind != msg_type:
        raise ServiceError(
            "invalid", _("The file does not match the message type."), field="msg_type"
        )
    caption = "" if content in (None, "") else _validate_text(content)
    return MessageDraft(msg_type=msg_type, content=caption, attachment=attachment)


def message_draft(
    *,
    sender: Sender,
    conversation_id: int | None = None,
    content: object = None,
    msg_type: object = Message.Type.TEXT,
    attachment_id: object = None,
    sticker_id: object = None,
    mentions: object = None,
    internal: object = False,
    meta: dict[str, Any] | None = None,
) -> MessageDraft:
    """Validate a message's fields (see :func:`message_send`) without writing anything.

    A caller that must refuse bad input before it creates anything (kefu's first visitor message
    opens a session) validates first and passes the draft to :func:`message_send`.
    Queries: none for text; one for a sticker or an attachment (which must have been uploaded
    by ``sender`` to ``conversation_id``). Raises ``ServiceError("invalid")``.
    """
    if sender.key == SYSTEM.key:
        return MessageDraft(
            msg_type=Message.Type.SYSTEM, content=_validate_text(content), meta=meta
        )
    if sender.key == ROBOT_KEY:
        return MessageDraft(msg_type=Message.Type.TEXT, content=_validate_text(content), meta=meta)
    draft = _draft(
        sender=sender,
        msg_type=msg_type,
        content=content,
        attachment_id=attachment_id,
        sticker_id=sticker_id,
        conversation_id=conversation_id,
    )
    draft.mentions = _validate_mentions(mentions)
    draft.internal = internal is True
    return draft


def client_msg_id_check(client_msg_id: object) -> None:
    """``ServiceError("invalid")`` unless ``client_msg_id`` is None or 1-64 of
    ``[A-Za-z0-9_-]`` (IM-12)."""
    if client_msg_id is not None and (
        not isinstance(client_msg_id, str) or not CLIENT_MSG_ID_RE.match(client_msg_id)
    ):
        raise ServiceError(
            "invalid",
            _("client_msg_id must be 1-64 characters of A-Z, a-z, 0-9, _ and -."),
            field="client_msg_id",
        )
