"""Rate limits of every anonymous path, as :class:`weiyu.ratelimit.Limit` lists (docs/security.md,
"Rate limits").

Each path checks its limits with one Redis call *before* any database work, so a flood costs the
service one ``EVAL`` per refused request. Three kinds of limit:

- per visitor (its widget token), per client address (``REMOTE_ADDR`` / ``scope["client"]``,
  :mod:`weiyu.clientaddr`), per e-mail address: the tenant's values (:class:`org.models.
  VisitorLimits`, an empty field taking the platform default of ``settings.WEIYU_VISITOR_LIMITS``);
- per tenant (``settings.WEIYU_TENANT_LIMITS``, platform only — a tenant cannot raise them): new
  chat sessions and visitor messages per minute over the whole tenant, so one tenant's flood
  (a botnet rotating addresses) is refused at its tenant's budget instead of using up the web
  processes' database threads that every tenant's chats share.

``settings.WEIYU_RATE_LIMITS`` false turns every one of them off (load tests).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection
from django.dispatch import receiver
from django.utils.translation import gettext as _

from org.models import VisitorLimits
from weiyu.ratelimit import Limit

MINUTE, HOUR, DAY = 60, 3600, 86400
#: seconds a process keeps a tenant's values before reading them again
CACHE_S = 30.0
MB = 1024 * 1024


@dataclass(frozen=True)
class Effective:
    """A tenant's limits in force (counts per window; 0: off)."""

    sessions_per_ip_minute: int
    connects_per_ip_minute: int
    frames_per_visitor_minute: int
    messages_per_visitor_minute: int
    messages_per_ip_minute: int
    uploads_per_visitor_hour: int
    upload_mb_per_visitor_hour: int
    uploads_per_ip_hour: int
    upload_mb_per_ip_hour: int
    tickets_per_visitor_hour: int
    tickets_per_ip_hour: int
    transcripts_per_visitor_day: int
    transcripts_per_address_day: int
    searches_per_ip_minute: int
    schema: str


_cache: dict[str, tuple[float, Effective]] = {}


def effective() -> Effective:
    """The current tenant's limits (its row over the platform defaults), cached per process for
    :data:`CACHE_S` seconds; one query on a miss. Call inside the tenant's schema."""
    schema = connection.schema_name
    hit = _cache.get(schema)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    row = VisitorLimits.current()
    defaults = settings.WEIYU_VISITOR_LIMITS
    values = {}
    for f in fields(Effective):
        if f.name == "schema":
            continue
        own = getattr(row, f.name)
        values[f.name] = int(own if own is not None else defaults[f.name])
    result = Effective(schema=schema, **values)
    _cache[schema] = (now + CACHE_S, result)
    return result


def cached(schema: str) -> Effective | None:
    """The values of ``schema`` this process holds (fresh or not), or None: for a check before
    any database work."""
    hit = _cache.get(schema)
    return hit[1] if hit else None


def forget(schema: str) -> None:
    """Drop this process's cached values of ``schema`` (after the tenant admin saved them)."""
    _cache.pop(schema, None)


@receiver(setting_changed)
def _defaults_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "WEIYU_VISITOR_LIMITS":
        _cache.clear()


def _on(limits: list[Limit]) -> list[Limit]:
    return limits if settings.WEIYU_RATE_LIMITS else []


def _tenant(name: str) -> int:
    return int(settings.WEIYU_TENANT_LIMITS[name])


def _wait() -> str:
    return _("Too many requests. Please wait a moment and try again.")


def _busy() -> str:
    return _("The service is very busy right now. Please try again in a minute.")


def session_start(lim: Effective, *, ip: str) -> list[Limit]:
    """``POST /api/v1/widget/session``: per address, and the tenant's new sessions."""
    return _on(
        [
            Limit("session-ip", f"{lim.schema}:{ip}", lim.sessions_per_ip_minute, MINUTE, _wait),
            Limit("session-t", lim.schema, _tenant("sessions_per_minute"), MINUTE, _busy),
        ]
    )


