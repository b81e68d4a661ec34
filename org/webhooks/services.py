"""Every state change of webhooks: subscriptions, emitting events, delivering them.

Emitting (called by the services of kefu and tickets, inside their transaction)::

    webhook_emit(event="conversation.closed", key=f"conversation:{cid}", build=lambda: {...})

costs nothing but a dictionary look-up when no active endpoint of the tenant subscribes to the
event (the tenant's subscribed event set is cached per process for :data:`CACHE_S` seconds and
dropped at once in the process that changes an endpoint). Otherwise, after commit (never for a
rolled back change), the payload is built, one :class:`WebhookEvent` and one
:class:`WebhookDelivery` per subscribed endpoint are written, and one Celery task is queued.

Delivering (:func:`delivery_pump`, run by Celery): the oldest pending delivery of an endpoint and
ordering key is sent, the next one only after it succeeded or finally failed, so events of one
conversation arrive in the order they were committed. A failure (no 2xx answer in
``WEIYU_WEBHOOK_TIMEOUT_S``) is retried ``WEIYU_WEBHOOK_MAX_ATTEMPTS`` times in all, after
``WEIYU_WEBHOOK_RETRY_BASE_S`` * 4^(n-1) seconds (10 s, 40 s, 160 s, ~11 min, ~43 min by default:
every countdown stays under the Redis broker's one-hour visibility timeout, DESIGN.md §7). An
address the SSRF guard refuses is logged and not retried. After
``WEIYU_WEBHOOK_DISABLE_AFTER`` deliveries in a row failed, the endpoint is disabled and the
tenant's administrators get an e-mail.

Signature (docs/webhooks.md): header ``Weiyu-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}.{body}")``; receivers refuse a ``t`` older than
:data:`REPLAY_WINDOW_S`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from org.models import User
from org.webhooks.models import (
    EVENTS,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tenants import mail
from weiyu import outbound
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: seconds a receiver should accept a signature's timestamp for (documented, docs/webhooks.md)
REPLAY_WINDOW_S = 300
#: seconds a process keeps a tenant's subscribed event set before reading it again
CACHE_S = 10.0
#: seconds a worker holds a delivery while it sends it; another pump takes over after that
LEASE_S = 120
#: characters of a response kept in the delivery log
RESPONSE_KEEP = 2000
URL_MAX = 2000
DESCRIPTION_MAX = 200
SIGNATURE_HEADER = "Weiyu-Signature"

#: the Celery tasks, by name (org.webhooks.tasks imports this module)
EVENT_TASK = "org.webhooks.tasks.webhook_event_task"
PUMP_TASK = "org.webhooks.tasks.webhook_pump_task"

_cache: dict[str, tuple[float, frozenset[str]]] = {}
_cache_lock = threading.Lock()


def _send_task(name: str, *args: object) -> None:
    current_app.send_task(name, args=list(args))


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def max_attempts() -> int:
    """Attempts per delivery, the first included (``WEIYU_WEBHOOK_MAX_ATTEMPTS``, default 6)."""
    return int(_setting("WEIYU_WEBHOOK_MAX_ATTEMPTS", 6))


def retry_delay_s(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): base * 4^(n-1)."""
    return _setting("WEIYU_WEBHOOK_RETRY_BASE_S", 10) * 4 ** (attempt - 1)


# --- signatures -----------------------------------------------------------------------------


