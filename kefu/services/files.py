"""Files in the widget (KF-1): what a visitor uploads and downloads with its widget token.

Uploads go through the same service as staff uploads (:func:`im.attachments.attachment_upload`):
the same size limits (``MessagingSettings``), the same checks of the content's real type and the
same storage path (the tenant's prefix, local disk or S3). What the anonymous path adds:

- rate limits per visitor and per client address and hour, on the number of uploads and on their
  total bytes (:func:`org.limits.upload`: the tenant's ``VisitorLimits`` over the platform
  defaults), counted in Redis over fixed clock hours; over one: ``RateLimitedError`` (429 with
  ``Retry-After``), before the file is checked and stored;
- a visitor downloads only files of conversations it is (still) a participant of, and of those
  only the ones it uploaded or that were sent to it in a public message: never the files of
  internal notes, nor a file an agent uploaded and did not send.

A file uploaded before the visitor's first message (no conversation yet) belongs to no
conversation until :func:`attachment_claim` moves it into the conversation its message opens.
"""

from __future__ import annotations

from django.core.files.uploadedfile import UploadedFile
from django.db.models import Exists
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.attachments import attachment_upload
from im.models import Attachment, Participant
from kefu.models import Visitor
from kefu.services import blocking
from org import limits
from weiyu import ratelimit
from weiyu.errors import ServiceError


def visitor_attachment_upload(
    *,
    visitor: Visitor,
    upload: UploadedFile,
    kind: object,
    conversation_id: object = None,
    ip: str = "",
) -> Attachment:
    """Store a file the visitor is about to send.

    ``conversation_id``: one of the visitor's open conversations, or None before its first
    message (the file then waits for :func:`attachment_claim`). ``kind``: ``image``, ``voice``,
    ``video`` or ``file`` (checks and limits of :func:`im.attachments.attachment_upload`).
    ``ip``: the client's address, for the per-address limits. A refused file does not count
    towards the hourly limits.

    Raises ``ServiceError``: ``forbidden`` (blocked visitor), ``invalid``, ``not_found`` (not the
    visitor's conversation), ``conversation_closed``, ``too_large``; ``RateLimitedError`` (429).
    """
    blocking.check(visitor=visitor)
    if conversation_id in (None, ""):
        conversation = None
    elif isinstance(conversation_id, int) or (
        isinstance(conversation_id, str) and conversation_id.isdigit()
    ):
        conversation = int(conversation_id)
    else:
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    # the visitor's creation time joins its id: a restored or recreated database reuses ids
    who = f"{visitor.pk}.{int(visitor.created_at.timestamp())}"
    counted = limits.upload(limits.effective(), visitor_id=who, ip=ip, size=upload.size or 0)
    at = ratelimit.check(counted)
    try:
        return attachment_upload(
            conversation_id=conversation,
            uploader_key=visitor.member_key,
            upload=upload,
            kind=kind,
            standalone=True,
        )
    except ServiceError:
        ratelimit.give_back(counted, at=at)
        raise


def visitor_attachment_get(*, visitor: Visitor, attachment_id: int) -> Attachment:
    """An attachment the visitor may download (see the module's rules).

    Raises ``ServiceError("not_found")`` otherwise — the same answer whether the file does not
    exist, belongs to another conversation, to an internal note, or the visitor left.
    """
    missing = ServiceError("not_found", _("No such file."))
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None:
        raise missing
    own = attachment.uploader_key == visitor.member_key
    if attachment.conversation_id is None:
        if not own:
            raise missing
        return attachment
    try:
        im_selectors.participant_get(
            conversation_id=attachment.conversation_id, member_key=visitor.member_key
        )
    except ServiceError as exc:
        raise missing from exc
    messages = attachment.messages.filter(recalled_at__isnull=True)
    if messages.filter(internal=True).exists():
        raise missing
    if not own and not messages.exists():
        raise missing
    return attachment


def attachment_claim(*, visitor: Visitor, attachment_id: object, conversation_id: int) -> bool:
    """Move a file the visitor uploaded before it had a conversation into ``conversation_id``,
    provided the visitor is an active participant of it. One ``UPDATE``, safe outside a
    transaction: files already in a conversation, other people's files and conversations the
    visitor is not in are left alone. Returns whether the file moved."""
    if isinstance(attachment_id, bool) or not isinstance(attachment_id, int):
        return False
    member = Participant.objects.filter(
        conversation_id=conversation_id, member_key=visitor.member_key, left_at__isnull=True
    )
    moved = (
        Attachment.objects.filter(
            pk=attachment_id, uploader_key=visitor.member_key, conversation_id__isnull=True
        )
        .filter(Exists(member))
        .update(conversation_id=conversation_id)
    )
    return moved == 1
