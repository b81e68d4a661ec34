"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291), for
:mod:`org.alerts`.

The platform signs every push with one VAPID key pair: ``settings.WEIYU_VAPID_PRIVATE_KEY``
(env, base64url raw P-256 key or PEM) when set, else a key generated at first use and kept in
``.data/vapid_private_key`` (owner-readable only). Its public half is the ``applicationServerKey``
browsers subscribe with; changing the key invalidates every subscription (browsers subscribe
again on their next visit to the alerts page).

A subscription's ``endpoint`` is a URL the browser chose, so it is treated like any URL a user
supplies: ``https`` only, to public addresses, through the SSRF-guarded client
(:mod:`weiyu.outbound`); only a ``host:port`` the operator allow-listed in
``WEIYU_OUTBOUND_ALLOW`` may be plain ``http`` or private (a test's local push service).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from py_vapid import Vapid02

from org.models import PushSubscription, User, UserSession
from org.sessions import session_started
from weiyu import devservices, outbound
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: statuses after which a subscription is gone for good (RFC 8030 §7.3)
GONE = frozenset({404, 410})
#: subscriptions one person may keep (browsers, devices)
MAX_PER_USER = 20


def _encrypt(info: dict[str, Any], data: bytes) -> bytes:
    """``data`` encrypted for the subscription ``info`` (aes128gcm, RFC 8291). Raises
    ``ValueError`` for unusable keys. pywebpush is imported here, on first use: it pulls in
    aiohttp, about a second of start-up that web processes need not pay."""
    from pywebpush import WebPusher, WebPushException

    try:
        return WebPusher(info).encode(data, "aes128gcm")["body"]
    except WebPushException as exc:
        raise ValueError(str(exc)) from exc


def b64url(data: bytes) -> str:
    """``data`` in base64url without padding (the encoding of VAPID and Push API keys)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key_file_read_or_create() -> str:
    path = devservices.DATA_DIR / "vapid_private_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = Vapid02()
    fresh.generate_keys()
    raw = fresh.private_key.private_numbers().private_value.to_bytes(32, "big")
    try:  # O_EXCL: two processes starting together keep the same key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(b64url(raw))
    return b64url(raw)


@lru_cache(maxsize=1)
def vapid() -> Vapid02:
    """The platform's VAPID key pair (see the module docstring)."""
    configured = settings.WEIYU_VAPID_PRIVATE_KEY.strip()
    if configured.startswith("-----BEGIN"):
        return Vapid02.from_pem(configured.encode())
    return Vapid02.from_string(configured or _key_file_read_or_create())


def vapid_public_key() -> str:
    """The public key browsers subscribe with (``applicationServerKey``): the uncompressed P-256
    point, base64url without padding."""
    point = vapid().public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def _subject() -> str:
    configured = settings.WEIYU_VAPID_SUBJECT.strip()
    if configured:
        return configured
    address = settings.DEFAULT_FROM_EMAIL.rsplit("<", 1)[-1].strip(" >")
    return f"mailto:{address}"


def endpoint_check(url: str) -> None:
    """Refuse an endpoint we must not POST to: not ``https`` (unless its ``host:port`` is
    allow-listed, :func:`scheme_check`), or resolving to a refused address
    (:func:`weiyu.outbound.check_url`). Raises ``ServiceError`` ``invalid`` with the reason."""
    scheme_check(url)
    try:
        outbound.check_url(url)
    except outbound.OutboundRefusedError as exc:
        raise ServiceError("invalid", str(exc), field="endpoint") from exc


def scheme_check(url: str) -> None:
    """Refuse an endpoint that is not ``https``, unless it is plain ``http`` to an ``ip:port``
    of ``WEIYU_OUTBOUND_ALLOW``; no name is resolved. Raises ``ServiceError`` ``invalid``."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ServiceError("invalid", _("Not a push service address."), field="endpoint") from exc
    if parts.scheme != "https":
        allowed = outbound.parse_allow_list(getattr(settings, "WEIYU_OUTBOUND_ALLOW", ""))
        if parts.scheme != "http" or (parts.hostname or "", port) not in allowed:
            raise ServiceError(
                "invalid", _("A push service address starts with https://."), field="endpoint"
            )


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ServiceError(
            "invalid", _("The subscription lacks a valid %(key)s.") % {"key": key}, field=key
        )
    return value


def subscription_save(*, request: HttpRequest, user: User, data: object) -> PushSubscription:
    """Keep the browser's subscription for the signed-in user and this session: ``data`` is the
    Push API's ``PushSubscription.toJSON()``, ``{"endpoint": "https://…", "keys": {"p256dh",
    "auth"}}``. The same endpoint subscribed again (or by another person signing in on that
    browser) is moved to this user and session. Returns the row.

    Raises ``ServiceError``: ``invalid`` (shape, key sizes, an endpoint refused by
    :func:`endpoint_check`), ``conflict`` (:data:`MAX_PER_USER` reached), ``unauthorized`` (not
    signed in with a browser session)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ServiceError("invalid", _("Send the browser's push subscription."))
    endpoint = _text(data, "endpoint", 1000)
    p256dh = _text(data["keys"], "p256dh", 200)
    auth = _text(data["keys"], "auth", 100)
    try:  # the keys must be usable, or every push would fail later
        point = base64.urlsafe_b64decode(p256dh + "=" * (-len(p256dh) % 4))
        secret = base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4))
        if len(point) != 65 or point[0] != 4 or len(secret) != 16:
            raise ValueError("key sizes")
        _encrypt({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}, b"{}")
    except ValueError as exc:
        raise ServiceError("invalid", _("The subscription's keys are not valid.")) from exc
    endpoint_check(endpoint)
    key = request.session.session_key
    if not key:
        raise ServiceError("unauthorized", _("Please sign in."))
    session = UserSession.objects.filter(session_key=key, user=user).first()
    if session is None:  # a session older than the sessions list
        session_started(request, user)
        session = UserSession.objects.get(session_key=key, user=user)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        if (
            PushSubscription.objects.filter(user=user).exclude(endpoint=endpoint).count()
            >= MAX_PER_USER
        ):
            raise ServiceError(
                "conflict",
                _("Alerts are on in %(n)d browsers already; turn them off in one first.")
                % {"n": MAX_PER_USER},
            )
        try:
            with transaction.atomic():
                row, _created = PushSubscription.objects.update_or_create(
                    endpoint=endpoint,
                    defaults={
                        "user": user,
                        "session": session,
                        "p256dh": p256dh,
                        "auth": auth,
                        "user_agent": (request.META.get("HTTP_USER_AGENT") or "")[:300],
                        "language": (translation.get_language() or "")[:16],
                    },
                )
        except IntegrityError as exc:  # the same browser, twice at once
            raise ServiceError("conflict", _("Try again.")) from exc
    return row


