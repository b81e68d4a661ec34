"""WeChat Official Accounts (公众号), customer-service messages (客服消息).

Inbound (the server configuration's URL, https://developers.weixin.qq.com/doc/offiaccount/
Basic_Information/Access_Overview.html): ``GET`` with ``signature``/``timestamp``/``nonce``/
``echostr`` is answered with ``echostr`` when ``sha1(sort(token, timestamp, nonce))`` matches;
``POST`` carries one XML message, in plain mode as is, in safe mode (``encrypt_type=aes``) in an
``<Encrypt>`` element checked with ``msg_signature = sha1(sort(token, timestamp, nonce,
encrypt))`` and decrypted per the WXBizMsgCrypt scheme (:func:`decrypt`). We answer ``success``
and reply later through the customer-service API (WeChat waits 5 s, then retries 3 times: a
message is stored once by its ``MsgId``, an event by ``FromUserName:CreateTime:Event``).

Outbound: ``cgi-bin/message/custom/send`` with the access token (``cgi-bin/token``; cached
encrypted in the account until 5 minutes before it expires, fetched again on 40001/40014/42001),
images uploaded first with ``cgi-bin/media/upload``. WeChat accepts customer-service messages
only within 48 hours of the follower's last message (errcode 45015): the inbox refuses a reply
after that with a clear error (:meth:`WeChatAdapter.reply_window_check`). A new follower's name
comes from ``cgi-bin/user/info``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import httpx2
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import ElementTree as SafeET
from django.utils import timezone
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
from weiyu.errors import ServiceError

if TYPE_CHECKING:
    from django.http import HttpRequest

    from kefu.models import ChannelAccount, Session, Visitor

#: WeChat lets an account write to a follower this long after the follower's last message
REPLY_WINDOW = timedelta(hours=48)
#: access-token errors after which a fresh token is fetched and the call made once more
TOKEN_ERRORS = {40001, 40014, 42001}
#: largest callback body read (a WeChat message is a few hundred bytes)
BODY_MAX = 64 * 1024
BLOCK = 32  # PKCS#7 block size of WXBizMsgCrypt


def sha1_signature(*parts: str) -> str:
    """``sha1`` of the parts sorted and joined, as WeChat signs callbacks."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except ValueError as exc:
        raise ChannelAuthError(_("The EncodingAESKey is not valid.")) from exc
    if len(key) != 32:
        raise ChannelAuthError(_("The EncodingAESKey is not valid."))
    return key


def decrypt(*, encrypted: str, encoding_aes_key: str, app_id: str) -> bytes:
    """The XML inside a safe-mode ``<Encrypt>``: AES-256-CBC with the key
    ``base64(EncodingAESKey + "=")`` and its first 16 bytes as IV, PKCS#7 padding to 32 bytes;
    the plain text is 16 random bytes, the message length (4 bytes, big-endian), the message and
    the AppID, which must be ours. Raises :class:`ChannelAuthError`."""
    key = _aes_key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK:
            raise ValueError("bad padding")
        plain = plain[:-pad]
        (length,) = struct.unpack(">I", plain[16:20])
        xml, from_app = plain[20 : 20 + length], plain[20 + length :].decode()
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ChannelAuthError(_("The message cannot be decrypted.")) from exc
    if not hmac.compare_digest(from_app.encode(), app_id.encode()):
        raise ChannelAuthError(_("The message is for another AppID."))
    return xml


def encrypt(*, xml: bytes, encoding_aes_key: str, app_id: str) -> str:
    """The ``<Encrypt>`` value of ``xml`` (the inverse of :func:`decrypt`; WeChat's side, used
    by tests and by a passive reply)."""
    key = _aes_key(encoding_aes_key)
    plain = os.urandom(16) + struct.pack(">I", len(xml)) + xml + app_id.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def parse_xml(body: bytes) -> dict[str, str]:
    """A flat WeChat XML message as ``{tag: text}``; :class:`ChannelInputError` for anything
    else (no entities or DTDs are expanded: defusedxml)."""
    try:
        root: Element = SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises ParseError or its own refusals
        raise ChannelInputError(_("The body is not a WeChat XML message.")) from exc
    if root.tag != "xml":
        raise ChannelInputError(_("The body is not a WeChat XML message."))
    return {child.tag: (child.text or "") for child in root}


