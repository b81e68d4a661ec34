"""API keys (docs/api.md, "Authentication"): system keys and personal tokens for the REST API.

A token reads ``wy_<prefix>_<secret>`` and is sent as ``Authorization: Bearer <token>``.
:class:`ApiKeyAuthentication` (first in DRF's ``DEFAULT_AUTHENTICATION_CLASSES``) finds the key by
its prefix, compares the keyed hash, checks expiry, revocation, the allowed addresses, the scope of
the resource family for the method (GET/HEAD/OPTIONS read, everything else writes) and the key's
rate limit, then authenticates the request as the key's person. :class:`IdempotencyMiddleware`
replays the answer of a POST repeated with the same ``Idempotency-Key`` for 24 hours.

Errors (the API's JSON shape): unknown, malformed, expired or revoked key, a key of another tenant,
or a deactivated person → ``401 unauthorized``; a client address outside the allow-list or a
resource family outside the scopes → ``403 forbidden``; past the key's requests per minute, or
from an address past its budget of failed authentications (:func:`org.limits.api_key_failures`,
refused before any database query) → ``429 rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis.exceptions import RedisError
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from org import limits
from org.models import ApiKey, User
from weiyu import ratelimit
from weiyu.errors import RateLimitedError, ServiceError

logger = logging.getLogger(__name__)

#: the resource families a scope names, with their label (back office, token form)
FAMILIES = {
    "conversations": gettext_lazy("Conversations, messages, visitors, queue, canned responses"),
    "tickets": gettext_lazy("Tickets"),
    "kbase": gettext_lazy("Knowledge base"),
    "org": gettext_lazy("Organisation: people, departments, agents, workgroups"),
    "stats": gettext_lazy("Statistics and the monitor"),
}
#: what a scope's access lets a key do (``write`` includes reading)
ACCESS = {"read": gettext_lazy("read"), "write": gettext_lazy("read and write")}
ALL_SCOPES = tuple(f"{family}:{access}" for family in FAMILIES for access in ACCESS)

# the family of a path under /api/v1/, first match wins
_FAMILY_PREFIXES = (
    ("/api/v1/im/", "conversations"),
    ("/api/v1/kefu/stats", "stats"),
    ("/api/v1/kefu/monitor", "stats"),
    ("/api/v1/kefu/agents", "org"),
    ("/api/v1/kefu/workgroups", "org"),
    ("/api/v1/kefu/", "conversations"),
    ("/api/v1/tickets", "tickets"),
    ("/api/v1/kbase/", "kbase"),
    ("/api/v1/org/", "org"),
)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_PREFIX = "wy"  # noqa: S105 (the marker of a token, not a secret)
_TOKEN_RE = re.compile(r"^wy_([0-9a-f]{10})_([A-Za-z0-9_-]{43})$")
TOUCH_EVERY = timedelta(minutes=1)
NAME_MAX = 100
IDEMPOTENCY_TTL_S = 24 * 3600
_IDEMPOTENCY_PENDING_S = 300
_IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_BODY_MAX = 1_000_000  # bytes of an answer kept for a replay


def token_hash(token: str) -> str:
    """HMAC-SHA256 (hex, 64 characters) of a whole token, keyed with ``SECRET_KEY``.

    The secret is 32 bytes from :mod:`secrets`, so guessing it is hopeless and a slow password
    hash (PBKDF2, Argon2) would only cost time on every request; the key means the stored hashes
    alone cannot even be checked against a guess."""
    return hmac.new(settings.SECRET_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()


def family_of(path: str) -> str | None:
    """The resource family (a key of :data:`FAMILIES`) of an API path, or None outside them."""
    for prefix, family in _FAMILY_PREFIXES:
        if path.startswith(prefix):
            return family
    return None


def scope_allows(scopes: Iterable[str], family: str | None, method: str) -> bool:
    """Whether ``scopes`` let ``method`` reach ``family``: safe methods need ``read`` or
    ``write``, others ``write``."""
    if family is None:
        return False
    granted = set(scopes)
    if method.upper() in _SAFE_METHODS:
        return f"{family}:read" in granted or f"{family}:write" in granted
    return f"{family}:write" in granted


def _networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in re.split(r"[\s,]+", value or ""):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ServiceError(
                "invalid",
                _("%(value)s is not an address or a network (CIDR).") % {"value": item[:64]},
                field="allowed_ips",
            ) from None
    return networks


def api_key_validate(
    *, name: object, scopes: object, expires_at: object, allowed_ips: object, rate: object
) -> dict[str, Any]:
    """The cleaned fields of a key (``name``, ``scopes`` in :data:`ALL_SCOPES` order,
    ``expires_at``, ``allowed_ips`` one network a line, ``rate_per_minute``), as
    :func:`api_key_create` takes them. Raises ``ServiceError`` ``invalid`` with ``field``."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX:
        raise ServiceError(
            "invalid",
            _("A name of 1 to %(n)d characters is needed.") % {"n": NAME_MAX},
            field="name",
        )
    if (
        not isinstance(scopes, list | tuple)
        or not scopes
        or any(not isinstance(s, str) or s not in ALL_SCOPES for s in scopes)
    ):
        raise ServiceError(
            "invalid",
            _("Scopes are a non-empty list of: %(scopes)s.") % {"scopes": ", ".join(ALL_SCOPES)},
            field="scopes",
        )
    if expires_at is not None:
        if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
            raise ServiceError("invalid", _("An expiry needs a time zone."), field="expires_at")
        if expires_at <= timezone.now():
            raise ServiceError(
                "invalid", _("The expiry must be in the future."), field="expires_at"
            )
    if not isinstance(allowed_ips, str):
        raise ServiceError("invalid", _("Addresses are text."), field="allowed_ips")
    networks = _networks(allowed_ips)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= 1_000_000:
        raise ServiceError(
            "invalid", _("Requests per minute: 0 to 1,000,000."), field="rate_per_minute"
        )
    return {
        "name": name.strip(),
        "scopes": [s for s in ALL_SCOPES if s in scopes],
        "expires_at": expires_at,
        "allowed_ips": "\n".join(str(n) for n in networks),
        "rate_per_minute": rate,
    }


