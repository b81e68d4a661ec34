"""Security keys and passkeys (WebAuthn) as a second factor: registering them on the security
page and signing in with one at the code step (``org.account_views``; docs/security.md,
"Security keys"). The ceremonies are py_webauthn's (``webauthn`` on PyPI); this module keeps
the challenges, the credentials (:class:`org.models.SecurityKey`) and the rules:

- the relying party is the host the request came to (the tenant's domain, or the platform's), and
  the origin is ``<scheme>://<host>`` of the request: a response made for another site fails;
- each challenge is random (64 bytes), kept in the session, used once (taken out before it is
  checked, whatever the outcome) and dies after :data:`CHALLENGE_S` seconds;
- the signature counter must go up at every sign-in unless the authenticator keeps none (0);
  a response whose counter does not is refused (a cloned key);
- attestation ``none``: we do not restrict which authenticator models may be used;
- a passkey sign-in (no password, :func:`passkey_options`) needs user verification (the
  device's fingerprint, face or PIN), so it is two factors in one.

Errors: :class:`weiyu.errors.ServiceError` with ``invalid`` (a response that fails a check, a
bad name), ``expired`` (no live challenge), ``conflict`` (too many keys, a key registered
twice), ``not_found`` (another user's key).
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from org import audit, twofactor
from org.models import SecurityKey, User
from weiyu.errors import ServiceError

#: seconds a challenge stays usable (the browser's own timeout is :data:`TIMEOUT_MS`)
CHALLENGE_S = 180
#: how long the browser waits for the user to touch the key, in milliseconds
TIMEOUT_MS = 120_000
#: security keys a user may register
MAX_KEYS = 10
#: bytes of a browser's response accepted at most (a credential is well under 4 KB)
MAX_RESPONSE_BYTES = 64 * 1024
#: characters of a key's name
MAX_NAME = 64
_SESSION = "weiyu_webauthn"
_TRANSPORTS = {t.value for t in AuthenticatorTransport}
_BAD_RESPONSE = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


def relying_party(request: HttpRequest) -> tuple[str, str]:
    """``(rp_id, origin)`` of ``request``: the host without its port, and ``scheme://host[:port]``
    as the browser sees it (the scheme and client address come from
    :mod:`weiyu.clientaddr`, which trusts only configured proxies)."""
    host = request.get_host()
    rp_id = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return rp_id.lower(), f"{request.scheme}://{host}".lower()


def _rp_name(request: HttpRequest) -> str:
    tenant = getattr(request, "tenant", None)
    name = getattr(tenant, "name", "") if tenant is not None else ""
    return name if name and tenant.schema_name != "public" else "Weiyu"


def _remember(request: HttpRequest, purpose: str, user: User | None, challenge: bytes) -> None:
    request.session[_SESSION] = {
        "purpose": purpose,
        "uid": user.pk if user is not None else None,
        "challenge": bytes_to_base64url(challenge),
        "at": time.time(),
    }


def _take_challenge(request: HttpRequest, purpose: str, user: User | None) -> bytes:
    """The live challenge of ``purpose`` for ``user`` (None: a passkey sign-in, nobody known
    yet), taken out of the session (single use). Raises ``ServiceError('expired')`` when there
    is none, it is someone else's, or too old."""
    kept = request.session.pop(_SESSION, None)
    if (
        not isinstance(kept, dict)
        or kept.get("purpose") != purpose
        or kept.get("uid") != (user.pk if user is not None else None)
        or time.time() - float(kept.get("at", 0)) > CHALLENGE_S
    ):
        raise ServiceError(
            "expired", _("That took too long, or the page is out of date. Try again.")
        )
    return _b64decode(kept["challenge"])


def _b64decode(value: str) -> bytes:
    return base64url_to_bytes(value)


def _parse(response: Any) -> dict[str, Any]:
    """The browser's JSON response (a string of at most :data:`MAX_RESPONSE_BYTES`) as a dict;
    ``ServiceError('invalid')`` otherwise."""
    if not isinstance(response, str) or len(response) > MAX_RESPONSE_BYTES:
        raise ServiceError("invalid", _("The security key's answer is not valid."))
    try:
        parsed = json.loads(response)
    except ValueError as exc:
        raise ServiceError("invalid", _("The security key's answer is not valid.")) from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise ServiceError("invalid", _("The security key's answer is not valid."))
    return parsed


