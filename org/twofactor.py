"""Two-factor sign-in (django-otp) and "log out everywhere": the services behind
``org.account_views`` (docs/security.md, "Two-factor authentication").

A user has at most one confirmed TOTP device (an authenticator app), any number of security keys
(WebAuthn, :mod:`org.webauthn`) and one static device holding :data:`RECOVERY_CODES` single-use
recovery codes, made when the first second factor is set up. Secrets at rest: the TOTP key is
encrypted (:class:`org.models.TOTPSecret`), recovery codes are kept as keyed hashes
(:func:`recovery_digest`). The session records the sign-in's state:

- ``SESSION_PENDING`` — the password was right and the code is awaited; the user is *not* signed
  in yet (``{"uid": int, "backend": str, "at": float (epoch s), "next": str}``);
- ``SESSION_VERIFIED`` = ``"ok"`` — this session gave a code (or enrolled a device in it).

Who must use two factors is the tenant's :class:`org.models.SecuritySettings`; the answer is
cached per process for :data:`CACHE_S` seconds.
"""

from __future__ import annotations

import re
import time
from base64 import b32encode
from typing import Any

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import default_key

from org import audit, sessions
from org.models import SealedTOTPDevice, SecurityKey, SecuritySettings, TOTPSecret, User
from org.sessions import session_fingerprint
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

SESSION_PENDING = "weiyu_2fa_pending"
SESSION_VERIFIED = "weiyu_2fa"
#: recovery codes made at enrolment (each works once)
RECOVERY_CODES = 10
#: seconds a tenant's rule is cached per process
CACHE_S = 30.0
_TOTP_NAME = "authenticator"
_cache: dict[str, tuple[float, str]] = {}


# --- who must ------------------------------------------------------------------------------


def required_rule() -> str:
    """The current tenant's ``SecuritySettings.two_factor_required`` (``"nobody"``,
    ``"admins"`` or ``"everyone"``), cached per process for :data:`CACHE_S` s; one query on a
    miss. Call inside the tenant's schema (the public one for the platform admin)."""
    schema = connection.schema_name
    now = time.monotonic()
    hit = _cache.get(schema)
    if hit and hit[0] > now:
        return hit[1]
    rule = SecuritySettings.current().two_factor_required
    _cache[schema] = (now + CACHE_S, rule)
    return rule


def settings_save(row: SecuritySettings) -> None:
    """Save the tenant's security settings; this process applies them at once, others within
    :data:`CACHE_S` s."""
    row.save()
    _cache.pop(connection.schema_name, None)


def is_required(user: User) -> bool:
    """Whether the tenant requires ``user`` to sign in with a second factor."""
    rule = required_rule()
    if rule == SecuritySettings.TwoFactorRequired.EVERYONE:
        return True
    return rule == SecuritySettings.TwoFactorRequired.ADMINS and user.is_admin


def has_device(user: User) -> bool:
    """Whether ``user`` has a second factor — a confirmed authenticator app or a security key —
    (then every sign-in asks for one)."""
    return has_totp(user) or has_security_key(user)


def has_totp(user: User) -> bool:
    """Whether ``user`` has a confirmed authenticator app."""
    return SealedTOTPDevice.objects.filter(user=user, confirmed=True).exists()


def has_security_key(user: User) -> bool:
    """Whether ``user`` has a security key (WebAuthn; :mod:`org.webauthn`)."""
    return SecurityKey.objects.filter(user=user).exists()


def recovery_codes_left(user: User) -> int:
    """How many unused recovery codes ``user`` has."""
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def session_verified(session: Any) -> bool:
    """Whether this session gave a second factor (or enrolled one)."""
    return session.get(SESSION_VERIFIED) == "ok"


def session_allowed(session: Any, user: User) -> bool:
    """Whether a signed-in session may use the inbox, the API and sockets: it gave a second
    factor, or the tenant does not require one of ``user``."""
    return session_verified(session) or not is_required(user)


def recovery_codes_delete(user: User) -> None:
    """Forget ``user``'s recovery codes (their last second factor is gone)."""
    StaticDevice.objects.filter(user=user).delete()


# --- codes -----------------------------------------------------------------------------------


def _normalise(code: Any) -> str:
    if not isinstance(code, str):
        return ""
    return re.sub(r"[\s-]", "", code)[:32].lower()


_RECOVERY_SALT = "weiyu.recovery-code"


def recovery_digest(code: str, secret: str | None = None) -> str:
    """What is stored of a recovery code: HMAC-SHA256 of the normalised code under a key derived
    from ``secret`` (``SECRET_KEY`` by default), 16 hex digits (django-otp's token column). A
    database dump alone gives no code back; codes made under a key in ``SECRET_KEY_FALLBACKS``
    keep working after ``SECRET_KEY`` is rotated (:func:`verify_code`)."""
    return salted_hmac(
        _RECOVERY_SALT, code, secret=secret or settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()[:16]


def _recovery_digests(code: str) -> list[str]:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [recovery_digest(code, secret) for secret in secrets]


def recovery_codes_make(user: User) -> list[str]:
    """:data:`RECOVERY_CODES` new recovery codes for ``user``, replacing any old ones; only
    their digests are stored. Returns the codes (shown once). Call inside a transaction."""
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name="recovery", confirmed=True)
    codes: list[str] = []
    while len(codes) < RECOVERY_CODES:
        value = StaticToken.random_token()
        if value not in codes:
            codes.append(value)
    StaticToken.objects.bulk_create(
        [StaticToken(device=static, token=recovery_digest(c)) for c in codes]
    )
    return codes


