"""REST endpoints of webhooks (docs/webhooks.md, "Subscribing"): the tenant's administrators,
signed in or with an API key of the ``org`` family (``org:read`` to list, ``org:write`` to
change). Thin: parse, call :mod:`org.webhooks.services`, answer."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from org.webhooks import services
from org.webhooks.models import WebhookDelivery, WebhookEndpoint
from weiyu.errors import ServiceError
from weiyu.schema import NO_CONTENT

LIST_MAX = 200


def _admin(request: Request) -> None:
    if not getattr(request.user, "is_admin", False):
        raise ServiceError("forbidden", _("Only administrators manage webhooks."))


def _data(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ServiceError("invalid", _("The body must be a JSON object."))
    return request.data


def _endpoint(pk: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=pk).first()
    if endpoint is None:
        raise ServiceError("not_found", _("No such webhook endpoint."))
    return endpoint


class WebhookListApi(APIView):
    """``GET /api/v1/org/webhooks`` → ``{"endpoints": [endpoint]}`` (never a secret).

    ``POST /api/v1/org/webhooks`` ``{"url" (http/https, public address, ≤ 2000), "events" (a
    non-empty list of event types), "description"? (≤ 200)}`` → ``201 {…endpoint, "secret"}``:
    the only time the signing secret is shown. ``400 invalid`` with ``field``; ``403``."""

    def get(self, request: Request) -> Response:
        _admin(request)
        endpoints = WebhookEndpoint.objects.all()
        return Response({"endpoints": [services.endpoint_payload(e) for e in endpoints]})

    def post(self, request: Request) -> Response:
        _admin(request)
        data = _data(request)
        endpoint, secret = services.endpoint_create(
            url=data.get("url"), events=data.get("events"), description=data.get("description")
        )
        return Response({**services.endpoint_payload(endpoint), "secret": secret}, status=201)


class WebhookDetailApi(APIView):
    """``GET|PATCH|DELETE /api/v1/org/webhooks/<id>``: one endpoint; ``PATCH`` takes any of
    ``url``, ``events``, ``description``, ``is_active`` (bool; ``true`` turns a disabled endpoint
    back on and sends what waited). ``404 not_found``; ``400 invalid`` with ``field``."""

    def get(self, request: Request, pk: int) -> Response:
        _admin(request)
        return Response(services.endpoint_payload(_endpoint(pk)))

    def patch(self, request: Request, pk: int) -> Response:
        _admin(request)
        endpoint = _endpoint(pk)
        data = _data(request)
        is_active = data.get("is_active")
        if is_active is not None and not isinstance(is_active, bool):
            raise ServiceError("invalid", _("is_active is true or false."), field="is_active")
        endpoint = services.endpoint_update(
            endpoint=endpoint,
            url=data.get("url", endpoint.url),
            events=data.get("events", endpoint.events),
            description=data.get("description", endpoint.description),
            is_active=is_active,
        )
        return Response(services.endpoint_payload(endpoint))

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        _admin(request)
        services.endpoint_delete(endpoint=_endpoint(pk))
        return Response(status=204)


class WebhookSecretRotateApi(APIView):
    """``POST /api/v1/org/webhooks/<id>/rotate-secret`` → ``{…endpoint, "secret"}``: a new
    signing secret, shown this once; the old one stops verifying at once."""

    def post(self, request: Request, pk: int) -> Response:
        _admin(request)
        endpoint = _endpoint(pk)
        secret = services.endpoint_secret_rotate(endpoint=endpoint)
        return Response({**services.endpoint_payload(endpoint), "secret": secret})


class WebhookDeliveryListApi(APIView):
    """``GET /api/v1/org/webhooks/<id>/deliveries?status=pending|succeeded|failed&limit=``
    (limit 1-200, default 50) → ``{"deliveries": [delivery]}``, newest first, each with its
    ``log`` of attempts (``services.delivery_payload``)."""

    def get(self, request: Request, pk: int) -> Response:
        _admin(request)
        endpoint = _endpoint(pk)
        qs = WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")
        status = request.query_params.get("status")
        if status:
            if status not in WebhookDelivery.Status.values:
                raise ServiceError(
                    "invalid", _("status is pending, succeeded or failed."), field="status"
                )
            qs = qs.filter(status=status)
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= LIST_MAX:
            raise ServiceError(
                "invalid",
                _("limit must be between %(low)d and %(high)d.") % {"low": 1, "high": LIST_MAX},
                field="limit",
            )
        deliveries = list(qs.order_by("-id")[: int(raw)].prefetch_related("log"))
        return Response(
            {
                "deliveries": [
                    services.delivery_payload(d, sorted(d.log.all(), key=lambda a: a.number))
                    for d in deliveries
                ]
            }
        )


class WebhookDeliveryReplayApi(APIView):
    """``POST /api/v1/org/webhooks/deliveries/<id>/replay`` → ``202 delivery``: the same event
    sent again as a new delivery. ``404 not_found``; ``409 conflict`` when the endpoint is off."""

    def post(self, request: Request, pk: int) -> Response:
        _admin(request)
        delivery = WebhookDelivery.objects.select_related("endpoint", "event").filter(pk=pk).first()
        if delivery is None:
            raise ServiceError("not_found", _("No such delivery."))
        copy = services.delivery_replay(delivery=delivery)
        copy.event = delivery.event
        return Response(services.delivery_payload(copy, []), status=202)
