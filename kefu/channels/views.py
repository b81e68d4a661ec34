"""Vendor callbacks on the tenant's domain: ``/hooks/<kind>/<channel public key>``
(docs/channels.md). Thin: find the channel, let its adapter check the signature and read the
events, store each once, answer what the vendor expects."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from kefu.channels import adapter_for
from kefu.channels.base import ChannelAuthError, ChannelInputError, logger
from kefu.channels.inbound import channel_event_accept
from kefu.channels.wechat import WeChatAdapter
from kefu.models import Channel, ChannelAccount


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
    if channel is None or adapter is None or account is None:
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
