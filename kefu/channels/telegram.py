"""Telegram bots (Bot API, https://core.telegram.org/bots/api): a webhook whose calls carry the
secret token in ``X-Telegram-Bot-Api-Secret-Token`` (``setWebhook(secret_token=…)``), or long
polling with ``getUpdates`` (``manage.py telegram_poll``); text, photos and documents in and out.

An update is stored once by its ``update_id`` (Telegram sends it again until we answer 200).
Updates other than a new message in a private chat (edits, channel posts, callbacks, member
changes…) are skipped with a log line."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

import httpx2
from django.utils.translation import gettext as _

from im.models import Message
from kefu.channels.base import (
    Capabilities,
    ChannelAdapter,
    ChannelAuthError,
    ChannelInputError,
    DeliveryError,
    Inbound,
    attachment_bytes,
    logger,
    transport_error,
)

if TYPE_CHECKING:
    from django.http import HttpRequest

    from kefu.models import ChannelAccount, Visitor

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
#: longest text of one message (Bot API sendMessage)
TEXT_MAX = 4096
#: longest caption of a photo or document
CAPTION_MAX = 1024


class TelegramAdapter(ChannelAdapter):
    kind = "telegram"
    capabilities = Capabilities(attachments=("image", "file"))
    default_base_url = "https://api.telegram.org"

    def verify(self, *, account: ChannelAccount, request: HttpRequest) -> None:
        """The secret token header must equal the channel's verification token (compared in
        constant time); a channel without one accepts nothing."""
        expected = account.verify_token
        given = request.headers.get(SECRET_HEADER, "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ChannelAuthError(_("The secret token does not match."))

    def events(self, *, account: ChannelAccount, request: HttpRequest) -> list[tuple[str, Any]]:
        """One update per call: ``[(str(update_id), update)]``."""
        try:
            update = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ChannelInputError(_("The body is not JSON.")) from exc
        return [self.update_event(update)]

    @staticmethod
    def update_event(update: Any) -> tuple[str, Any]:
        """``(str(update_id), update)``; :class:`ChannelInputError` without an integer id."""
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if isinstance(update_id, bool) or not isinstance(update_id, int):
            raise ChannelInputError(_("An update needs an integer update_id."))
        return str(update_id), update

    def reply(self, *, account: ChannelAccount, request: HttpRequest) -> tuple[str, str]:
        return "{}", "application/json"

    def inbound(self, *, account: ChannelAccount, payload: Any) -> Inbound | None:
        """A ``message`` in a private chat: its text, largest photo size or document."""
        message = payload.get("message")
        if not isinstance(message, dict):
            kinds = sorted(k for k in payload if k != "update_id")
            logger.info("telegram: update %s of kind %s skipped", payload.get("update_id"), kinds)
            return None
        chat = message.get("chat") or {}
        if chat.get("type") != "private" or "id" not in chat:
            logger.info("telegram: message in a %s chat skipped", chat.get("type"))
            return None
        sender = message.get("from") or {}
        name = " ".join(
            p for p in (sender.get("first_name"), sender.get("last_name")) if isinstance(p, str)
        ).strip() or (sender.get("username") or "")
        language = sender.get("language_code")
        found = Inbound(
            user_id=str(chat["id"]),
            name=name[:100],
            language=language[:16] if isinstance(language, str) else "",
        )
        if isinstance(message.get("text"), str):
            found.text = message["text"]
            return found
        caption = message.get("caption") if isinstance(message.get("caption"), str) else ""
        if isinstance(message.get("photo"), list) and message["photo"]:
            largest = max(message["photo"], key=lambda p: p.get("file_size") or 0)
            found.msg_type, found.text = "image", caption
            found.media = {"file_id": largest.get("file_id")}
            found.file_name = "photo.jpg"
            return found
        if isinstance(message.get("document"), dict):
            doc = message["document"]
            found.msg_type, found.text = "file", caption
            found.media = {"file_id": doc.get("file_id")}
            found.file_name = str(doc.get("file_name") or "document")[:255]
            return found
        kinds = sorted(k for k in message if k not in ("message_id", "from", "chat", "date"))
        logger.info("telegram: message with %s skipped", kinds)
        return None

    # ---- Bot API calls -----------------------------------------------------------------------
    def _call(
        self,
        account: ChannelAccount,
        method: str,
        *,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """POST ``/bot<token>/<method>``; the ``result`` of an ``ok`` answer. Errors: 429 and
        5xx are retried (``retry_after`` honoured), other refusals are permanent."""
        url = f"{self.base_url(account)}/bot{account.secret}/{method}"
        try:
            with self.client() as client:
                if files:
                    response = client.post(url, data=data, files=files, timeout=timeout_s)
                else:
                    response = client.post(url, json=data or {}, timeout=timeout_s)
                body = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise transport_error(exc) from exc
        if isinstance(body, dict) and body.get("ok"):
            return body.get("result")
        description = str((body or {}).get("description") or response.status_code)
        params = (body or {}).get("parameters") or {}
        retry_after = params.get("retry_after")
        raise DeliveryError(
            _("Telegram refused it: %(reason)s") % {"reason": description},
            permanent=response.status_code < 500 and response.status_code != 429,
            retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    def media_fetch(self, *, account: ChannelAccount, inbound: Inbound) -> tuple[bytes, str]:
        """``getFile`` then ``/file/bot<token>/<file_path>``."""
        info = self._call(account, "getFile", data={"file_id": inbound.media.get("file_id")})
        path = (info or {}).get("file_path")
        if not isinstance(path, str) or not path:
            raise DeliveryError(_("Telegram gave no file path."), permanent=True)
        try:
            with self.client() as client:
                response = client.get(f"{self.base_url(account)}/file/bot{account.secret}/{path}")
                response.raise_for_status()
                return response.content, inbound.file_name or path.rsplit("/", 1)[-1]
        except httpx2.HTTPError as exc:
            raise transport_error(exc) from exc

    def send(self, *, account: ChannelAccount, visitor: Visitor, message: Message) -> str:
        """``sendMessage`` for text (over 4,096 characters: split), ``sendPhoto`` for images,
        ``sendDocument`` for other files (the content as caption, cut at 1,024)."""
        chat_id = visitor.external_id
        attachment = message.attachment
        if message.msg_type == Message.Type.TEXT or attachment is None:
            sent = ""
            text = message.content or ""
            for start in range(0, max(len(text), 1), TEXT_MAX):
                sent = self.send_text(
                    account=account, user_id=chat_id, text=text[start : start + TEXT_MAX]
                )
            return sent
        method, field = (
            ("sendPhoto", "photo")
            if message.msg_type == Message.Type.IMAGE
            else ("sendDocument", "document")
        )
        result = self._call(
            account,
            method,
            data={"chat_id": chat_id, "caption": (message.content or "")[:CAPTION_MAX]},
            files={field: (attachment.name, attachment_bytes(attachment), attachment.content_type)},
        )
        return str((result or {}).get("message_id", ""))

    def send_text(self, *, account: ChannelAccount, user_id: str, text: str) -> str:
        result = self._call(account, "sendMessage", data={"chat_id": user_id, "text": text})
        return str((result or {}).get("message_id", ""))

    def updates_fetch(self, *, account: ChannelAccount, timeout_s: int) -> list[Any]:
        """``getUpdates`` after the stored offset (long polling up to ``timeout_s`` seconds)."""
        result = self._call(
            account,
            "getUpdates",
            data={"offset": account.poll_offset + 1, "timeout": timeout_s},
            timeout_s=timeout_s + 10,
        )
        return result if isinstance(result, list) else []
