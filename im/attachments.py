"""Uploaded files (IM-3, INT-4, SEC-6): validation by content, thumbnails, and access checks.

The type of a file is read from its bytes (``filetype``'s magic numbers, Pillow for images),
never from its name or the browser's ``Content-Type``: an executable renamed ``.pdf`` is refused,
an SVG or HTML file is never an image. Files are stored through django-storages (local disk, or
S3 when configured) under the tenant's prefix (``im.models.tenant_upload_to``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import unicodedata
from collections.abc import Callable
from pathlib import PurePosixPath

import filetype
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from im import selectors
from im.models import Attachment, Conversation, MessagingSettings
from tenants import quotas
from weiyu.errors import ServiceError

THUMBNAIL_PX = 320
#: Pillow refuses images with more pixels (decompression bombs)
MAX_IMAGE_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
VOICE_TYPES = {
    "audio/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/x-wav",
    "audio/x-flac",
    "audio/amr",
    "video/webm",  # MediaRecorder's audio/webm carries the same magic number as video/webm
    "video/mp4",  # Safari records voice as audio/mp4 (an MP4 container)
}
VIDEO_TYPES = {"video/mp4", "video/webm", "video/quicktime", "video/x-m4v", "video/3gpp"}
#: detected types that are executable whatever their name says
EXECUTABLE_TYPES = {"application/x-msdownload", "application/x-executable", "application/wasm"}
#: served inline (with their own type); everything else is a download
INLINE_TYPES = IMAGE_TYPES | {
    t for t in VOICE_TYPES | VIDEO_TYPES if t.startswith(("audio/", "video/"))
}
SNIFF_BYTES = 8192


def _clean_name(name: str | None) -> str:
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return base[:255] or "file"


#: extensions refused in every tenant, whatever its own list (MessagingSettings.blocked_extensions)
#: adds: programs, scripts and shortcuts Windows runs or opens on a double click
ALWAYS_BLOCKED = frozenset(
    [
        "exe",
        "msi",
        "msp",
        "bat",
        "cmd",
        "com",
        "scr",
        "pif",
        "cpl",
        "hta",
        "lnk",
        "reg",
        "inf",
        "scf",
        "url",
        "js",
        "jse",
        "vbs",
        "vbe",
        "wsf",
        "wsh",
        "ps1",
        "psm1",
        "psd1",
        "msc",
        "jar",
        "apk",
        "dll",
        "sys",
        "sh",
    ]
)


def _blocked(settings_row: MessagingSettings) -> set[str]:
    return ALWAYS_BLOCKED | {
        e.strip().lower().lstrip(".")
        for e in settings_row.blocked_extensions.split(",")
        if e.strip()
    }


def _extension(name: str) -> str:
    """The extension as Windows sees it: trailing dots and spaces dropped (``x.exe.`` and
    ``x.exe `` open as ``x.exe``), NTFS streams (``x.exe::$DATA``) cut, lower case."""
    name = name.split(":", 1)[0].rstrip(". ")
    return PurePosixPath(name).suffix.lower().lstrip(".")


def _invalid(message: str) -> ServiceError:
    return ServiceError("invalid", message, field="file")


def _image_info(data: bytes) -> tuple[int, int, bytes, str]:
    """``(width, height, thumbnail bytes, thumbnail extension)``; ``invalid`` if Pillow cannot
    decode it or it is too large in pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _invalid(_("The image is too large."))
            image.load()
            thumb = ImageOps.exif_transpose(image)
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            if thumb.mode in ("RGBA", "LA", "P"):
                thumb.convert("RGBA").save(out, "PNG", optimize=True)
                return width, height, out.getvalue(), ".png"
            thumb.convert("RGB").save(out, "JPEG", quality=80)
            return width, height, out.getvalue(), ".jpg"
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise _invalid(_("This file is not an image we can show.")) from exc


def _duration(value: object) -> int | None:
    if value in (None, ""):
        return None
    try:
        duration = int(str(value))
    except ValueError:
        duration = -1
    if not 0 <= duration <= 3_600_000:
        raise ServiceError(
            "invalid", _("duration_ms must be between 0 and 3600000."), field="duration_ms"
        )
    return duration


def _check_type(
    kind: object, content_type: str, detected_ext: str, name: str, limits: MessagingSettings
) -> None:
    """The detected type must fit the kind asked for, and no blocked type goes through as a
    file, whatever its name says."""
    if kind == Attachment.Kind.IMAGE and content_type not in IMAGE_TYPES:
        raise _invalid(_("Only PNG, JPEG, GIF and WEBP images can be sent as pictures."))
    if kind == Attachment.Kind.VOICE and content_type not in VOICE_TYPES:
        raise _invalid(_("This file is not a voice recording."))
    if kind == Attachment.Kind.VIDEO and content_type not in VIDEO_TYPES:
        raise _invalid(_("Only MP4, WebM and QuickTime videos can be sent as videos."))
    blocked = _blocked(limits)
    extension = _extension(name)
    if content_type in EXECUTABLE_TYPES or extension in blocked or detected_ext in blocked:
        raise _invalid(_("Files of this type cannot be sent."))


