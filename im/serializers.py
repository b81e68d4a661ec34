"""Output shapes shared by websocket events and HTTP responses (docs/protocol.md §2.1)."""

from __future__ import annotations

from datetime import datetime
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
    return message_payload_values(
        message_id=message.pk,
        conversation_id=message.conversation_id,
        seq=message.seq,
        client_msg_id=message.client_msg_id,
        sender_key=message.sender_key,
        sender_name=message.sender_name,
        sender_type=message.sender_type,
        msg_type=message.msg_type,
        content=message.content,
        attachment=message.attachment if message.attachment_id else None,
        sticker=message.sticker if message.sticker_id else None,
        mentions=message.mentions,
        internal=message.internal,
        recalled_at=message.recalled_at,
        ref_seq=message.ref_seq,
        meta=message.meta,
        code=message.code,
        params=message.params,
        created_at=message.created_at,
    )


def message_payload_values(
    *,
    message_id: int,
    conversation_id: int,
    seq: int,
    client_msg_id: str | None,
    sender_key: str,
    sender_name: str,
    sender_type: str,
    msg_type: str,
    content: str,
    attachment: Attachment | None,
    sticker: Sticker | None,
    mentions: list[str] | None,
    internal: bool,
    recalled_at: datetime | None,
    ref_seq: int | None,
    meta: dict[str, Any] | None,
    code: str,
    params: dict[str, Any] | None,
    created_at: datetime,
) -> dict[str, Any]:
    """:func:`message_payload` from the message's column values (a written-out statement's
    row, no ``Message`` built): the one definition of the shape. ``attachment``/``sticker``:
    the loaded rows, None when the message has none."""
    sender = member_payload(sender_key, sender_name)
    sender["type"] = sender_type
    recalled = recalled_at is not None
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "seq": seq,
        "client_msg_id": client_msg_id,
        "sender": sender,
        "msg_type": msg_type,
        "content": "" if recalled else content,
        "attachment": attachment_payload(attachment) if attachment and not recalled else None,
        "sticker": sticker_payload(sticker) if sticker and not recalled else None,
        "mentions": [] if recalled else list(mentions or []),
        "internal": internal,
        "recalled": recalled,
        "ref_seq": ref_seq,
        "meta": meta or {},
        "code": code,
        "params": params or {},
        "created_at": created_at.isoformat(),
    }


def receipt_payload(participant: Participant) -> dict[str, Any]:
    """A participant's receipt cursors: ``{"member", "delivered_seq", "read_seq"}``."""
    return receipt_payload_values(
        participant.member_key, participant.name, participant.delivered_seq, participant.read_seq
    )


def receipt_payload_values(
    member_key: str, name: str, delivered_seq: int, read_seq: int
) -> dict[str, Any]:
    """:func:`receipt_payload` from the participant's column values."""
    return {
        "member": member_payload(member_key, name),
        "delivered_seq": delivered_seq,
        "read_seq": read_seq,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _member_state(
    role: str,
    pinned_at: datetime | None,
    notifications_off: bool,
    archived_at: datetime | None,
    muted_until: datetime | None,
) -> dict[str, Any]:
    return {
        "role": role,
        "pinned": pinned_at is not None,
        "notifications_off": notifications_off,
        "archived": archived_at is not None,
        "archived_at": _iso(archived_at),
        "muted_until": _iso(muted_until),
    }


def member_state_payload(participant: Participant) -> dict[str, Any]:
    """The member's own view of a conversation: role, pin, do-not-disturb, archive, mute."""
    return {
        "conversation_id": participant.conversation_id,
        **_member_state(
            participant.role,
            participant.pinned_at,
            participant.notifications_off,
            participant.archived_at,
            participant.muted_until,
        ),
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
        group = group_payload_values(
            category=conversation.category,
            announcement=conversation.announcement,
            announcement_at=conversation.announcement_at,
            avatar=conversation.avatar if conversation.avatar_id else None,
            all_muted=conversation.all_muted,
            owner=(owner.member_key, owner.name) if owner else None,
            max_members=max_members,
        )
    return conversation_payload_values(
        conversation_id=conversation.pk,
        kind=conversation.kind,
        title=conversation.title,
        last_seq=conversation.last_seq,
        last_message_at=conversation.last_message_at,
        closed_at=conversation.closed_at,
        read_seq=participant.read_seq,
        delivered_seq=participant.delivered_seq,
        mention_seq=participant.mention_seq,
        role=participant.role,
        pinned_at=participant.pinned_at,
        notifications_off=participant.notifications_off,
        archived_at=participant.archived_at,
        muted_until=participant.muted_until,
        member_count=member_count,
        group=group,
        peers=[receipt_payload(peer) for peer in peers],
        last_message=message_payload(last_message) if last_message else None,
    )


def group_payload_values(
    *,
    category: str,
    announcement: str,
    announcement_at: datetime | None,
    avatar: Attachment | None,
    all_muted: bool,
    owner: tuple[str, str] | None,
    max_members: int,
) -> dict[str, Any]:
    """The ``group`` part of a group conversation: ``owner`` is ``(member key, name)`` of its
    owner (None: nobody owns it any more), ``max_members`` the tenant's group size limit."""
    return {
        "category": category,
        "announcement": announcement,
        "announcement_at": _iso(announcement_at),
        "avatar": attachment_payload(avatar) if avatar else None,
        "all_muted": all_muted,
        "owner": member_payload(owner[0], owner[1]) if owner else None,
        "max_members": max_members,
    }


def conversation_payload_values(
    *,
    conversation_id: int,
    kind: str,
    title: str,
    last_seq: int,
    last_message_at: datetime | None,
    closed_at: datetime | None,
    read_seq: int,
    delivered_seq: int,
    mention_seq: int,
    role: str,
    pinned_at: datetime | None,
    notifications_off: bool,
    archived_at: datetime | None,
    muted_until: datetime | None,
    member_count: int,
    group: dict[str, Any] | None,
    peers: list[dict[str, Any]],
    last_message: dict[str, Any] | None,
) -> dict[str, Any]:
    """:func:`conversation_payload` from the conversation's and the membership's column values
    (a written-out statement's row, no model built): the one definition of the shape.
    ``group``: :func:`group_payload_values` for a group, else None; ``peers``: receipt
    payloads; ``last_message``: a message payload or None."""
    return {
        "id": conversation_id,
        "kind": kind,
        "title": title,
        "last_seq": last_seq,
        "last_message_at": _iso(last_message_at),
        "closed": closed_at is not None,
        "unread": max(last_seq - read_seq, 0),
        "read_seq": read_seq,
        "delivered_seq": delivered_seq,
        "mentioned": mention_seq > read_seq,
        **_member_state(role, pinned_at, notifications_off, archived_at, muted_until),
        "member_count": member_count,
        "group": group,
        "peers": peers,
        "last_message": last_message,
    }


def group_member_payload(participant: Participant) -> dict[str, Any]:
    """``{"member", "role", "muted_until", "joined_at"}`` (docs/api.md §1)."""
    return {
        "member": member_payload(participant.member_key, participant.name),
        "role": participant.role,
        "muted_until": _iso(participant.muted_until),
        "joined_at": _iso(participant.joined_at),
    }
