"""The channel-adapter interface: what a messaging channel kind (Telegram, WeChat Official
Account; e-mail, an API channel, WhatsApp, Feishu or DingTalk later) implements so that its
customers arrive in the same inbox as widget visitors (docs/channels.md).

An adapter only speaks its vendor's protocol. Everything else is shared
(:mod:`kefu.channels.services`): an inbound callback is checked (:meth:`ChannelAdapter.verify`),
split into events (:meth:`ChannelAdapter.events`) stored once each (``ChannelEvent``, unique per
vendor id, so a vendor's retry is recognised), then handled by a Celery task that turns the
event (:meth:`ChannelAdapter.inbound`) into a visitor and a message through the same service the
widget uses (``kefu.services.messages.visitor_message_send``: routing, robot, queue, SLA clocks
and statistics unchanged). An agent's or the robot's reply gets a ``Delivery`` row and a Celery
task calls :meth:`ChannelAdapter.send`, with retries and back-off.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2
from django.conf import settings

from weiyu import outbound

if TYPE_CHECKING:
    from django.http import HttpRequest

    from im.models import Attachment, Message
    from kefu.models import ChannelAccount, Session, Visitor

logger = logging.getLogger("kefu.channels")


class ChannelAuthError(Exception):
    """A callback whose signature or secret does not check out (answered 403)."""


class ChannelInputError(Exception):
    """A callback body that cannot be read (answered 400)."""


class DeliveryError(Exception):
    """Sending to the vendor failed. ``permanent``: trying again cannot help (the vendor refused
    the message: a closed reply window, a blocked bot, a bad token); otherwise the task retries
    with back-off. ``retry_after_s``: the vendor's own wait, when it gave one."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Capabilities:
    """What a kind supports, which decides what the inbox composer offers (session payload
    ``channel.capabilities``, docs/protocol.md): ``attachments`` — message types an agent may
    send (``image``, ``file``…); ``typing`` — the customer sees "typing…"; ``read_receipts`` —
    the vendor tells us what the customer read; ``recall`` — a sent message can be taken back;
    ``edit_window_s`` — seconds a sent message may be edited (0: never); ``reply_window_s`` —
    seconds after the customer's last message during which we may write (0: any time; WeChat:
    48 hours)."""

    attachments: tuple[str, ...] = ()
    typing: bool = False
    read_receipts: bool = False
    recall: bool = False
    edit_window_s: int = 0
    reply_window_s: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: ``{"attachments": [...], "typing", "read_receipts", "recall",
        "edit_window_s", "reply_window_s"}``."""
        return {
            "attachments": list(self.attachments),
            "typing": self.typing,
            "read_receipts": self.read_receipts,
            "recall": self.recall,
            "edit_window_s": self.edit_window_s,
            "reply_window_s": self.reply_window_s,
        }


WIDGET_CAPABILITIES = Capabilities(
    attachments=("image", "voice", "video", "file", "sticker"),
    typing=True,
    read_receipts=True,
    recall=True,
)


@dataclass
class Inbound:
    """An event turned into what Weiyu stores: from customer ``user_id`` (the vendor's id, kept
    in ``Visitor.external_id``) named ``name``, a message of ``msg_type`` (``text``, ``image``,
    ``voice``, ``file``) with ``text`` (the text or a caption) and, for media, ``media`` (what
    :meth:`ChannelAdapter.media_fetch` needs; ``{"attachment_id", "kind"}`` for a file already
    stored), ``file_name``; or an ``event`` (``subscribe``, ``unsubscribe``) without a message.
    ``email``, ``phone``, ``language`` (a BCP 47 tag): contact details the channel gives,
    kept on the visitor (the language of the system lines they receive)."""

    user_id: str
    name: str = ""
    msg_type: str = "text"
    text: str = ""
    media: dict[str, Any] = field(default_factory=dict)
    file_name: str = ""
    event: str = ""
    email: str = ""
    phone: str = ""
    language: str = ""


class ChannelAdapter(ABC):
    """One channel kind. Subclasses set ``kind``, ``capabilities``, ``default_base_url`` and
    implement the vendor calls (the abstract methods); each method documents the vendor rule it
    follows."""

    kind: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    default_base_url: ClassVar[str] = ""

    # ---- inbound ---------------------------------------------------------------------------
    @abstractmethod
    def verify(self, *, account: ChannelAccount, request: HttpRequest) -> None:
        """Check the callback's signature or secret; raise :class:`ChannelAuthError`."""

    @abstractmethod
    def events(self, *, account: ChannelAccount, request: HttpRequest) -> list[tuple[str, Any]]:
        """The callback's events as ``[(vendor id, JSON-able payload)]``; raise
        :class:`ChannelInputError` for a body that cannot be read."""

    def reply(self, *, account: ChannelAccount, request: HttpRequest) -> tuple[str, str]:
        """The body and content type the vendor expects once the events are stored."""
        return "", "text/plain"

    @abstractmethod
    def inbound(self, *, account: ChannelAccount, payload: Any) -> Inbound | None:
        """What a stored event means, or None for one Weiyu does not handle (logged)."""

    @abstractmethod
    def media_fetch(self, *, account: ChannelAccount, inbound: Inbound) -> tuple[bytes, str]:
        """Download an inbound file: ``(content, file name)``; raise :class:`DeliveryError`."""

    def profile_name(self, *, account: ChannelAccount, user_id: str) -> str:
        """The customer's display name at the vendor ("" when it has none to give)."""
        return ""

    # ---- outbound --------------------------------------------------------------------------
    @abstractmethod
    def send(self, *, account: ChannelAccount, visitor: Visitor, message: Message) -> str:
        """Send one message to the customer; returns the vendor's message id ("" when it gives
        none). Raises :class:`DeliveryError`."""

    @abstractmethod
    def send_text(self, *, account: ChannelAccount, user_id: str, text: str) -> str:
        """Send a plain text (the channel's own notices: closed, queue full, welcome)."""

    def reply_window_check(self, *, session: Session) -> None:
        """Raise ``ServiceError`` when the vendor would refuse a reply now (WeChat's 48 hours);
        a vendor without a reply window accepts every reply."""
        return

    # ---- helpers ---------------------------------------------------------------------------
    def base_url(self, account: ChannelAccount) -> str:
        """The vendor API's base URL, without a trailing slash."""
        return (account.api_base_url or self.default_base_url).rstrip("/")

    def client(self) -> httpx2.Client:
        """An HTTP client for the vendor: always the SSRF-guarded one, as the base URL is the
        tenant's to choose (:mod:`weiyu.outbound`)."""
        return outbound.guarded_client(timeout_s=settings.WEIYU_CHANNEL_HTTP_TIMEOUT_S)


def attachment_bytes(attachment: Attachment) -> bytes:
    """The stored file's content."""
    with attachment.file.open("rb") as fh:
        return fh.read()


def transport_error(exc: Exception) -> DeliveryError:
    """A network failure or refused address as a :class:`DeliveryError` (retried, except a
    refused address: only the administrator can fix the base URL)."""
    permanent = isinstance(exc, outbound.OutboundRefusedError) or "private, loopback" in str(exc)
    return DeliveryError(str(exc) or exc.__class__.__name__, permanent=permanent)