def subscription_delete(*, user: User, endpoint: object) -> int:
    """Forget the user's subscription of ``endpoint`` (the browser turned alerts off). Returns
    how many were deleted (0 or 1)."""
    if not isinstance(endpoint, str):
        raise ServiceError(
            "invalid", _("endpoint is the subscription's address."), field="endpoint"
        )
    deleted, _per_model = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return deleted


def push_send(*, subscription: PushSubscription, payload: dict[str, Any]) -> int:
    """POST one encrypted push to the subscription's push service (VAPID-signed, aes128gcm,
    ``TTL`` ``settings.WEIYU_PUSH_TTL_S``) through the SSRF-guarded client. Returns 1 when the
    service accepted it (2xx), else 0: on 404/410 the subscription is deleted, and when it is no
    longer usable (not ``https``, bad keys); other failures, a refused address included, are
    logged (the alert is not retried: it would be stale)."""
    endpoint = subscription.endpoint
    info = {
        "endpoint": endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    try:
        scheme_check(endpoint)  # the addresses are checked by the guarded client, connecting
        body = _encrypt(info, json.dumps(payload).encode())
    except (ServiceError, ValueError) as exc:  # not https, or keys no longer usable: useless
        logger.info("push subscription %s unusable, deleted: %s", subscription.pk, exc)
        subscription.delete()
        return 0
    parts = urlsplit(endpoint)
    claims = {
        "aud": f"{parts.scheme}://{parts.netloc}",
        "exp": int(time.time()) + 12 * 3600,
        "sub": _subject(),
    }
    headers = {
        **vapid().sign(claims),
        "TTL": str(settings.WEIYU_PUSH_TTL_S),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Urgency": "high" if payload.get("tag") == "sla" else "normal",
    }
    try:
        with outbound.guarded_client(
            timeout_s=settings.WEIYU_PUSH_TIMEOUT_S, max_bytes=64 * 1024
        ) as client:
            response = client.post(endpoint, content=body, headers=headers)
    except Exception as exc:  # a refused address, a name that does not resolve right now, the
        # push service unreachable: this alert is lost, the rest go on (the subscription stays:
        # a DNS outage must not unsubscribe everyone)
        logger.warning("push to %s failed: %s", parts.netloc, exc)
        return 0
    if response.status_code in GONE:
        subscription.delete()
        return 0
    if not 200 <= response.status_code < 300:
        logger.warning("push to %s answered %s", parts.netloc, response.status_code)
        return 0
    PushSubscription.objects.filter(pk=subscription.pk).update(last_sent_at=timezone.now())
    return 1