class WeChatAdapter(ChannelAdapter):
    kind = "wechat_mp"
    capabilities = Capabilities(
        attachments=("image",), reply_window_s=int(REPLY_WINDOW.total_seconds())
    )
    default_base_url = "https://api.weixin.qq.com"

    def _signed(self, account: ChannelAccount, request: HttpRequest) -> None:
        q = request.GET
        token = account.verify_token
        given = q.get("signature", "")
        if not token or not hmac.compare_digest(
            given.encode(),
            sha1_signature(token, q.get("timestamp", ""), q.get("nonce", "")).encode(),
        ):
            raise ChannelAuthError(_("The signature does not match."))

    def verify(self, *, account: ChannelAccount, request: HttpRequest) -> None:
        """``signature`` on every call; in safe mode also ``msg_signature`` over the encrypted
        body (checked in :meth:`events`, where the body is read)."""
        self._signed(account, request)

    def echo(self, *, account: ChannelAccount, request: HttpRequest) -> str:
        """The ``GET`` check of the server URL: ``echostr`` back once the signature matches."""
        self._signed(account, request)
        return request.GET.get("echostr", "")

    def events(self, *, account: ChannelAccount, request: HttpRequest) -> list[tuple[str, Any]]:
        if len(request.body) > BODY_MAX:
            raise ChannelInputError(_("The body is too large."))
        fields = parse_xml(request.body)
        q = request.GET
        if q.get("encrypt_type") == "aes" or "Encrypt" in fields:
            encrypted = fields.get("Encrypt", "")
            expected = sha1_signature(
                account.verify_token, q.get("timestamp", ""), q.get("nonce", ""), encrypted
            )
            if not encrypted or not hmac.compare_digest(
                q.get("msg_signature", "").encode(), expected.encode()
            ):
                raise ChannelAuthError(_("The message signature does not match."))
            fields = parse_xml(
                decrypt(
                    encrypted=encrypted, encoding_aes_key=account.aes_key, app_id=account.app_id
                )
            )
        sender = fields.get("FromUserName", "")
        if not sender:
            raise ChannelInputError(_("The message has no FromUserName."))
        key = fields.get("MsgId") or ":".join(
            (sender, fields.get("CreateTime", ""), fields.get("Event", ""))
        )
        return [(key[:128], fields)]

    def reply(self, *, account: ChannelAccount, request: HttpRequest) -> tuple[str, str]:
        return "success", "text/plain"

    def inbound(self, *, account: ChannelAccount, payload: Any) -> Inbound | None:
        """``text``, ``image`` (by ``MediaId``), ``voice`` (AMR, by ``MediaId``; WeChat's own
        transcript ``Recognition`` as caption when on) and the ``subscribe``/``unsubscribe``
        events; other types (video, location, link, menu clicks…) are skipped with a log
        line."""
        msg_type = payload.get("MsgType")
        found = Inbound(user_id=payload.get("FromUserName", "")[:128])
        if msg_type == "text":
            found.text = payload.get("Content", "")
            return found
        if msg_type in ("image", "voice"):
            found.msg_type = msg_type
            found.media = {"media_id": payload.get("MediaId", "")}
            found.file_name = "image.jpg" if msg_type == "image" else "voice.amr"
            found.text = payload.get("Recognition", "") if msg_type == "voice" else ""
            return found
        if msg_type == "event" and payload.get("Event") in ("subscribe", "unsubscribe"):
            found.event = payload["Event"]
            return found
        logger.info("wechat: %s %s skipped", msg_type, payload.get("Event", ""))
        return None

    # ---- API calls ------------------------------------------------------------------------
    def _token(self, account: ChannelAccount, *, fresh: bool = False) -> str:
        now = timezone.now()
        if (
            not fresh
            and account.access_token
            and account.access_token_expires_at
            and account.access_token_expires_at > now
        ):
            return account.access_token
        try:
            with self.client() as client:
                body = client.get(
                    f"{self.base_url(account)}/cgi-bin/token",
                    params={
                        "grant_type": "client_credential",
                        "appid": account.app_id,
                        "secret": account.secret,
                    },
                ).json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise transport_error(exc) from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise DeliveryError(
                _("WeChat gave no access token: %(reason)s")
                % {"reason": (body or {}).get("errmsg", "")},
                permanent=(body or {}).get("errcode") not in (-1, None),
            )
        expires_in = int(body.get("expires_in") or 7200)
        account.access_token = token
        # kept until 5 minutes before WeChat lets it expire
        account.access_token_expires_at = now + timedelta(seconds=max(expires_in - 300, 60))
        account.save(update_fields=["access_token", "access_token_expires_at"])
        return token

    def _api(
        self,
        account: ChannelAccount,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        """Call ``path`` with the access token (a fresh one once, after a token error). Returns
        the JSON body (``errcode`` 0 or none), or the bytes when ``raw`` and WeChat sent a
        file. Raises :class:`DeliveryError`: ``errcode`` -1 (system busy) and network errors
        are retried, every other errcode is permanent."""
        for attempt in (0, 1):
            token = self._token(account, fresh=attempt == 1)
            try:
                with self.client() as client:
                    response = client.request(
                        method,
                        f"{self.base_url(account)}{path}",
                        params={**(params or {}), "access_token": token},
                        json=json,
                        files=files,
                    )
            except httpx2.HTTPError as exc:
                raise transport_error(exc) from exc
            if response.status_code >= 500:
                raise DeliveryError(f"HTTP {response.status_code}")
            is_json = "json" in response.headers.get("content-type", "") or response.content[
                :1
            ] in (b"{", b"[")
            if raw and not is_json:
                return response.content
            try:
                body = response.json()
            except ValueError as exc:
                raise DeliveryError(_("WeChat answered something else than JSON.")) from exc
            code = body.get("errcode", 0) if isinstance(body, dict) else 0
            if code == 0:
                return body
            if code in TOKEN_ERRORS and attempt == 0:
                continue
            reason = body.get("errmsg", "")
            if code == 45015:
                reason = _("more than 48 hours since the follower's last message")
            raise DeliveryError(
                _("WeChat refused it (%(code)s): %(reason)s") % {"code": code, "reason": reason},
                permanent=code != -1,
            )
        raise DeliveryError(_("WeChat refused the access token."), permanent=True)

    def media_fetch(self, *, account: ChannelAccount, inbound: Inbound) -> tuple[bytes, str]:
        """``cgi-bin/media/get`` (temporary media, kept 3 days by WeChat)."""
        content = self._api(
            account,
            "GET",
            "/cgi-bin/media/get",
            params={"media_id": inbound.media.get("media_id", "")},
            raw=True,
        )
        if not isinstance(content, bytes):
            raise DeliveryError(_("WeChat sent no file."), permanent=True)
        return content, inbound.file_name

    def profile_name(self, *, account: ChannelAccount, user_id: str) -> str:
        """``nickname`` of ``cgi-bin/user/info`` ("" when WeChat gives none)."""
        body = self._api(
            account, "GET", "/cgi-bin/user/info", params={"openid": user_id, "lang": "zh_CN"}
        )
        return str(body.get("nickname") or "")[:100]

    def send(self, *, account: ChannelAccount, visitor: Visitor, message: Message) -> str:
        """A text, or an image uploaded as temporary media then sent by ``media_id`` (its
        caption, if any, as a second text)."""
        attachment = message.attachment
        if message.msg_type == Message.Type.IMAGE and attachment is not None:
            uploaded = self._api(
                account,
                "POST",
                "/cgi-bin/media/upload",
                params={"type": "image"},
                files={
                    "media": (
                        attachment.name,
                        attachment_bytes(attachment),
                        attachment.content_type,
                    )
                },
            )
            self._api(
                account,
                "POST",
                "/cgi-bin/message/custom/send",
                json={
                    "touser": visitor.external_id,
                    "msgtype": "image",
                    "image": {"media_id": uploaded.get("media_id", "")},
                },
            )
            if message.content:
                self.send_text(account=account, user_id=visitor.external_id, text=message.content)
            return ""
        if attachment is not None:
            raise DeliveryError(
                _("WeChat customer-service messages cannot carry this kind of file."),
                permanent=True,
            )
        return self.send_text(
            account=account, user_id=visitor.external_id, text=message.content or ""
        )

    def send_text(self, *, account: ChannelAccount, user_id: str, text: str) -> str:
        self._api(
            account,
            "POST",
            "/cgi-bin/message/custom/send",
            json={"touser": user_id, "msgtype": "text", "text": {"content": text}},
        )
        return ""

    def reply_window_check(self, *, session: Session) -> None:
        """Refuse a reply more than 48 hours after the follower's last message (WeChat's rule
        for customer-service messages; it would answer errcode 45015)."""
        last = session.last_visitor_at
        if last is None or timezone.now() - last > REPLY_WINDOW:
            raise ServiceError(
                "reply_window_closed",
                _(
                    "WeChat only lets you reply within 48 hours of the follower's last message. "
                    "This follower has to write to the account again first."
                ),
            )