def secret_new() -> str:
    """A new signing secret: ``whsec_`` and 43 URL-safe characters (256 random bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under secret>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- subscriptions ----------------------------------------------------------------------------


def subscribed_events() -> frozenset[str]:
    """The event types some active endpoint of the current tenant subscribes to; read from the
    database at most every :data:`CACHE_S` seconds per process."""
    schema = connection.schema_name
    now = time.monotonic()
    hit = _cache.get(schema)
    if hit is None or hit[0] < now:
        events: set[str] = set()
        for row in WebhookEndpoint.objects.filter(is_active=True).values_list("events", flat=True):
            events.update(row)
        hit = (now + CACHE_S, frozenset(events))
        with _cache_lock:
            _cache[schema] = hit
    return hit[1]


def _changed() -> None:
    _cache.pop(connection.schema_name, None)


def _clean(*, url: object, events: object, description: object) -> tuple[str, list[str], str]:
    if not isinstance(url, str) or not url.strip() or len(url.strip()) > URL_MAX:
        raise ServiceError(
            "invalid",
            _("A URL of at most %(n)d characters is needed.") % {"n": URL_MAX},
            field="url",
        )
    url = url.strip()
    try:
        outbound.check_url(url)
    except outbound.OutboundRefusedError as exc:
        raise ServiceError("invalid", str(exc), field="url") from exc
    if (
        not isinstance(events, list | tuple)
        or not events
        or any(not isinstance(e, str) or e not in EVENTS for e in events)
    ):
        raise ServiceError(
            "invalid",
            _("Events are a non-empty list of: %(events)s.") % {"events": ", ".join(EVENTS)},
            field="events",
        )
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise ServiceError(
            "invalid",
            _("A description has at most %(n)d characters.") % {"n": DESCRIPTION_MAX},
            field="description",
        )
    return url, [e for e in EVENTS if e in events], description.strip()


def endpoint_create(
    *, url: object, events: object, description: object = ""
) -> tuple[WebhookEndpoint, str]:
    """Subscribe ``url`` to ``events`` (names of :data:`EVENTS`). Returns the endpoint and its
    signing secret, which is shown to the admin this once. Raises ``ServiceError`` ``invalid``
    (with ``field``) for a URL the SSRF guard refuses, an unknown event or a long description."""
    url, events, description = _clean(url=url, events=events, description=description)
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        url=url, events=events, description=description, secret=secret
    )
    _changed()
    return endpoint, secret


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: object,
    events: object,
    description: object = "",
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change an endpoint; turning it back on (``is_active=True``) clears its failure count and
    sends what waited meanwhile. Raises ``ServiceError`` like :func:`endpoint_create`."""
    url, events, description = _clean(url=url, events=events, description=description)
    endpoint.url, endpoint.events, endpoint.description = url, events, description
    fields = ["url", "events", "description"]
    reenabled = is_active is True and not endpoint.is_active
    if is_active is not None:
        endpoint.is_active = is_active
        fields.append("is_active")
    if reenabled:
        endpoint.consecutive_failures = 0
        endpoint.disabled_at = None
        endpoint.disabled_reason = ""
        fields += ["consecutive_failures", "disabled_at", "disabled_reason"]
    endpoint.save(update_fields=fields)
    _changed()
    if reenabled:
        _pump_waiting_on_commit(endpoint.pk)
    return endpoint


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Turn an endpoint (back) on: failure count cleared, waiting deliveries sent."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=True, consecutive_failures=0, disabled_at=None, disabled_reason=""
    )
    _changed()
    _pump_waiting_on_commit(endpoint.pk)


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its deliveries and their log."""
    endpoint.delete()
    _changed()


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """Give the endpoint a new signing secret, used from the next attempt on; returns it (shown
    to the admin this once). The old one stops verifying at once."""
    secret = secret_new()
    endpoint.secret = secret
    endpoint.save(update_fields=["secret"])
    return secret


# --- emitting ---------------------------------------------------------------------------------


def webhook_emit(*, event: str, key: str, build: Callable[[], dict[str, Any]]) -> None:
    """Schedule ``event`` for the current tenant's endpoints that subscribe to it, after the
    caller's transaction commits (at once outside one). ``key`` orders deliveries
    (``"conversation:42"``); ``build()`` returns the event's ``data`` (JSON-serialisable), called
    after commit and only when someone subscribes. Never raises into the caller: a failure to
    record the event is logged (the change itself is committed)."""
    if event not in subscribed_events():
        return
    schema = connection.schema_name

    def record() -> None:
        try:
            _record(schema=schema, event=event, key=key, data=build())
        except Exception:
            logger.exception("webhook event %s (%s) not recorded", event, key)

    transaction.on_commit(record)


def _record(*, schema: str, event: str, key: str, data: dict[str, Any]) -> None:
    with transaction.atomic():
        endpoint_ids = list(
            WebhookEndpoint.objects.filter(is_active=True, events__contains=[event]).values_list(
                "pk", flat=True
            )
        )
        if not endpoint_ids:
            return
        row = WebhookEvent.objects.create(type=event, key=key, data=data)
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(endpoint_id=pk, event=row, key=key) for pk in endpoint_ids
        )
        transaction.on_commit(lambda: _send_task(EVENT_TASK, schema, row.pk))


def event_pumps(*, event_id: int) -> list[tuple[int, str]]:
    """The ``(endpoint_id, key)`` pairs with a pending delivery of the event."""
    return list(
        WebhookDelivery.objects.filter(
            event_id=event_id, status=WebhookDelivery.Status.PENDING
        ).values_list("endpoint_id", "key")
    )


def _pump_waiting_on_commit(endpoint_id: int) -> None:
    schema = connection.schema_name
    keys = list(
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING
        )
        .values_list("key", flat=True)
        .distinct()
    )
    for key in keys:
        transaction.on_commit(lambda key=key: _send_task(PUMP_TASK, schema, endpoint_id, key))


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event to its endpoint once more (a new delivery with a fresh log, behind
    what is pending for the same key). Raises ``ServiceError`` ``conflict`` when the endpoint is
    disabled (turn it on first)."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        raise ServiceError("conflict", _("The endpoint is disabled; turn it on first."))
    copy = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=delivery.event_id, key=delivery.key, replay_of=delivery
    )
    schema = connection.schema_name
    transaction.on_commit(lambda: _send_task(PUMP_TASK, schema, endpoint.pk, copy.key))
    return copy


# --- delivering -------------------------------------------------------------------------------


def _claim(delivery_id: int, now: dt.datetime) -> bool:
    return bool(
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + dt.timedelta(seconds=LEASE_S))
    )


def delivery_pump(*, endpoint_id: int, key: str) -> float | None:
    """Send the pending deliveries of one endpoint and ordering key, oldest first, each after
    the previous one succeeded or finally failed. Returns the seconds after which to call again
    (the head waits for a retry), or None when nothing is left to do now (done, endpoint
    disabled, or another worker holds the head)."""
    while True:
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).first()
        if endpoint is None:
            return None
        head = (
            WebhookDelivery.objects.filter(
                endpoint_id=endpoint_id, key=key, status=WebhookDelivery.Status.PENDING
            )
            .select_related("event")
            .order_by("id")
            .first()
        )
        if head is None:
            return None
        now = timezone.now()
        if head.next_attempt_at and head.next_attempt_at > now:
            return (head.next_attempt_at - now).total_seconds()
        if not _claim(head.pk, now):
            return None
        wait = _attempt(endpoint=endpoint, delivery=head)
        if wait is not None:
            return wait


def _body(delivery: WebhookDelivery) -> bytes:
    event = delivery.event
    envelope = {
        "id": str(event.uid),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "tenant": connection.schema_name,
        "data": event.data,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def _attempt(*, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> float | None:
    """One request; records it, then settles the delivery. Returns the seconds until a retry,
    or None when the delivery is finished (succeeded or finally failed)."""
    number = delivery.attempts + 1
    body = _body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Weiyu-Webhooks/1",
        "Weiyu-Event": delivery.event.type,
        "Weiyu-Event-Id": str(delivery.event.uid),
        "Weiyu-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature_header(secret=endpoint.secret, body=body, timestamp=timestamp),
    }
    code: int | None = None
    text = error = ""
    retry = True
    started = time.monotonic()
    try:
        outbound.check_url(endpoint.url)
        with outbound.guarded_client(
            timeout_s=_setting("WEIYU_WEBHOOK_TIMEOUT_S", 10), max_bytes=64 * 1024
        ) as client:
            response = client.post(endpoint.url, content=body, headers=headers)
            code = response.status_code
            text = response.text[:RESPONSE_KEEP]
    except outbound.OutboundRefusedError as exc:
        error, retry = str(exc), False  # the address will not become public by waiting
    except httpx2.TimeoutException:
        error = _("No answer within %(s)s seconds.") % {
            "s": _setting("WEIYU_WEBHOOK_TIMEOUT_S", 10)
        }
    except httpx2.HTTPError as exc:
        error = str(exc) or type(exc).__name__
    duration_ms = round((time.monotonic() - started) * 1000)
    ok = code is not None and 200 <= code < 300
    if code is not None and not ok:
        error = _("The endpoint answered %(code)d.") % {"code": code}
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        url=endpoint.url,
        request_headers={k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
        | {SIGNATURE_HEADER: headers[SIGNATURE_HEADER].split(",v1=")[0] + ",v1=…"},
        request_body=body.decode(),
        response_code=code,
        response_body=text,
        duration_ms=duration_ms,
        error=error[:500],
    )
    now = timezone.now()
    if ok:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.SUCCEEDED,
            attempts=number,
            finished_at=now,
            locked_until=None,
            next_attempt_at=None,
        )
        if endpoint.consecutive_failures:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=0)
        return None
    if retry and number < max_attempts():
        wait = retry_delay_s(number)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=number,
            next_attempt_at=now + dt.timedelta(seconds=wait),
            locked_until=None,
        )
        return wait
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED,
        attempts=number,
        finished_at=now,
        locked_until=None,
        next_attempt_at=None,
    )
    _failed(endpoint=endpoint, reason=error)
    return None


def _failed(*, endpoint: WebhookEndpoint, reason: str) -> None:
    """Count a finally failed delivery; disable the endpoint and tell the admins at the limit."""
    limit = int(_setting("WEIYU_WEBHOOK_DISABLE_AFTER", 5))
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    disabled = (
        WebhookEndpoint.objects.filter(
            pk=endpoint.pk, is_active=True, consecutive_failures__gte=limit
        ).update(
            is_active=False,
            disabled_at=timezone.now(),
            disabled_reason=_("%(n)d deliveries in a row failed; the last: %(reason)s")
            % {"n": limit, "reason": reason[:300]},
        )
        == 1
    )
    if disabled:
        _changed()
        _disabled_mail(endpoint=endpoint, failures=limit, reason=reason)


def admin_recipients() -> dict[str, list[str]]:
    """E-mail addresses of the tenant's active administrators (the admin role or superusers) by
    the language each reads (their own, else the site's)."""
    by_language: dict[str, list[str]] = {}
    rows = (
        User.objects.filter(is_active=True)
        .filter(Q(role=User.Role.ADMIN) | Q(is_superuser=True))
        .exclude(email="")
        .values_list("email", "language")
        .order_by("email")
    )
    for email, language in rows:
        by_language.setdefault(language or settings.LANGUAGE_CODE, []).append(email)
    return by_language


def _disabled_mail(*, endpoint: WebhookEndpoint, failures: int, reason: str) -> None:
    recipients = admin_recipients()
    if not recipients:
        logger.warning("webhook endpoint %s disabled; no administrator has an e-mail", endpoint)
        return
    for language, emails in recipients.items():
        with translation.override(language):
            subject = _("Webhook disabled: %(url)s") % {"url": endpoint.url}
            body = _(
                "Weiyu stopped sending events to %(url)s after %(n)d deliveries in a row "
                "failed.\nThe last error: %(reason)s\n\n"
                "Fix the receiver, then turn the endpoint on again in the back office (Webhooks → "
                "Webhook endpoints → Turn on)."
            ) % {"url": endpoint.url, "n": failures, "reason": reason}
        try:
            mail.mail_send(subject=subject, body=body, to=emails)
        except OSError:
            logger.exception("e-mail about the disabled webhook %s not sent", endpoint)


def due_pumps(*, now: dt.datetime | None = None) -> list[tuple[int, str]]:
    """``(endpoint_id, key)`` of active endpoints whose oldest pending delivery is due and not
    held by a worker: what a lost task or a restarted worker left behind (the beat scan)."""
    now = now or timezone.now()
    rows = (
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, endpoint__is_active=True
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .values_list("endpoint_id", "key")
        .distinct()
    )
    return list(rows)


def endpoint_payload(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret): ``{"id", "url", "description",
    "events", "is_active", "consecutive_failures", "disabled_at", "disabled_reason",
    "created_at"}``."""
    return {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "is_active": endpoint.is_active,
        "consecutive_failures": endpoint.consecutive_failures,
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at.isoformat(),
    }


def delivery_payload(delivery: WebhookDelivery, log: Iterable[WebhookAttempt]) -> dict[str, Any]:
    """A delivery with its attempts for the API: ``{"id", "event": {"id", "type"}, "key",
    "status", "attempts", "next_attempt_at", "replay_of", "log": [{"number", "response_code",
    "duration_ms", "error", "created_at"}]}``."""
    return {
        "id": delivery.pk,
        "event": {"id": str(delivery.event.uid), "type": delivery.event.type},
        "key": delivery.key,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat()
        if delivery.next_attempt_at
        else None,
        "replay_of": delivery.replay_of_id,
        "log": [
            {
                "number": a.number,
                "response_code": a.response_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "created_at": a.created_at.isoformat(),
            }
            for a in log
        ],
    }
