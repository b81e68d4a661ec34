"""Conversations, their participants and messages: one store for every kind of chat.

Participants are identified by a *member key*: ``u:<user id>`` for users of the tenant and
``v:<visitor id>`` for website visitors (``kefu.Visitor``). ``im`` does not know visitors; it only
stores their key and display name, so the dependency stays ``kefu → im``.
"""

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def tenant_upload_to(folder: str):
    """``upload_to`` that stores files under ``<schema>/<folder>/<yyyy>/<mm>/<uuid><ext>`` (TEN-2:
    a tenant's files never share a prefix with another's; the user's file name is kept in the row,
    not in the path)."""

    def upload_to(instance: models.Model, filename: str) -> str:
        suffix = PurePosixPath(filename).suffix.lower()[:16]
        now = timezone.now()
        return f"{connection.schema_name}/{folder}/{now:%Y/%m}/{uuid.uuid4().hex}{suffix}"

    upload_to.__qualname__ = upload_to.__name__ = f"upload_to_{folder}"
    return upload_to


def attachment_upload_to(instance: models.Model, filename: str) -> str:
    """Path of an uploaded attachment (see :func:`tenant_upload_to`)."""
    return tenant_upload_to("im")(instance, filename)


def thumbnail_upload_to(instance: models.Model, filename: str) -> str:
    """Path of an attachment's thumbnail (see :func:`tenant_upload_to`)."""
    return tenant_upload_to("im-thumbs")(instance, filename)


def sticker_upload_to(instance: models.Model, filename: str) -> str:
    """Path of a sticker image (see :func:`tenant_upload_to`)."""
    return tenant_upload_to("stickers")(instance, filename)


class Conversation(models.Model):
    """A conversation. ``last_seq`` is the ``seq`` of its newest message (0 when empty)."""

    class Kind(models.TextChoices):
        VISITOR = "visitor", _("Visitor chat")
        DIRECT = "direct", _("Direct message")
        GROUP = "group", _("Group chat")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    title = models.CharField(_("title"), max_length=200, blank=True)
    direct_key = models.CharField(
        _("direct key"),
        max_length=80,
        null=True,
        blank=True,
        unique=True,
        help_text=_(
            "The two member keys of a direct message, sorted (u:3|u:7): one chat per pair."
        ),
    )
    avatar = models.ForeignKey(
        "Attachment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("avatar"),
    )
    category = models.CharField(_("category"), max_length=64, blank=True)
    announcement = models.TextField(_("announcement"), blank=True)
    announcement_at = models.DateTimeField(_("announcement updated at"), null=True, blank=True)
    all_muted = models.BooleanField(
        _("everyone muted"),
        default=False,
        help_text=_("Only the owner and admins may send while the whole group is muted."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    last_seq = models.PositiveIntegerField(_("last sequence number"), default=0)
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    closed_at = models.DateTimeField(
        _("closed at"),
        null=True,
        blank=True,
        help_text=_("A closed conversation takes no new messages (a dissolved group is closed)."),
    )

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [models.Index(fields=["-last_message_at"], name="im_conv_last_msg")]

    def __str__(self) -> str:
        return self.title or f"#{self.pk}"


class Participant(models.Model):
    """Membership of a conversation, with the member's receipt cursors.

    ``delivered_seq``/``read_seq``: the highest ``seq`` the member's clients have received / read.
    Both only move forward. ``left_at`` set means the member no longer receives or sends.
    """

    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")
        AGENT = "agent", _("Agent")
        VISITOR = "visitor", _("Visitor")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="participants",
        verbose_name=_("conversation"),
    )
    member_key = models.CharField(_("member key"), max_length=32)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="participations",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    delivered_seq = models.PositiveIntegerField(_("delivered up to"), default=0)
    read_seq = models.PositiveIntegerField(_("read up to"), default=0)
    mention_seq = models.PositiveIntegerField(
        _("mentioned at"), default=0, help_text=_("seq of the newest message that @mentions them.")
    )
    muted_until = models.DateTimeField(
        _("muted until"),
        null=True,
        blank=True,
        help_text=_("A group admin muted this member: they cannot send until then."),
    )
    pinned_at = models.DateTimeField(_("pinned at"), null=True, blank=True)
    notifications_off = models.BooleanField(_("do not disturb"), default=False)
    digest_seq = models.PositiveIntegerField(
        _("e-mailed up to"),
        default=0,
        db_default=0,  # rows are also inserted by raw SQL (im.services.conversations)
        help_text=_("seq of the newest message sent to them in an e-mail digest (im.digest)."),
    )
    archived_at = models.DateTimeField(_("archived at"), null=True, blank=True)
    joined_at = models.DateTimeField(_("joined at"), auto_now_add=True)
    left_at = models.DateTimeField(_("left at"), null=True, blank=True)

    class Meta:
        verbose_name = _("participant")
        verbose_name_plural = _("participants")
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "member_key"], name="im_participant_unique"
            ),
        ]
        indexes = [models.Index(fields=["member_key"], name="im_participant_member")]

    def __str__(self) -> str:
        return f"{self.name or self.member_key} @ {self.conversation_id}"


