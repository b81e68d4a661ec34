"""Vendor callbacks on the tenant's domain: ``/hooks/<kind>/<channel public key>``
(docs/channels.md). Thin: find the channel, let its adapter check the signature and read the
events, store each once, answer what the vendor expects."""

from __future__ import annotations

import json

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from kefu.channels import adapter_for
from kefu.channels.api import ApiAdapter, event_id_for, message_parse
from kefu.channels.base import ChannelAuthError, ChannelInputError, logger
from kefu.channels.inbound import api_upload_store, channel_event_accept
from kefu.channels.wechat import WeChatAdapter
from kefu.models import Channel, ChannelAccount, ChannelEvent
from org.apikeys import idempotency_reused, request_fingerprint
from weiyu import ratelimit
from weiyu.errors import RateLimitedError, ServiceError

#: inbound messages one API channel accepts per minute
API_RATE_PER_MINUTE = 600


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "detail": message}, status=status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def channel_hook(request: HttpRequest, kind: str, key: str) -> HttpResponse:
    """A vendor's call for the active channel of ``kind`` with public key ``key``.

    ``POST``: the signature or secret is checked (403 ``{"error": "forbidden"}`` otherwise),
    the body read (400 ``invalid``), each event stored once and its handling queued; the answer
    is what the vendor expects (Telegram ``{}``, WeChat ``success``). ``GET`` (WeChat only): the
    server-URL check, ``echostr`` echoed. 404 ``not_found`` for an unknown or inactive channel,
    or one without an account.
    """
    channel = Channel.objects.filter(public_key=key, kind=kind, is_active=True).first()
    adapter = adapter_for(kind)
    account = ChannelAccount.objects.filter(channel=channel).first() if channel else None
    if channel is None or adapter is None or account is None or isinstance(adapter, ApiAdapter):
        return _error("not_found", _("No such channel."), 404)
    try:
        if request.method == "GET":
            if not isinstance(adapter, WeChatAdapter):
                return _error("invalid", _("Send the updates with POST."), 405)
            return HttpResponse(adapter.echo(account=account, request=request), "text/plain")
        adapter.verify(account=account, request=request)
        events = adapter.events(account=account, request=request)
    except ChannelAuthError as exc:
        logger.warning("channel %s: callback refused: %s", channel.pk, exc)
        return _error("forbidden", str(exc), 403)
    except ChannelInputError as exc:
        logger.warning("channel %s: unreadable callback: %s", channel.pk, exc)
        return _error("invalid", str(exc), 400)
    for external_id, payload in events:
        channel_event_accept(channel=channel, external_id=external_id, payload=payload)
    body, content_type = adapter.reply(account=account, request=request)
    return HttpResponse(body, content_type)


@csrf_exempt
@require_http_methods(["POST"])
def api_channel_message(request: HttpRequest, key: str) -> HttpResponse:
    """``POST /api/v1/kefu/channels/<channel key>/messages``: the tenant's own system sends one
    customer message into an active API channel (docs/api.md §17, docs/channels.md).

    Auth: ``Authorization: Bearer <the channel's inbound key>`` (401 ``unauthorized``; the
    channel's key only, not a REST API key). Body: JSON ``{"contact": {"id" (1-128 chars),
    "name"?, "email"?, "phone"?}, "text"?, "attachment"?: {"url", "name"?, "type"?: "image" |
    "file"}}``, or ``multipart/form-data`` with that JSON in the field ``payload`` and the file
    in ``file`` (``type`` of the payload's kind: form field ``type``, default ``file``).
    ``Idempotency-Key`` (optional, 1-255 printable characters): a repeat of the same request
    (body, or for multipart its fields and file contents) within the events' retention is
    answered ``200`` with the first one's ``id`` and ``Idempotent-Replayed: true`` and stores
    nothing; the same key with another body → ``422 idempotency_key_reused``.

    Answers ``202 {"id": <event id>, "status": "accepted"}``; the message is routed by a
    worker like a widget visitor's. Errors: ``400 invalid`` (``field`` names the culprit;
    an uploaded file the tenant's rules refuse), ``404 not_found`` (no such active API
    channel), ``413 too_large``, ``429 rate_limited`` (over 600 messages a minute per
    channel, ``Retry-After``)."""
    channel = Channel.objects.filter(public_key=key, kind=Channel.Kind.API, is_active=True).first()
    account = ChannelAccount.objects.filter(channel=channel).first() if channel else None
    adapter = adapter_for(Channel.Kind.API)
    if channel is None or account is None or adapter is None:
        return _error("not_found", _("No such channel."), 404)
    try:
        adapter.verify(account=account, request=request)
    except ChannelAuthError as exc:
        logger.warning("channel %s: API call refused: %s", channel.pk, exc)
        return _error("unauthorized", str(exc), 401)
    try:
        ratelimit.check(
            [
                ratelimit.Limit(
                    name="kefu.api_channel",
                    key=f"{channel.pk}",
                    limit=API_RATE_PER_MINUTE,
                    window_s=60,
                    message=lambda: _("Too many messages for this channel; try again soon."),
                )
            ]
        )
        idem = request.headers.get("Idempotency-Key")
        external_id = event_id_for(idem)
        fingerprint = _fingerprint(request) if idem is not None else ""
        existing = ChannelEvent.objects.filter(channel=channel, external_id=external_id).first()
        if existing is not None:
            return _replayed(existing, fingerprint)
        payload = _api_payload(request, channel)
    except ServiceError as exc:
        body = {"error": exc.code, "detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        response = JsonResponse(body, status=exc.http_status)
        if isinstance(exc, RateLimitedError):
            response["Retry-After"] = str(exc.retry_after_s)
        return response
    accepted = channel_event_accept(
        channel=channel, external_id=external_id, payload=payload, fingerprint=fingerprint
    )
    stored = ChannelEvent.objects.get(channel=channel, external_id=external_id)
    if not accepted:  # the same key, sent twice at once
        return _replayed(stored, fingerprint)
    return JsonResponse({"id": stored.pk, "status": "accepted"}, status=202)


def _fingerprint(request: HttpRequest) -> str:
    try:
        return request_fingerprint(request)
    except RequestDataTooBig as exc:
        raise ServiceError("too_large", _("The request is too large.")) from exc


def _replayed(event: ChannelEvent, fingerprint: str) -> JsonResponse:
    if event.fingerprint and event.fingerprint != fingerprint:
        return idempotency_reused()
    response = JsonResponse({"id": event.pk, "status": "accepted"}, status=200)
    response["Idempotent-Replayed"] = "true"
    return response


def _api_payload(request: HttpRequest, channel: Channel) -> dict:
    """The checked payload of an API channel's message (JSON, or multipart with ``payload``
    and ``file``; the file is stored now). Raises ``ServiceError``."""
    multipart = request.content_type == "multipart/form-data"
    try:
        upload = request.FILES.get("file") if multipart else None
        data = json.loads(request.POST.get("payload") or "" if multipart else request.body)
    except RequestDataTooBig as exc:
        raise ServiceError("too_large", _("The request is too large.")) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(
            "invalid", _("The body is not JSON."), field="payload" if multipart else None
        ) from exc
    payload = message_parse(data, upload=upload is not None)
    if upload is not None:
        payload["upload"] = api_upload_store(
            channel=channel, payload=payload, upload=upload, kind=request.POST.get("type") or "file"
        )
    return payload
