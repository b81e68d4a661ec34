"""Per-kind behaviour of the send path, registered by the apps that own a conversation kind.

The messaging core stores every message the same way
(:func:`im.services.messages.message_send`); an app that owns a kind of conversation adds its
behaviour through a :class:`SendHook` registered for that kind, so there is one send path and no
upward import (docs/architecture.md, "The send path"). kefu registers one for ``visitor``
conversations in its ``AppConfig.ready``: the sensitive-word filter, the session's clocks, keyword
auto-replies and the robot.

A hook's methods run in this order for each new message (never for a resend of a stored
``client_msg_id``):

1. :meth:`SendHook.prepare` — before any write; may change ``draft.content`` or raise
   ``ServiceError`` (nothing is stored then).
2. :meth:`SendHook.before_append` — inside the send's transaction, *before* the conversation row
   is locked (so an app can lock its own rows first and keep its lock order); returns a context
   object for step 3.
3. :meth:`SendHook.after_append` — inside the transaction, after the message row is written;
   may write more (replies, timers) and schedule events with ``publish_event_on_commit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type names only: im.services.messages imports this module
    from im.models import Message
    from im.senders import Sender
    from im.services.drafts import MessageDraft


class SendHook:
    """Does nothing; subclass and override what a kind needs."""

    def prepare(self, *, conversation_id: int, sender: Sender, draft: MessageDraft) -> None:
        """Check or rewrite a validated draft before anything is written."""

    def before_append(
        self, *, conversation_id: int, sender: Sender, draft: MessageDraft, now: dt.datetime
    ) -> Any:
        """Inside the transaction, before the conversation row is locked. ``now`` becomes the
        message's ``created_at``. The return value is passed to :meth:`after_append`."""
        return None

    def after_append(self, *, message: Message, sender: Sender, context: Any) -> None:
        """Inside the transaction, after the message is written."""


_NO_HOOK = SendHook()
_hooks: dict[str, SendHook] = {}


def send_hook_register(*, kind: str, hook: SendHook) -> None:
    """Register ``hook`` for conversations of ``kind`` (one per kind; a second registration
    replaces the first, so ``AppConfig.ready`` running twice in tests is harmless)."""
    _hooks[kind] = hook


def send_hook_for(kind: str | None) -> SendHook:
    """The hook of ``kind``, or one that does nothing."""
    return _hooks.get(kind or "", _NO_HOOK)


#: ``add(payloads, member_key=...)``: completes conversation payloads of one kind in place
PayloadPart = Callable[..., None]
_payload_parts: dict[str, PayloadPart] = {}


def payload_part_register(*, kind: str, add: PayloadPart) -> None:
    """Register ``add(payloads, member_key=...)``, which adds an app's own part to the payloads
    (docs/protocol.md §2.1) of conversations of ``kind`` as ``member_key`` sees them — kefu adds
    a customer conversation's ``session`` —, so that every answer of the messaging API carries
    the conversation whole and a client that stores it loses nothing (one per kind; a second
    registration replaces the first)."""
    _payload_parts[kind] = add


def payload_parts_add(payloads: list[dict[str, Any]], *, member_key: str) -> list[dict[str, Any]]:
    """Complete ``payloads`` (conversation payloads, ``kind`` set) with the parts registered for
    their kinds, in place; returns them. One call per kind present."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for payload in payloads:
        if payload.get("kind") in _payload_parts:
            by_kind.setdefault(payload["kind"], []).append(payload)
    for kind, some in by_kind.items():
        _payload_parts[kind](some, member_key=member_key)
    return payloads