def api_key_create(
    *,
    kind: str,
    user: User,
    name: object,
    scopes: object,
    expires_at: object = None,
    allowed_ips: object = "",
    rate_per_minute: object = 600,
) -> tuple[ApiKey, str]:
    """A new key acting as ``user`` → ``(key, token)``. The token (``wy_<prefix>_<secret>``) is
    returned here only: it is stored hashed and can never be read again.

    ``kind`` ``system`` needs an administrator (``role`` admin or superuser), ``personal`` an
    agent or administrator; ``scopes`` a non-empty list out of :data:`ALL_SCOPES`;
    ``expires_at`` an aware datetime in the future or None; ``allowed_ips`` addresses/CIDRs
    separated by commas, spaces or lines; ``rate_per_minute`` 0 (no limit) to 1,000,000.
    Raises ``ServiceError`` ``invalid`` (with ``field``) or ``forbidden``."""
    if kind == ApiKey.Kind.SYSTEM:
        if not (user.role == User.Role.ADMIN or user.is_superuser):
            raise ServiceError("forbidden", _("Only administrators create system keys."))
    elif kind == ApiKey.Kind.PERSONAL:
        if not (user.is_agent or user.is_superuser):
            raise ServiceError("forbidden", _("Only agents and administrators create tokens."))
    else:
        raise ServiceError("invalid", _("Unknown kind of key."), field="kind")
    if not user.is_active or user.deleted_at is not None:
        raise ServiceError("forbidden", _("This person cannot sign in."))
    fields = api_key_validate(
        name=name,
        scopes=scopes,
        expires_at=expires_at,
        allowed_ips=allowed_ips,
        rate=rate_per_minute,
    )
    prefix = secrets.token_hex(5)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        kind=kind, user=user, prefix=prefix, secret_hash=token_hash(token), **fields
    )
    return key, token


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke ``key`` now (it answers ``401`` from the next request on); revoking a revoked key
    changes nothing."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
    return key


def _unauthorized(message: str) -> ServiceError:
    return ServiceError("unauthorized", message)


def api_key_check(*, token: str, ip: str) -> ApiKey:
    """The live key of ``token`` in the current tenant's schema, used from address ``ip``
    (with its ``user`` loaded). Raises ``ServiceError`` ``unauthorized`` (unknown, malformed,
    expired, revoked, the person deactivated) or ``forbidden`` (address not allowed). Writes
    nothing."""
    match = _TOKEN_RE.match(token)
    key = (
        ApiKey.objects.select_related("user").filter(prefix=match.group(1)).first()
        if match
        else None
    )
    if key is None or not hmac.compare_digest(key.secret_hash, token_hash(token)):
        raise _unauthorized(_("Invalid API key."))
    if key.revoked_at is not None:
        raise _unauthorized(_("This API key has been revoked."))
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise _unauthorized(_("This API key has expired."))
    if not key.user.is_active or key.user.deleted_at is not None:
        raise _unauthorized(_("The person of this API key cannot sign in."))
    if key.allowed_ips:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in _networks(key.allowed_ips)):
            raise ServiceError("forbidden", _("This API key is not allowed from this address."))
    return key