def verify_code(user: User, code: Any) -> bool:
    """Check a code of ``user``: six digits from the authenticator (each accepted once, within a
    30 s step either side), or a recovery code, which is used up. False for anything else —
    never raises for bad input."""
    token = _normalise(code)
    if not token:
        return False
    if re.fullmatch(r"\d{6}", token):
        device = (
            SealedTOTPDevice.objects.select_related("sealed_key")
            .filter(user=user, confirmed=True)
            .first()
        )
        return device is not None and device.verify_token(token)
    # one DELETE: of two requests racing with the same code only one removes its row
    deleted, _rows = StaticToken.objects.filter(
        device__user=user, device__confirmed=True, token__in=_recovery_digests(token)
    ).delete()
    return deleted > 0


# --- enrolment -------------------------------------------------------------------------------


@transaction.atomic
def enrolment_start(user: User) -> SealedTOTPDevice:
    """The unconfirmed authenticator ``user`` is setting up (made on first call, the same one
    until confirmed, so reloading the page keeps the QR code); its key is kept encrypted
    (:class:`org.models.TOTPSecret`), the device's own key column stays empty. Raises
    ``ServiceError('conflict')`` when the user already has a confirmed one."""
    if has_totp(user):
        raise ServiceError("conflict", _("Two-factor sign-in is already on."))
    device = (
        SealedTOTPDevice.objects.select_related("sealed_key")
        .filter(user=user, confirmed=False, sealed_key__isnull=False)
        .first()
    )
    if device is None:
        SealedTOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = SealedTOTPDevice.objects.create(
            user=user, name=_TOTP_NAME, confirmed=False, key=""
        )
        TOTPSecret.objects.create(device=device, key=default_key())
    return device


def enrolment_qr_svg(device: SealedTOTPDevice) -> str:
    """The device's ``otpauth://`` URI as an SVG QR code (markup made here, safe to inline)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


def secret_text(device: SealedTOTPDevice) -> str:
    """The device's secret in base32, in groups of four, for typing into an authenticator app."""
    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


@transaction.atomic
def enrolment_confirm(request: HttpRequest, user: User, code: Any) -> list[str]:
    """Confirm ``user``'s pending authenticator with a code from it: the device is confirmed,
    :data:`RECOVERY_CODES` new recovery codes replace any old ones, and ``request``'s session
    counts as verified. Returns the recovery codes (shown once; only their digests are stored).
    Raises ``ServiceError('invalid')`` for a wrong code, ``('conflict')`` when there is nothing
    to confirm."""
    device = (
        SealedTOTPDevice.objects.select_for_update(of=("self",))
        .select_related("sealed_key")
        .filter(user=user, confirmed=False)
        .first()
    )
    if device is None or has_totp(user):
        raise ServiceError("conflict", _("There is no authenticator waiting to be confirmed."))
    token = _normalise(code)
    if not re.fullmatch(r"\d{6}", token) or not device.verify_token(token):
        raise ServiceError("invalid", _("That code is not right. Enter the current code."))
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = recovery_codes_make(user)
    request.session[SESSION_VERIFIED] = "ok"
    audit.audit_record(actor=user, action=audit.TWO_FACTOR_ON, target=user)
    return codes


# --- sessions --------------------------------------------------------------------------------


@transaction.atomic
def end_other_sessions(request: HttpRequest) -> None:
    """ "Log out everywhere": every session of ``request.user`` except this one ends. Their
    next request is signed out (the session check of :class:`org.models.User` changes), and
    their open sockets get ``session.ended`` and are closed with 4401; this session and its
    sockets stay."""
    user = User.objects.select_for_update().get(pk=request.user.pk)
    kept = session_fingerprint(request.session.session_key)
    sessions.sessions_end_others(user=user, current_key=request.session.session_key)
    user.sessions_epoch += 1
    user.save(update_fields=["sessions_epoch"])
    verified = session_verified(request.session)
    old_key = request.session.session_key
    update_session_auth_hash(request, user)
    if verified:
        request.session[SESSION_VERIFIED] = "ok"
    # the session's key changed with its hash: its record follows it
    sessions.session_key_changed(old_key, request.session.session_key)
    audit.audit_record(actor=user, action=audit.SESSIONS_ENDED, target=user)
    # this session's sockets stay, and learn its new key's fingerprint ("now") so that ending
    # this session later from another device closes them too
    publish_event_on_commit(
        {
            "type": "session.ended",
            "keep": kept,
            "now": session_fingerprint(request.session.session_key),
        },
        [user.member_key],
    )


def pending_start(
    request: HttpRequest, user: User, *, backend: str, next_url: str, method: str = ""
) -> None:
    """Remember in the session that ``user``'s first factor (a password, or single sign-on:
    ``method="sso"``, kept for the audit entry) was right and their code is awaited; they are
    not signed in yet."""
    request.session[SESSION_PENDING] = {
        "uid": user.pk,
        "backend": backend,
        "at": time.time(),
        "next": next_url,
        "method": method,
    }


def pending_user(request: HttpRequest) -> tuple[User, dict[str, Any]] | None:
    """The user whose password was right and whose code is awaited in this session, with the
    pending record, or None (none, or older than ``WEIYU_TWO_FACTOR_STEP_SECONDS``)."""
    pending = request.session.get(SESSION_PENDING)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > settings.WEIYU_TWO_FACTOR_STEP_SECONDS:
        request.session.pop(SESSION_PENDING, None)
        return None
    user = User.objects.filter(pk=pending.get("uid"), is_active=True).first()
    return (user, pending) if user is not None else None