def _descriptor(key: SecurityKey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in key.transports if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(
        id=_b64decode(key.credential_id), transports=transports or None
    )


def keys_of(user: User) -> list[SecurityKey]:
    """``user``'s security keys, oldest first (name, domain, added, last used)."""
    return list(SecurityKey.objects.filter(user=user).order_by("created_at", "id"))


# --- registration (the security page) --------------------------------------------------------


def registration_options(request: HttpRequest, user: User) -> dict[str, Any]:
    """The ``PublicKeyCredentialCreationOptions`` (JSON-ready dict, binary fields base64url) for
    ``navigator.credentials.create()`` on this host; the challenge is kept in the session.
    ``user``'s keys already registered here are excluded (a key is registered once). Raises
    ``ServiceError('conflict')`` at :data:`MAX_KEYS` keys."""
    keys = keys_of(user)
    if len(keys) >= MAX_KEYS:
        raise ServiceError(
            "conflict",
            _("You have %(count)d security keys, the most allowed.") % {"count": MAX_KEYS},
        )
    rp_id, _origin = relying_party(request)
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=_rp_name(request),
        user_id=f"{connection.schema_name}.{user.pk}".encode(),
        user_name=user.get_username(),
        user_display_name=getattr(user, "display_name", "") or user.get_username(),
        timeout=TIMEOUT_MS,
        # discoverable where the authenticator can (a passkey): it can then sign in on its own
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(k) for k in keys if k.rp_id == rp_id],
    )
    _remember(request, "register", user, options.challenge)
    return json.loads(options_to_json(options))


@transaction.atomic
def registration_finish(
    request: HttpRequest, user: User, *, name: Any, response: Any
) -> tuple[SecurityKey, list[str]]:
    """Verify the browser's answer to :func:`registration_options` (``response``: the
    credential as JSON text) and keep the key under ``name`` (1 to :data:`MAX_NAME` characters,
    trimmed). The challenge is used up whatever the outcome. When this is ``user``'s first
    second factor, :data:`org.twofactor.RECOVERY_CODES` recovery codes are made and returned
    (shown once), else ``[]``; the session counts as verified either way. The audit log records
    "Security key added". Errors: ``invalid`` (bad name, a response that fails a check),
    ``expired``, ``conflict`` (the key is registered already)."""
    challenge = _take_challenge(request, "register", user)
    label = name.strip()[:MAX_NAME] if isinstance(name, str) else ""
    if not label:
        raise ServiceError("invalid", _("Give the key a name."), field="name")
    credential = _parse(response)
    rp_id, origin = relying_party(request)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except _BAD_RESPONSE as exc:
        raise ServiceError("invalid", _("The security key could not be registered.")) from exc
    had_factor = twofactor.has_device(user)
    transports = (credential.get("response") or {}).get("transports") or []
    try:
        with transaction.atomic():
            key = SecurityKey.objects.create(
                user=user,
                name=label,
                confirmed=True,
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                rp_id=rp_id,
                transports=[t for t in transports if t in _TRANSPORTS][:8],
                aaguid=verified.aaguid[:36],
            )
    except IntegrityError as exc:
        raise ServiceError("conflict", _("This security key is registered already.")) from exc
    codes = [] if had_factor else twofactor.recovery_codes_make(user)
    request.session[twofactor.SESSION_VERIFIED] = "ok"
    audit.audit_record(
        actor=user, action=audit.SECURITY_KEY_ADDED, target=user, data={"key": label}
    )
    return key, codes


@transaction.atomic
def key_delete(*, user: User, key_id: int, actor: User | None = None) -> None:
    """Remove ``user``'s security key ``key_id``; ``actor`` is who does it (``user`` by
    default; an administrator removing a lost key in the back office). Without any second factor
    left, the recovery codes go too. Raises ``ServiceError('not_found')`` for a key that is not
    ``user``'s, and ``('conflict')`` when ``user`` removes their own last one while the tenant
    requires them to use two factors (an administrator may: the user is then sent to set one up
    at the next sign-in). The audit log records "Security key removed"."""
    key = SecurityKey.objects.select_for_update().filter(user=user, pk=key_id).first()
    if key is None:
        raise ServiceError("not_found", _("There is no such security key."))
    others = SecurityKey.objects.filter(user=user).exclude(pk=key.pk).exists()
    if not others and not twofactor.has_totp(user):
        if actor is None and twofactor.is_required(user):
            raise ServiceError(
                "conflict",
                _(
                    "Your organisation requires two-factor sign-in: add another security key "
                    "or an authenticator app before removing your last key."
                ),
            )
        twofactor.recovery_codes_delete(user)
    key.delete()
    audit.audit_record(
        actor=actor or user, action=audit.SECURITY_KEY_REMOVED, target=user, data={"key": key.name}
    )