_CHECKED = "_weiyu_api_key"


def api_key_for_request(request: HttpRequest, token: str) -> ApiKey:
    """:func:`api_key_check` of ``token`` from the request's ``REMOTE_ADDR``, within the
    address's budget of failures (:func:`org.limits.api_key_failures`): an address past it is
    refused before the token is looked up (no database query), and each ``unauthorized`` answer
    counts one failure. The outcome is kept on the request, so the Idempotency-Key middleware
    and the DRF authentication check (and count) a token once. Raises ``ServiceError``
    (``unauthorized``, ``forbidden``) or ``RateLimitedError`` (429, ``retry_after_s``)."""
    done = getattr(request, _CHECKED, None)
    if done is not None and done[0] == token:
        if isinstance(done[1], Exception):
            raise done[1]
        return done[1]
    ip = request.META.get("REMOTE_ADDR", "")
    budget = limits.api_key_failures(ip=ip)
    outcome: ApiKey | Exception
    try:
        ratelimit.peek(budget)
        outcome = api_key_check(token=token, ip=ip)
    except RateLimitedError as exc:
        outcome = exc
    except ServiceError as exc:
        outcome = exc
        if exc.code == "unauthorized":
            try:
                ratelimit.check(budget)
            except RateLimitedError as refused:
                outcome = refused
    setattr(request, _CHECKED, (token, outcome))
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def api_key_touch(key: ApiKey) -> None:
    """Record that ``key`` was used now: one UPDATE at most once a minute per key."""
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_EVERY)
    ).update(last_used_at=now)
    key.last_used_at = now