def socket_connect(lim: Effective, *, ip: str) -> list[Limit]:
    """Opening ``/ws/visitor/``: per address."""
    return _on(
        [Limit("connect-ip", f"{lim.schema}:{ip}", lim.connects_per_ip_minute, MINUTE, _wait)]
    )


def socket_frame(lim: Effective, *, visitor_id: int) -> list[Limit]:
    """Any frame of a visitor socket but ``message.send``: per visitor (all its sockets)."""
    return _on(
        [
            Limit(
                "frame-v",
                f"{lim.schema}:{visitor_id}",
                lim.frames_per_visitor_minute,
                MINUTE,
                _wait,
            )
        ]
    )


def _messages_wait() -> str:
    return _("You are sending messages too fast. Please wait a moment.")


def message_send(lim: Effective, *, visitor_id: int, ip: str) -> list[Limit]:
    """``message.send`` of a visitor: its frames, its messages, its address's messages and the
    tenant's messages."""
    return [
        *socket_frame(lim, visitor_id=visitor_id),
        *_on(
            [
                Limit(
                    "msg-v",
                    f"{lim.schema}:{visitor_id}",
                    lim.messages_per_visitor_minute,
                    MINUTE,
                    _messages_wait,
                ),
                Limit(
                    "msg-ip",
                    f"{lim.schema}:{ip}",
                    lim.messages_per_ip_minute,
                    MINUTE,
                    _messages_wait,
                ),
                Limit("msg-t", lim.schema, _tenant("messages_per_minute"), MINUTE, _busy),
            ]
        ),
    ]


def upload(lim: Effective, *, visitor_id: str, ip: str, size: int) -> list[Limit]:
    """A widget upload of ``size`` bytes: files and bytes per visitor and per address per hour.
    ``visitor_id`` is the visitor's id and creation time (ids come back after a restore)."""

    def files(n: int) -> Callable[[], str]:
        return lambda: (
            _("You have sent %(n)d files this hour; please wait before sending more.") % {"n": n}
        )

    def megabytes(mb: int) -> Callable[[], str]:
        return lambda: _("You have sent %(mb).0f MB of files this hour; please wait.") % {"mb": mb}

    visitor, address = f"{lim.schema}:{visitor_id}", f"{lim.schema}:{ip}"
    per_visitor, per_ip = lim.uploads_per_visitor_hour, lim.uploads_per_ip_hour
    mb_visitor, mb_ip = lim.upload_mb_per_visitor_hour, lim.upload_mb_per_ip_hour
    return _on(
        [
            Limit("up-n-v", visitor, per_visitor, HOUR, files(per_visitor)),
            Limit("up-n-ip", address, per_ip, HOUR, files(per_ip)),
            Limit("up-b-v", visitor, mb_visitor * MB, HOUR, megabytes(mb_visitor), cost=size),
            Limit("up-b-ip", address, mb_ip * MB, HOUR, megabytes(mb_ip), cost=size),
        ]
    )


def ticket_create(lim: Effective, *, visitor_id: int, ip: str) -> list[Limit]:
    """ "Leave a message" (and a visitor's comments on its tickets): per visitor and address."""

    def message() -> str:
        return _("You have left many messages this hour. Please wait before leaving another.")

    return _on(
        [
            Limit(
                "ticket-v",
                f"{lim.schema}:{visitor_id}",
                lim.tickets_per_visitor_hour,
                HOUR,
                message,
            ),
            Limit("ticket-ip", f"{lim.schema}:{ip}", lim.tickets_per_ip_hour, HOUR, message),
        ]
    )