# --- signing in (the code step) ----------------------------------------------------------------


def authentication_options(request: HttpRequest, user: User) -> dict[str, Any]:
    """The ``PublicKeyCredentialRequestOptions`` (JSON-ready dict) for
    ``navigator.credentials.get()``: ``user``'s keys registered on this host; the challenge is
    kept in the session. Raises ``ServiceError('not_found')`` when there are none here."""
    rp_id, _origin = relying_party(request)
    keys = [k for k in keys_of(user) if k.rp_id == rp_id]
    if not keys:
        raise ServiceError("not_found", _("You have no security key for this site."))
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(k) for k in keys],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _remember(request, "sign_in", user, options.challenge)
    return json.loads(options_to_json(options))


def authentication_verify(request: HttpRequest, user: User, response: Any) -> bool:
    """Whether ``response`` (the assertion as JSON text) is a valid answer of one of ``user``'s
    keys on this host to the challenge of :func:`authentication_options` (used up whatever the
    outcome). On success the key's counter and last use are saved. False for anything else —
    no challenge, an expired one, another user's or unknown key, a bad signature, origin or
    host, a counter that did not go up; never raises for bad input."""
    try:
        challenge = _take_challenge(request, "sign_in", user)
        credential = _parse(response)
    except ServiceError:
        return False
    rp_id, origin = relying_party(request)
    key = SecurityKey.objects.filter(
        user=user, rp_id=rp_id, credential_id=credential["id"][:1400]
    ).first()
    if key is None:
        return False
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=bytes(key.public_key),
            credential_current_sign_count=key.sign_count,
        )
    except _BAD_RESPONSE:
        return False
    # a conditional update: of two racing uses of one signature only one moves the counter
    moved = SecurityKey.objects.filter(pk=key.pk, sign_count=key.sign_count).update(
        sign_count=verified.new_sign_count, last_used_at=timezone.now()
    )
    return moved == 1


# --- passkey sign-in (no password) -------------------------------------------------------------


def passkey_options(request: HttpRequest) -> dict[str, Any]:
    """Request options for a sign-in with a passkey alone (the sign-in pages' *Sign in with a
    passkey*): no credentials listed (the authenticator offers its discoverable ones for this
    host), user verification required; the challenge is kept in the anonymous session."""
    rp_id, _origin = relying_party(request)
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    _remember(request, "passkey", None, options.challenge)
    return json.loads(options_to_json(options))


def passkey_verify(request: HttpRequest, response: Any) -> tuple[User | None, bool]:
    """Check a passkey sign-in: ``response`` (the assertion as JSON text) answers the challenge
    of :func:`passkey_options` (used up whatever the outcome) with a key registered on this
    host, signed with user verification, its counter gone up. Returns ``(the key's user or
    None when the key is unknown, whether it passed)``; the key's counter and last use are
    saved on success. Never raises for bad input. The caller checks that the user may sign in
    (active, not locked out)."""
    try:
        challenge = _take_challenge(request, "passkey", None)
        credential = _parse(response)
    except ServiceError:
        return None, False
    rp_id, origin = relying_party(request)
    key = (
        SecurityKey.objects.select_related("user")
        .filter(rp_id=rp_id, credential_id=credential["id"][:1400])
        .first()
    )
    if key is None:
        return None, False
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=bytes(key.public_key),
            credential_current_sign_count=key.sign_count,
            require_user_verification=True,
        )
    except _BAD_RESPONSE:
        return key.user, False
    moved = SecurityKey.objects.filter(pk=key.pk, sign_count=key.sign_count).update(
        sign_count=verified.new_sign_count, last_used_at=timezone.now()
    )
    return key.user, moved == 1