class Message(models.Model):
    """One message. ``seq`` is gap-free and increasing per conversation (1, 2, 3, …).

    ``client_msg_id`` is the sender's idempotency key: unique per ``sender_key``, so a resend after
    a timeout returns the stored message instead of storing it twice (IM-12).
    """

    class SenderType(models.TextChoices):
        AGENT = "agent", _("Agent")
        VISITOR = "visitor", _("Visitor")
        SYSTEM = "system", _("System")
        ROBOT = "robot", _("Robot")

    class Type(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        VOICE = "voice", _("Voice")
        VIDEO = "video", _("Video")
        FILE = "file", _("File")
        STICKER = "sticker", _("Sticker")
        SYSTEM = "system", _("System event")
        RECALL = "recall", _("Recall")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
    )
    seq = models.PositiveIntegerField(_("sequence number"))
    sender_key = models.CharField(_("sender key"), max_length=32)
    sender_type = models.CharField(_("sender type"), max_length=16, choices=SenderType.choices)
    sender_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("sender (user)"),
    )
    sender_name = models.CharField(_("sender name"), max_length=100, blank=True)
    msg_type = models.CharField(_("type"), max_length=16, choices=Type.choices, default=Type.TEXT)
    content = models.TextField(_("content"), blank=True)
    attachment = models.ForeignKey(
        "Attachment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        verbose_name=_("attachment"),
    )
    sticker = models.ForeignKey(
        "Sticker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("sticker"),
    )
    mentions = models.JSONField(
        _("mentions"),
        default=list,
        blank=True,
        help_text=_('Member keys mentioned with @, or "all".'),
    )
    internal = models.BooleanField(
        _("internal note"),
        default=False,
        help_text=_("Seen by staff only, never by the visitor of a customer conversation."),
    )
    recalled_at = models.DateTimeField(_("recalled at"), null=True, blank=True)
    ref_seq = models.PositiveIntegerField(
        _("refers to"),
        null=True,
        blank=True,
        help_text=_("For a recall: the seq of the recalled message."),
    )
    meta = models.JSONField(
        _("details"),
        default=dict,
        blank=True,
        help_text=_(
            "For robot answers: their sources, confidence and the visitor's feedback "
            "(docs/protocol.md §2.1)."
        ),
    )
    code = models.CharField(
        _("line code"),
        max_length=64,
        blank=True,
        default="",
        help_text=_(
            "For an automatic line: what happened (kefu.assigned, group.invited…), rendered in "
            "each reader's language from the code and its parameters (im/syslines.py); the "
            "content holds it in the tenant's default language."
        ),
    )
    params = models.JSONField(
        _("line parameters"),
        default=dict,
        blank=True,
        help_text=_("The names and numbers the automatic line is rendered with."),
    )
    search_vector = SearchVectorField(_("search index"), null=True, editable=False)
    client_msg_id = models.CharField(_("client message id"), max_length=64, null=True, blank=True)
    #: set by the send path to the instant it also gives the conversation's ``last_message_at``
    #: and the session's clocks (im.services.messages.message_send)
    created_at = models.DateTimeField(
        _("created at"), default=timezone.now, editable=False, blank=True
    )

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["conversation_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="im_message_seq_unique"),
            models.UniqueConstraint(
                fields=["sender_key", "client_msg_id"],
                condition=Q(client_msg_id__isnull=False),
                name="im_message_client_id_unique",
            ),
        ]
        indexes = [GinIndex(fields=["search_vector"], name="im_message_search")]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.sender_name}: {self.content[:40]}"


