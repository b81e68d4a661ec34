"""HTTP tenant resolution: django-tenants' middleware, with suspended tenants (TEN-3).

A suspended tenant (``Tenant.is_active`` false: by the platform, or its trial ended) keeps only
what its website visitors need to leave a message: the widget's script, frame and session
(which then says nobody is online, so the widget offers the leave-a-message form), the widget's
tickets endpoints, its translations and static files. Its staff get a page saying the account
is suspended and why (403), the API ``403 {"error": "suspended", "detail"}``; websockets are refused
(``weiyu.asgi_tenancy``, close code 4404).

The host is resolved through ``weiyu.tenant_hosts`` (a per-process cache checked against a
routes version in Redis) rather than django-tenants' query per request, and the connection is
switched only when the schema differs: a request sends at most one ``SET search_path``, none when
its pooled connection has the tenant's path already (docs/benchmarks.md, "Tenant resolution").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import HttpRequest, HttpResponseNotFound, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware

from weiyu.tenant_hosts import tenant_for_host

#: paths a suspended tenant still serves (prefixes): what the widget's leave-a-message form uses
SUSPENDED_OPEN = (
    "/widget.js",
    "/widget/frame/",
    "/api/v1/widget/session",
    "/api/v1/widget/tickets",
    "/jsi18n/",
    "/static/",
    "/favicon.ico",
)


def suspension_message(reason: str, delete_after: dt.datetime | None = None) -> str:
    """What staff of a suspended tenant are told, by ``Tenant.suspended_reason`` (and, for a
    scheduled deletion, ``Tenant.delete_after``)."""
    if reason == "deletion" and delete_after is not None:
        return _(
            "This workspace is scheduled for deletion on %(date)s (UTC) and is suspended until "
            "then. Contact the platform before that date to keep it."
        ) % {"date": f"{delete_after:%Y-%m-%d %H:%M}"}
    if reason == "trial_ended":
        return _(
            "The trial of this workspace has ended, so it is suspended. Your data is kept: "
            "contact the platform to choose a plan and it comes back as it was."
        )
    return _(
        "This workspace is suspended by the platform. Your data is kept: contact the platform "
        "to have it resumed."
    )


class ActiveTenantMiddleware(TenantMainMiddleware):
    """Like ``TenantMainMiddleware`` (an unknown host or one not in ``ALLOWED_HOSTS``:
    404), resolving the host through :func:`weiyu.tenant_hosts.tenant_for_host`; on a suspended
    tenant's domains only :data:`SUSPENDED_OPEN` is served, everything else answers the
    suspension (403)."""

    def process_request(self, request: HttpRequest) -> Any:
        try:
            hostname = self.hostname_from_request(request)
        except DisallowedHost:
            return HttpResponseNotFound()
        tenant = tenant_for_host(hostname)
        if tenant is None:
            connection.set_schema_to_public()
            return self.no_tenant_found(request, hostname)
        tenant.domain_url = hostname
        request.tenant = tenant
        # set_tenant makes the next cursor check the path (and empties the content-type cache),
        # so it is called only when the schema differs, as weiyu.asgi_tenancy does
        if connection.schema_name != tenant.schema_name or not connection.include_public_schema:
            connection.set_tenant(tenant)
        else:
            connection.tenant = tenant
        self.setup_url_routing(request)
        if tenant.is_active:
            return None
        if request.path.startswith(SUSPENDED_OPEN):
            return None
        with translation.override(translation.get_language_from_request(request)):
            message = suspension_message(tenant.suspended_reason, tenant.delete_after)
            if request.path.startswith("/api/"):
                return JsonResponse({"error": "suspended", "detail": message}, status=403)
            response = render(
                request,
                "public/suspended.html",
                {"reason": message, "tenant": tenant},
                status=403,
            )
        return response
