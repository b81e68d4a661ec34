"""The API channel (Chatwoot's "API inbox"): the tenant's own system is the vendor
(docs/channels.md, "API channel"; docs/api.md §17).

In: ``POST /api/v1/kefu/channels/<channel key>/messages`` with ``Authorization: Bearer <the
channel's inbound key>`` (compared in constant time) and a JSON body (or multipart, for an
uploaded file) naming the contact and carrying a text and/or one file — by URL, downloaded
through the SSRF-guarded client, or uploaded. ``Idempotency-Key`` makes a retry store nothing
twice: the event's vendor id is the key's hash.

Out: each agent or robot reply is ``POST``-ed as JSON to the channel's callback URL, signed as
webhooks are (``Weiyu-Signature: t=<unix seconds>,v1=HMAC-SHA256(secret, "<t>.<body>")``,
:func:`org.webhooks.services.signature_header`) with the channel's signing secret; a 2xx answer
is delivered, a network error, 429 or 5xx is tried again with back-off, any other answer fails
the reply at once ("Not delivered: …" with Retry in the inbox).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx2
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
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
    transport_error,
)
from kefu.models import Channel, ChannelAccount
from org.apikeys import bearer_token
from org.webhooks.services import SIGNATURE_HEADER, signature_header
from weiyu import parsing
from weiyu.errors import ServiceError

if TYPE_CHECKING:
    from django.http import HttpRequest

    from kefu.models import Visitor

#: the longest Idempotency-Key (as the REST API's, org.apikeys)
IDEMPOTENCY_KEY_MAX = 255
CONTACT_ID_MAX = 128
URL_MAX = 2000
#: file kinds an inbound message may carry
KINDS = ("image", "file")


def key_new() -> str:
    """A new inbound key (``wyc_`` and 43 URL-safe characters, 256 bits)."""
    return f"wyc_{secrets.token_urlsafe(32)}"


def secret_new() -> str:
    """A new signing secret for the callbacks (``whsec_`` and 43 characters, as webhooks')."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def event_id_for(idempotency_key: str | None) -> str:
    """The stored event's vendor id: ``k:<sha256 of the Idempotency-Key>`` (a retry finds it),
    or a random ``r:<uuid>`` without one. Raises ``ServiceError("invalid")`` for a key that is
    empty, longer than 255 characters or not printable."""
    if idempotency_key is None:
        return f"r:{uuid.uuid4().hex}"
    if not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX or not idempotency_key.isprintable():
        raise ServiceError(
            "invalid", _("Idempotency-Key: 1 to 255 printable characters."), field="Idempotency-Key"
        )
    return "k:" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def message_parse(data: object, *, upload: bool) -> dict[str, Any]:
    """Check an inbound message's body and return the payload kept in the event:
    ``{"contact": {"id", "name", "email", "phone", "language"}, "text", "attachment": {"url", "name",
    "type"} | None}``. ``upload``: a file came with the request (then ``attachment`` is not
    allowed). Raises ``ServiceError("invalid", field=…)``."""
    if not isinstance(data, dict):
        raise ServiceError("invalid", _("The body must be a JSON object."))
    contact = data.get("contact")
    if not isinstance(contact, dict):
        raise ServiceError("invalid", _("contact must be an object."), field="contact")
    cleaned = {
        "id": parsing.text(contact.get("id"), "contact.id", CONTACT_ID_MAX),
        "name": parsing.text(contact.get("name"), "contact.name", 100, required=False),
        "email": parsing.text(contact.get("email"), "contact.email", 254, required=False),
        "phone": parsing.text(contact.get("phone"), "contact.phone", 32, required=False),
        "language": parsing.text(contact.get("language"), "contact.language", 16, required=False),
    }
    if cleaned["email"]:
        try:
            EmailValidator()(cleaned["email"])
        except ValidationError as exc:
            raise ServiceError(
                "invalid", _("contact.email is not an e-mail address."), field="contact.email"
            ) from exc
    text = parsing.text(data.get("text"), "text", settings.WEIYU_MESSAGE_MAX_CHARS, required=False)
    attachment = data.get("attachment")
    if attachment is not None:
        if upload:
            raise ServiceError(
                "invalid", _("Send either a file or an attachment URL."), field="attachment"
            )
        if not isinstance(attachment, dict):
            raise ServiceError("invalid", _("attachment must be an object."), field="attachment")
        url = parsing.text(attachment.get("url"), "attachment.url", URL_MAX)
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError as exc:
            raise ServiceError(
                "invalid", _("attachment.url must be an http(s) URL."), field="attachment.url"
            ) from exc
        kind = attachment.get("type") or "file"
        if kind not in KINDS:
            raise ServiceError(
                "invalid", _("attachment.type is image or file."), field="attachment.type"
            )
        attachment = {
            "url": url,
            "name": parsing.text(attachment.get("name"), "attachment.name", 255, required=False),
            "type": kind,
        }
    if not text and attachment is None and not upload:
        raise ServiceError("invalid", _("Send a text, a file or both."), field="text")
    return {"contact": cleaned, "text": text, "attachment": attachment}


def api_channel_credentials_rotate(*, channel: Channel) -> tuple[str, str]:
    """A new inbound key and signing secret for an API channel, returned to be shown once
    (stored encrypted in its account, created when missing); the old ones stop working at once.
    Raises ``ServiceError("invalid")`` for a channel of another kind."""
    if channel.kind != Channel.Kind.API:
        raise ServiceError("invalid", _("Only API channels have a key and signing secret."))
    key, secret = key_new(), secret_new()
    with transaction.atomic():
        account, _created = ChannelAccount.objects.select_for_update().get_or_create(
            channel=channel
        )
        account.verify_token, account.secret = key, secret
        account.save(update_fields=["verify_token", "secret"])
    return key, secret


class ApiAdapter(ChannelAdapter):
    """A tenant's own system (module docstring). ``ChannelAccount``: ``verify_token`` is the
    inbound key, ``secret`` the signing secret, ``api_base_url`` the callback URL."""

    kind = "api"
    capabilities = Capabilities(attachments=KINDS)
    default_base_url = ""

    def verify(self, *, account: ChannelAccount, request: HttpRequest) -> None:
        """``Authorization: Bearer <inbound key>``, compared in constant time; a channel
        without a key accepts nothing."""
        given = bearer_token(request) or ""
        expected = account.verify_token
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ChannelAuthError(_("The channel key does not match."))

    def events(self, *, account: ChannelAccount, request: HttpRequest) -> list[tuple[str, Any]]:
        """One message per call (a JSON body; the upload path is in kefu.channels.views):
        ``[(event id, payload)]``. Raises :class:`ChannelInputError`."""
        try:
            data = json.loads(request.body)
            payload = message_parse(data, upload=False)
            event_id = event_id_for(request.headers.get("Idempotency-Key"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ChannelInputError(_("The body is not JSON.")) from exc
        except ServiceError as exc:
            raise ChannelInputError(exc.message) from exc
        return [(event_id, payload)]

    def inbound(self, *, account: ChannelAccount, payload: Any) -> Inbound | None:
        contact = payload.get("contact") or {}
        if not contact.get("id"):
            return None
        found = Inbound(
            user_id=contact["id"],
            name=contact.get("name") or "",
            text=payload.get("text") or "",
            email=contact.get("email") or "",
            phone=contact.get("phone") or "",
            language=contact.get("language") or "",
        )
        if payload.get("upload"):
            found.msg_type = payload["upload"]["kind"]
            found.media = dict(payload["upload"])
        elif payload.get("attachment"):
            attachment = payload["attachment"]
            found.msg_type = attachment["type"]
            found.media = {"url": attachment["url"]}
            found.file_name = attachment["name"] or attachment["url"].rsplit("/", 1)[-1][:255]
        return found

    def media_fetch(self, *, account: ChannelAccount, inbound: Inbound) -> tuple[bytes, str]:
        """``GET`` the attachment URL through the SSRF-guarded client (no redirects; the size
        capped by ``WEIYU_OUTBOUND_MAX_BYTES``). A refused address or a 4xx is permanent."""
        try:
            with self.client() as client:
                response = client.get(inbound.media["url"])
        except httpx2.HTTPError as exc:
            raise transport_error(exc) from exc
        except ValueError as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        if response.status_code >= 400:
            raise DeliveryError(
                _("The attachment URL answered HTTP %(status)s.")
                % {"status": response.status_code},
                permanent=response.status_code < 500 and response.status_code != 429,
            )
        return response.content, inbound.file_name or "file"

    # ---- out -----------------------------------------------------------------------------
    def _post(self, account: ChannelAccount, body: dict[str, Any]) -> str:
        """POST the signed JSON to the callback URL; the receiver's ``id`` when it gives one."""
        url = self.base_url(account)
        if not url or not account.secret:
            raise DeliveryError(_("The channel has no callback URL or secret."), permanent=True)
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(
                secret=account.secret, body=raw, timestamp=int(time.time())
            ),
            "Weiyu-Message-Id": str(body["message"]["id"]),
        }
        try:
            with self.client() as client:
                response = client.post(url, content=raw, headers=headers)
        except httpx2.HTTPError as exc:
            raise transport_error(exc) from exc
        if 200 <= response.status_code < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            return str(answer.get("id", "")) if isinstance(answer, dict) else ""
        retry_after = response.headers.get("Retry-After", "")
        raise DeliveryError(
            _("The callback URL answered HTTP %(status)s.") % {"status": response.status_code},
            permanent=response.status_code < 500 and response.status_code != 429,
            retry_after_s=float(retry_after) if retry_after.isdigit() else None,
        )

    def send(self, *, account: ChannelAccount, visitor: Visitor, message: Message) -> str:
        """``{"event": "message.created", "channel": key, "contact": {"id", "name"},
        "message": {"id", "conversation_id", "type", "text", "sender": {"type", "name"},
        "created_at", "attachment": {"name", "content_type", "size", "content_base64"} | null}}``
        (``text`` of a system line: in the contact's language)."""
        attachment = message.attachment
        file = None
        if attachment is not None:
            file = {
                "name": attachment.name,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "content_base64": base64.b64encode(attachment_bytes(attachment)).decode(),
            }
        return self._post(
            account,
            {
                "event": "message.created",
                "channel": account.channel.public_key,
                "contact": {"id": visitor.external_id, "name": visitor.name},
                "message": {
                    "id": message.pk,
                    "conversation_id": message.conversation_id,
                    "type": message.msg_type,
                    "text": message.content,
                    "sender": {"type": message.sender_type, "name": message.sender_name},
                    "created_at": message.created_at.isoformat(),
                    "attachment": file,
                },
            },
        )

    def send_text(self, *, account: ChannelAccount, user_id: str, text: str) -> str:
        """A notice of the channel (closed, queue full, welcome), as a ``system`` message
        without an id in the conversation (``message.id`` is a random string)."""
        return self._post(
            account,
            {
                "event": "message.created",
                "channel": account.channel.public_key,
                "contact": {"id": user_id},
                "message": {
                    "id": f"notice-{uuid.uuid4().hex}",
                    "conversation_id": None,
                    "type": "system",
                    "text": text,
                    "sender": {"type": "system", "name": ""},
                    "created_at": None,
                    "attachment": None,
                },
            },
        )