def transcript_email(lim: Effective, *, visitor_id: int, address: str) -> list[Limit]:
    """A transcript e-mail: per visitor and per recipient address (whichever visitors of the
    tenant ask for it) per day."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]

    def message() -> str:
        return _("No more transcripts can be sent today. Please try again tomorrow.")

    return _on(
        [
            Limit(
                "mail-v",
                f"{lim.schema}:{visitor_id}",
                lim.transcripts_per_visitor_day,
                DAY,
                message,
            ),
            Limit(
                "mail-to", f"{lim.schema}:{digest}", lim.transcripts_per_address_day, DAY, message
            ),
        ]
    )


def help_search(lim: Effective, *, ip: str) -> list[Limit]:
    """A help-center search: per address."""

    def message() -> str:
        return _("Too many searches. Please wait a moment and search again.")

    return _on(
        [Limit("search-ip", f"{lim.schema}:{ip}", lim.searches_per_ip_minute, MINUTE, message)]
    )


#: password-reset requests per client address and per e-mail address per hour (platform-wide)
PASSWORD_RESETS_PER_IP_HOUR = 10
PASSWORD_RESETS_PER_ADDRESS_HOUR = 3


def _reset_message() -> str:
    return _("Too many password reset requests. Please try again in an hour.")


def password_reset_gate(*, schema: str, ip: str) -> list[Limit]:
    """The limits of ``POST /account/password/reset/`` that need no form field: per client
    address per hour, and over the whole tenant per minute
    (``WEIYU_TENANT_LIMITS["password_resets_per_minute"]``, a botnet rotating addresses).
    :mod:`org.signin_gate` reads them before the request reaches Django."""
    return _on(
        [
            Limit("reset-ip", f"{schema}:{ip}", PASSWORD_RESETS_PER_IP_HOUR, HOUR, _reset_message),
            Limit("reset-t", schema, _tenant("password_resets_per_minute"), MINUTE, _reset_message),
        ]
    )


def password_reset(*, schema: str, ip: str, address: str) -> list[Limit]:
    """``POST /account/password/reset/``: :func:`password_reset_gate`, and per e-mail address
    asked for, per hour (the mail goes to the account's owner, but a flood would still fill
    their inbox)."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]
    return [
        *password_reset_gate(schema=schema, ip=ip),
        *_on(
            [
                Limit(
                    "reset-to",
                    f"{schema}:{digest}",
                    PASSWORD_RESETS_PER_ADDRESS_HOUR,
                    HOUR,
                    _reset_message,
                )
            ]
        ),
    ]


def sign_in(*, schema: str, ip: str) -> list[Limit]:
    """A password sign-in (inbox, back office, platform admin), checked before the password is
    hashed: per client address and over the whole tenant, per minute
    (``settings.WEIYU_SIGN_INS_PER_IP_MINUTE``, ``WEIYU_TENANT_LIMITS["sign_ins_per_minute"]``).
    django-axes' lock-out per account and address counts failures; this bounds the hashing."""

    def message() -> str:
        return _("Too many sign-in attempts right now. Please wait a moment and try again.")

    return _on(
        [
            Limit(
                "signin-ip",
                f"{schema}:{ip}",
                settings.WEIYU_SIGN_INS_PER_IP_MINUTE,
                MINUTE,
                message,
            ),
            Limit("signin-t", schema, _tenant("sign_ins_per_minute"), MINUTE, message),
        ]
    )


def api_key_failures(*, ip: str) -> list[Limit]:
    """Failed API-key authentications (a ``Bearer`` token that is unknown, malformed, revoked or
    expired) per client address per minute, over every tenant
    (``settings.WEIYU_API_KEY_FAILURES_PER_IP_MINUTE``). :mod:`org.apikeys` reads it before
    looking a token up and counts each failure: past it the address is answered ``429`` without
    a database query, while keys used from other addresses are unaffected."""

    def message() -> str:
        return _("Too many requests with an invalid API key from this address; try again later.")

    return _on(
        [
            Limit(
                "apikey-fail",
                ip or "-",
                settings.WEIYU_API_KEY_FAILURES_PER_IP_MINUTE,
                MINUTE,
                message,
            )
        ]
    )
