"""Back office for conversations and their messages (read-only records of what was said)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from im.models import Attachment, Conversation, Message, MessagingSettings, Participant, Sticker
from im.syslines import message_text


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ParticipantInline(ReadOnlyInline):
    model = Participant
    fields = (
        "member_key",
        "name",
        "role",
        "muted_until",
        "delivered_seq",
        "read_seq",
        "joined_at",
        "left_at",
    )
    readonly_fields = fields


class MessageInline(ReadOnlyInline):
    model = Message
    fields = (
        "seq",
        "created_at",
        "sender_type",
        "sender_name",
        "msg_type",
        "text",
        "attachment",
        "internal",
        "recalled_at",
    )
    readonly_fields = fields
    ordering = ("seq",)

    @admin.display(description=Message._meta.get_field("content").verbose_name)
    def text(self, obj: Message) -> str:
        """The content, an automatic line in the reader's language (im/syslines.py)."""
        return message_text(obj)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "kind", "category", "last_seq", "last_message_at", "closed_at")
    list_filter = ("kind", ("closed_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "category", "participants__name", "messages__content")
    readonly_fields = (
        "kind",
        "created_by",
        "last_seq",
        "last_message_at",
        "created_at",
        "closed_at",
    )
    fields = ("title", "category", "announcement", "all_muted", *readonly_fields)
    inlines = [ParticipantInline, MessageInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        queryset, _may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "conversation",
        "seq",
        "sender_type",
        "sender_name",
        "short_content",
        "created_at",
    )
    list_filter = ("sender_type", "msg_type", "internal")
    search_fields = ("content", "sender_name")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields if f.name != "search_vector"]
    exclude = ("search_vector",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=Message._meta.get_field("content").verbose_name)
    def short_content(self, obj: Message) -> str:
        """The content (an automatic line in the reader's language), cut at 80 characters."""
        return message_text(obj)[:80]


@admin.register(MessagingSettings)
class MessagingSettingsAdmin(admin.ModelAdmin):
    """The tenant's messaging limits: one row, created with the defaults on first use."""

    list_display = (
        "__str__",
        "group_max_members",
        "recall_window_s",
        "max_file_bytes",
        "max_image_bytes",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not MessagingSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        MessagingSettings.current()
        return super().changelist_view(request, extra_context)


@admin.register(Sticker)
class StickerAdmin(admin.ModelAdmin):
    """Stickers the tenant's people can send (PNG, JPEG, GIF or WEBP)."""

    list_display = ("preview", "name", "pack", "position", "is_active")
    list_display_links = ("preview", "name")
    list_editable = ("position", "is_active")
    list_filter = ("pack", "is_active")
    search_fields = ("name", "pack")

    @admin.display(description=_("image"))
    def preview(self, obj: Sticker) -> str:
        if not obj.pk:
            return ""
        from django.urls import reverse

        return format_html(
            '<img src="{}" alt="" style="height:32px">', reverse("im:sticker-image", args=[obj.pk])
        )


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Uploaded files (read-only): who uploaded what, where, how large."""

    list_display = (
        "name",
        "kind",
        "content_type",
        "size",
        "conversation",
        "uploader_key",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("name", "uploader_key", "sha256")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Attachment._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