class Attachment(models.Model):
    """An uploaded file: an image, voice clip, video or any file, stored through django-storages
    (local disk, or S3 when configured) under the tenant's prefix.

    ``content_type`` and ``kind`` come from the file's content (magic bytes), never from its name
    or the browser. ``size`` is in bytes, ``duration_ms`` in milliseconds (voice, video), ``width``/
    ``height`` in pixels (images, videos when known). An attachment belongs to the conversation it
    was uploaded for; only that conversation's members can fetch it.
    """

    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        VOICE = "voice", _("Voice")
        VIDEO = "video", _("Video")
        FILE = "file", _("File")

    conversation = models.ForeignKey(
        Conversation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("conversation"),
    )
    uploader_key = models.CharField(_("uploaded by"), max_length=32)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    file = models.FileField(_("file"), upload_to=attachment_upload_to, max_length=255)
    thumbnail = models.FileField(
        _("thumbnail"), upload_to=thumbnail_upload_to, max_length=255, blank=True
    )
    name = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    width = models.PositiveIntegerField(_("width (px)"), null=True, blank=True)
    height = models.PositiveIntegerField(_("height (px)"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name


class Sticker(models.Model):
    """A sticker the tenant's people can send (IM-3), managed in the back office."""

    name = models.CharField(_("name"), max_length=64)
    pack = models.CharField(_("pack"), max_length=64, blank=True)
    image = models.ImageField(_("image"), upload_to=sticker_upload_to, max_length=255)
    position = models.PositiveIntegerField(_("position"), default=0)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("sticker")
        verbose_name_plural = _("stickers")
        ordering = ["pack", "position", "id"]

    def __str__(self) -> str:
        return self.name


class MessagingSettings(models.Model):
    """The tenant's messaging limits (one row, edited by the tenant admin). Defaults follow
    MISSION.md: groups up to 500 members (IM-2), recall within 2 minutes (IM-5)."""

    group_max_members = models.PositiveIntegerField(
        _("group size limit"),
        default=500,
        validators=[MinValueValidator(2), MaxValueValidator(5000)],
    )
    recall_window_s = models.PositiveIntegerField(
        _("recall window (seconds)"),
        default=120,
        validators=[MaxValueValidator(7 * 24 * 3600)],
        help_text=_(
            "How long after sending people may recall their own message. 0 turns recall off."
        ),
    )
    max_file_bytes = models.PositiveBigIntegerField(
        _("largest file (bytes)"),
        default=50 * 1024 * 1024,
        validators=[MinValueValidator(1024)],
    )
    max_image_bytes = models.PositiveBigIntegerField(
        _("largest image (bytes)"),
        default=20 * 1024 * 1024,
        validators=[MinValueValidator(1024)],
    )
    blocked_extensions = models.CharField(
        _("blocked file types"),
        max_length=500,
        blank=True,
        default="exe,msi,bat,cmd,com,scr,js,vbs,ps1,jar,apk,dll,sh",
        help_text=_(
            "Comma-separated extensions refused as files (checked with the detected type too)."
        ),
    )

    class Meta:
        verbose_name = _("messaging settings")
        verbose_name_plural = _("messaging settings")

    def __str__(self) -> str:
        return str(_("Messaging settings"))

    @classmethod
    def current(cls) -> "MessagingSettings":
        """The tenant's settings row (created with defaults on first use)."""
        row = cls.objects.order_by("pk").first()
        return row if row is not None else cls.objects.create()
