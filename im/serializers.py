"""Output shapes shared by websocket events and HTTP responses (docs/protocol.md §2.1)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from im.models import Attachment, Message, Participant, Sticker

SYSTEM_MEMBER = {"key": "system", "type": "system", "id": None, "name": ""}


def member_payload(member_key: str, name: str) -> dict[str, Any]:
    """``{"key", "type", "id", "name"}`` for a member key such as ``u:7`` or ``v:12``."""
    if member_key == "system":
        return dict(SYSTEM_MEMBER)
    prefix, _, ident = member_key.partition(":")
    kind = "visitor" if prefix == "v" else "agent"
    return {
        "key": member_key,
        "type": kind,
        "id": int(ident) if ident.isdigit() else None,
        "name": name,
    }


def attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """An uploaded file as clients see it. ``url`` (and ``thumbnail_url`` for images and videos
    with a thumbnail) are served by ``GET /api/v1/im/files/<id>``, which checks membership."""
    url = reverse("im:file-download", args=[attachment.pk])
    return {
        "id": attachment.pk,
        "kind": attachment.kind,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "duration_ms": attachment.duration_ms,
        "url": url,
        "thumbnail_url": f"{url}?thumb=1" if attachment.thumbnail else None,
    }


def sticker_payload(sticker: Sticker) -> dict[str, Any]:
    """A sticker: ``{"id", "name", "pack", "url"}`` (``url`` served by ``im:sticker-image``)."""
    return {
        "id": sticker.pk,
        "name": sticker.name,
        "pack": sticker.pack,
        "url": reverse("im:sticker-image", args=[sticker.pk]),
    }


def message_payload(message: Message) -> dict[str, Any]:
    """A message as clients see it (docs/protocol.md §2.1, docs/api.md §1). A recalled message
    keeps its place (``seq``) but loses its content, attachment and mentions. ``code``/``params``:
    an automatic line's code and parameters, rendered in the reader's language (im/syslines.py;
    ``""``/``{}`` for other messages)."""
    sender = member_payload(message.sender_key, message.sender_name)
    sender["type"] = message.sender_type
    recalled = message.recalled_at is not None
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "client_msg_id": message.client_msg_id,
        "sender": sender,
        "msg_type": message.msg_type,
        "content": "" if recalled else message.content,
        "attachment": attachment_payload(message.attachment)
        if message.attachment_id and not recalled
        else None,
        "sticker": sticker_payload(message.sticker)
        if message.sticker_id and not recalled
        else None,
        "mentions": [] if recalled else list(message.mentions or []),
        "internal": message.internal,
        "recalled": recalled,
        "ref_seq": message.ref_seq,
        "meta": message.meta or {},
        "code": message.code,
        "params": message.params or {},
        "created_at": message.created_at.isoformat(),
    }


def receipt_payload(participant: Participant) -> dict[str, Any]:
    """A participant's receipt cursors: ``{"member", "delivered_seq", "read_seq"}``."""
    return {
        "member": member_payload(participant.member_key, participant.name),
        "delivered_seq": participant.delivered_seq,
        "read_seq": participant.read_seq,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def member_state_payload(participant: Participant) -> dict[str, Any]:
    """The member's own view of a conversation: role, pin, do-not-disturb, archive, mute."""
    return {
        "conversation_id": participant.conversation_id,
        "role": participant.role,
        "pinned": participant.pinned_at is not None,
        "notifications_off": participant.notifications_off,
        "archived": participant.archived_at is not None,
        "archived_at": _iso(participant.archived_at),
        "muted_until": _iso(participant.muted_until),
    }


def conversation_payload(
    participant: Participant,
    *,
    peers: list[Participant],
    last_message: Message | None,
    member_count: int = 0,
    owner: Participant | None = None,
    max_members: int = 0,
) -> dict[str, Any]:
    """A conversation as seen by ``participant`` (without kefu's ``session`` part); the caller
    loads ``participant.conversation`` (and its avatar for groups)."""
    conversation = participant.conversation
    group = None
    if conversation.kind == "group":
        group = {
            "category": conversation.category,
            "announcement": conversation.announcement,
            "announcement_at": _iso(conversation.announcement_at),
            "avatar": attachment_payload(conversation.avatar)
            if conversation.avatar_id and conversation.avatar
            else None,
            "all_muted": conversation.all_muted,
            "owner": member_payload(owner.member_key, owner.name) if owner else None,
            "max_members": max_members,
        }
    state = member_state_payload(participant)
    del state["conversation_id"]
    return {
        "id": conversation.pk,
        "kind": conversation.kind,
        "title": conversation.title,
        "last_seq": conversation.last_seq,
        "last_message_at": _iso(conversation.last_message_at),
        "closed": conversation.closed_at is not None,
        "unread": max(conversation.last_seq - participant.read_seq, 0),
        "read_seq": participant.read_seq,
        "delivered_seq": participant.delivered_seq,
        "mentioned": participant.mention_seq > participant.read_seq,
        **state,
        "member_count": member_count,
        "group": group,
        "peers": [receipt_payload(peer) for peer in peers],
        "last_message": message_payload(last_message) if last_message else None,
    }


def group_member_payload(participant: Participant) -> dict[str, Any]:
    """``{"member", "role", "muted_until", "joined_at"}`` (docs/api.md §1)."""
    return {
        "member": member_payload(participant.member_key, participant.name),
        "role": participant.role,
        "muted_until": _iso(participant.muted_until),
        "joined_at": _iso(participant.joined_at),
    }