def rate_limit(key: ApiKey) -> ratelimit.Limit:
    """The key's requests-per-minute limit (fixed clock minute, :mod:`weiyu.ratelimit`)."""
    return ratelimit.Limit(
        name="apikey",
        key=f"{connection.schema_name}:{key.pk}",
        limit=key.rate_per_minute,
        window_s=60,
        message=lambda: _("Too many requests with this API key; try again later."),
    )


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None without one."""
    scheme, _sep, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication by ``Authorization: Bearer wy_<prefix>_<secret>``: the request acts as
    the key's person (``request.auth`` is the :class:`~org.models.ApiKey`). Also checks, here so
    that no view can skip it, the scope of the path's family for the method and the key's rate
    limit. The answer is in the person's chosen language, if any (else ``Accept-Language``).
    Without the header it does nothing (the session cookie is tried next). Raises
    ``ServiceError`` → 401 / 403 / 429 JSON (module docstring)."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        token = bearer_token(request._request)
        if token is None:
            return None
        key = api_key_for_request(request._request, token)
        if key.user.language:  # as org.middleware.UserLanguageMiddleware does for a session
            translation.activate(key.user.language)
            request._request.LANGUAGE_CODE = key.user.language
        if not scope_allows(key.scopes, family_of(request.path), request.method or "GET"):
            raise ServiceError("forbidden", _("This API key's scopes do not cover this request."))
        ratelimit.check([rate_limit(key)])
        api_key_touch(key)
        return key.user, key

    def authenticate_header(self, request: Request) -> str | None:
        """None: without credentials the API keeps answering ``403`` (the inbox's session)."""
        return None


def api_key_payload(key: ApiKey) -> dict[str, Any]:
    """``{"id", "kind", "name", "prefix", "scopes", "expires_at", "allowed_ips": [CIDR],
    "rate_per_minute", "created_at", "last_used_at", "revoked_at"}`` (times ISO 8601 or null).
    Never the secret."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": key.pk,
        "kind": key.kind,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "expires_at": iso(key.expires_at),
        "allowed_ips": [line for line in key.allowed_ips.split("\n") if line],
        "rate_per_minute": key.rate_per_minute,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }


# --- Idempotency-Key on POST ---------------------------------------------------------------


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 (hex, 64 characters) of what makes two requests "the same" for an
    ``Idempotency-Key``: the method, the path with its query string and the body. A
    ``multipart/form-data`` body is read as its parts (every form field, and every file's field,
    name, type, size and SHA-256, in order), so two uploads of the same length but other bytes
    differ. Raises ``RequestDataTooBig`` past Django's upload limits (as the view would)."""
    digest = hashlib.sha256(f"{request.method} {request.get_full_path()}\n".encode())
    if request.content_type == "multipart/form-data":
        for field, values in sorted(request.POST.lists()):
            for value in values:
                digest.update(json.dumps(["field", field, value]).encode())
        for field, uploads in sorted(request.FILES.lists()):
            for upload in uploads:
                content = hashlib.sha256()
                for chunk in upload.chunks():
                    content.update(chunk)
                upload.seek(0)
                digest.update(
                    json.dumps(
                        [
                            "file",
                            field,
                            upload.name,
                            upload.content_type,
                            upload.size,
                            content.hexdigest(),
                        ]
                    ).encode()
                )
    else:
        digest.update(b"body\n" + request.body)
    return digest.hexdigest()


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def idempotency_reused() -> JsonResponse:
    """``422 {"error": "idempotency_key_reused", "detail"}``: an ``Idempotency-Key`` sent again
    with another method, path or body (the API channel's inbound endpoint answers it too)."""
    return _error(
        422,
        "idempotency_key_reused",
        _("This Idempotency-Key was used for another request; use a new key for a new request."),
    )


class IdempotencyMiddleware:
    """``Idempotency-Key: <1-255 printable characters>`` on a ``POST /api/v1/…`` made with an API
    key: the first answer (any status but 429 and 5xx, up to 1 MB) is kept in Redis for 24 hours
    under (tenant, the key's random prefix — never reused, unlike a row id — and
    Idempotency-Key) and a repeat gets it again — same status and body, with
    ``Idempotent-Replayed: true`` — without running the request twice. A repeat with another
    path or body (:func:`request_fingerprint`) → ``422 idempotency_key_reused``; one while the
    first still runs → ``409 idempotency_key_in_use``; a bad header → ``400 invalid``. Requests
    with a session cookie or without the header pass through. Without Redis, requests pass
    through (logged)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        idem = request.headers.get("Idempotency-Key")
        token = bearer_token(request)
        if (
            idem is None
            or token is None
            or request.method != "POST"
            or not request.path.startswith("/api/v1/")
        ):
            return self.get_response(request)
        if not 1 <= len(idem) <= _IDEMPOTENCY_KEY_MAX or not idem.isprintable():
            return _error(400, "invalid", _("Idempotency-Key: 1 to 255 printable characters."))
        try:
            key = api_key_for_request(request, token)
            fingerprint = request_fingerprint(request)
        except (ServiceError, RequestDataTooBig):
            return self.get_response(request)  # the view answers 401/403/413/429
        slot = hashlib.sha256(idem.encode()).hexdigest()
        name = f"{settings.REDIS_KEY_PREFIX}:idem:{connection.schema_name}:{key.prefix}:{slot}"
        pending = json.dumps({"pending": True, "fp": fingerprint})
        try:
            if not _redis().set(name, pending, nx=True, ex=_IDEMPOTENCY_PENDING_S):
                return self._replay(_redis().get(name), fingerprint)
        except RedisError as exc:
            logger.warning("Idempotency-Key not honoured, Redis unreachable: %s", exc)
            return self.get_response(request)
        response = self.get_response(request)
        try:
            if (
                response.status_code >= 500
                or response.status_code == 429
                or response.streaming
                or len(response.content) > _IDEMPOTENCY_BODY_MAX
            ):
                _redis().delete(name)
            else:
                stored = {
                    "fp": fingerprint,
                    "status": response.status_code,
                    "content_type": response.get("Content-Type", ""),
                    "body": base64.b64encode(response.content).decode(),
                }
                _redis().set(name, json.dumps(stored), ex=IDEMPOTENCY_TTL_S)
        except RedisError as exc:
            logger.warning("answer for an Idempotency-Key not kept: %s", exc)
        return response

    @staticmethod
    def _replay(raw: bytes | None, fingerprint: str) -> HttpResponse:
        stored = json.loads(raw) if raw else {"pending": True, "fp": fingerprint}
        if stored.get("fp") != fingerprint:
            return idempotency_reused()
        if stored.get("pending"):
            return _error(
                409,
                "idempotency_key_in_use",
                _("A request with this Idempotency-Key is still running; try again later."),
            )
        response = HttpResponse(
            base64.b64decode(stored["body"]),
            status=stored["status"],
            content_type=stored["content_type"] or None,
        )
        response["Idempotent-Replayed"] = "true"
        return response


class ApiKeySchemeExtension(OpenApiAuthenticationExtension):
    """The ``bearerAuth`` security scheme of the OpenAPI schema (weiyu/schema.py)."""

    target_class = ApiKeyAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        """HTTP bearer, formatted ``wy_<prefix>_<secret>``."""
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "wy_<prefix>_<secret>",
            "description": "An API key or personal token (docs/api.md, Authentication).",
        }