def attachment_upload(
    *,
    conversation_id: int | None,
    uploader_key: str,
    upload: UploadedFile,
    kind: object,
    duration_ms: object = None,
    standalone: bool = False,
) -> Attachment:
    """Store a file that ``uploader_key`` will send to a conversation they are in. Without a
    conversation only an image can be uploaded: a picture for a group about to be created —
    unless ``standalone``: a file another app links to its own records (a ticket comment) and
    guards access to itself.

    ``kind``: ``image`` (PNG, JPEG, GIF, WEBP; a thumbnail ≤ 320 px is made), ``voice`` (an audio
    container, e.g. the WebM/Ogg of a browser recording), ``video`` (MP4, WebM, QuickTime) or
    ``file`` (anything but the tenant's blocked types, checked against the name and the detected
    type). ``duration_ms``: the clip's length in milliseconds for voice and video (0 to 3,600,000).
    Size limits (bytes): ``MessagingSettings.max_image_bytes`` for images, ``max_file_bytes``
    otherwise.

    Raises ``ServiceError``: ``not_found`` (not a member), ``invalid`` (wrong or empty content,
    blocked type, bad ``kind``/``duration_ms``), ``too_large``, ``quota_exceeded`` (the file
    would pass the plan's storage, ``field="storage_bytes"``: :mod:`tenants.quotas`).
    """
    if kind not in Attachment.Kind.values:
        raise ServiceError("invalid", _("Unknown file kind."), field="kind")
    if conversation_id is None:
        if kind != Attachment.Kind.IMAGE and not standalone:
            raise ServiceError(
                "invalid", _("conversation_id is required."), field="conversation_id"
            )
    else:
        participant = selectors.participant_get(
            conversation_id=conversation_id, member_key=uploader_key
        )
        if participant.conversation.closed_at is not None:
            raise ServiceError("conversation_closed", _("This conversation has ended."))
    duration = _duration(duration_ms)
    limits = MessagingSettings.current()
    limit = limits.max_image_bytes if kind == Attachment.Kind.IMAGE else limits.max_file_bytes
    size = upload.size or 0
    if size == 0:
        raise _invalid(_("The file is empty."))
    if size > limit:
        raise ServiceError(
            "too_large",
            _("The file is larger than %(mb).1f MB.") % {"mb": limit / 1024 / 1024},
            field="file",
        )
    quotas.check_total("storage_bytes", size)  # the plan's storage (tenants.quotas)
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    detected = filetype.guess(head)
    content_type = detected.mime if detected else "application/octet-stream"
    name = _clean_name(upload.name)
    _check_type(kind, content_type, detected.extension if detected else "", name, limits)

    upload.seek(0)
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    attachment = Attachment(
        conversation_id=conversation_id,
        uploader_key=uploader_key,
        kind=kind,
        name=name,
        content_type=content_type,
        size=size,
        duration_ms=duration if kind in (Attachment.Kind.VOICE, Attachment.Kind.VIDEO) else None,
        sha256=digest.hexdigest(),
    )
    if kind == Attachment.Kind.IMAGE:
        upload.seek(0)
        width, height, thumb, thumb_ext = _image_info(upload.read())
        attachment.width, attachment.height = width, height
        attachment.thumbnail.save(f"thumb{thumb_ext}", ContentFile(thumb), save=False)
    upload.seek(0)
    stored_ext = f".{detected.extension}" if detected else PurePosixPath(name).suffix
    attachment.file.save(f"upload{stored_ext}", upload, save=False)
    attachment.save()
    return attachment


def attachment_get_for_member(*, attachment_id: int, member_key: str) -> Attachment:
    """An attachment the member may fetch: they are in its conversation (or uploaded it, for a
    group picture not yet attached to one). ``not_found`` otherwise — for another tenant's id too,
    since each tenant has its own table."""
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None:
        raise ServiceError("not_found", _("No such file."))
    if attachment.conversation_id is None:
        if attachment.uploader_key != member_key:
            raise ServiceError("not_found", _("No such file."))
        return attachment
    try:
        selectors.participant_get(conversation_id=attachment.conversation_id, member_key=member_key)
    except ServiceError as exc:
        raise ServiceError("not_found", _("No such file.")) from exc
    return attachment


def is_inline(content_type: str) -> bool:
    """Whether a stored type may be shown in the browser (images, audio, video); everything
    else, SVG and HTML included, is served as a download."""
    return content_type in INLINE_TYPES


#: functions returning the ids of attachments another app keeps (a ticket comment's files),
#: registered by that app in its ``AppConfig.ready`` (im imports no app above it)
_keepers: dict[str, Callable[[], QuerySet]] = {}


def attachment_keeper_register(*, name: str, ids: Callable[[], QuerySet]) -> None:
    """Declare that ``ids()`` (a ``values("attachment_id")``-style queryset of one column) names
    attachments in use elsewhere, so :func:`attachment_orphans_purge` never deletes them. One per
    ``name``; registering again replaces it."""
    _keepers[name] = ids


def attachment_orphans_purge(*, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Delete uploads nobody sent: created more than ``older_than`` ago and in no message, no
    group picture and nothing a registered keeper names (ticket comments). Their files and
    thumbnails leave the storage too. Call inside the tenant's schema. Returns how many went.

    Source: issue 11 ("orphan uploads expire"); a visitor who closes the widget after choosing
    a file, or an agent who never sends what they uploaded, would otherwise keep it forever.
    """
    cutoff = (now or timezone.now()) - older_than
    in_use = Q(messages__isnull=False)
    for ids in _keepers.values():
        in_use |= Q(pk__in=ids())
    avatars = Conversation.objects.filter(avatar__isnull=False).values("avatar_id")
    in_use |= Q(pk__in=avatars)
    orphans = list(Attachment.objects.filter(created_at__lt=cutoff).exclude(in_use).distinct())
    for attachment in orphans:
        for field in (attachment.file, attachment.thumbnail):
            if field:
                field.delete(save=False)
        attachment.delete()
    return len(orphans)
