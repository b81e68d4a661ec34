"""The back office of webhooks: endpoints (secret shown once, rotatable, turned back on after
being disabled) and the delivery log (every attempt's request, response code and duration) with
one-click replay. Every change goes through :mod:`org.webhooks.services`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from org.webhooks import services
from org.webhooks.models import (
    EVENTS,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from weiyu.errors import ServiceError


def _is_admin(request: HttpRequest) -> bool:
    user = request.user
    return bool(getattr(user, "is_admin", False))


class EndpointForm(forms.ModelForm):
    """URL, description, events (checkboxes) and whether it is on; checked by the service."""

    url = forms.URLField(label=_("URL"), max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        label=_("events"), widget=forms.CheckboxSelectMultiple, choices=list(EVENTS.items())
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "events", "is_active")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            services._clean(
                url=data.get("url") or "",
                events=data.get("events") or [],
                description=data.get("description") or "",
            )
        except ServiceError as exc:
            raise forms.ValidationError({exc.field or "__all__": exc.message}) from None
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Webhook endpoints of the tenant (administrators only). The signing secret is shown on the
    page after saving a new endpoint and after rotating it, never again."""

    form = EndpointForm
    list_display = (
        "url",
        "description",
        "event_list",
        "is_active",
        "consecutive_failures",
        "disabled_at",
        "deliveries_link",
    )
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    actions = ("rotate_secret", "enable")
    readonly_fields = ("consecutive_failures", "disabled_at", "disabled_reason", "created_at")

    @admin.display(description=_("events"))
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description=_("delivery log"))
    def deliveries_link(self, obj: WebhookEndpoint) -> str:
        from django.utils.html import format_html

        url = (
            reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        )
        return format_html('<a href="{}">{}</a>', url, _("Deliveries"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and _is_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and _is_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and _is_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and _is_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and _is_admin(request)

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            current = WebhookEndpoint.objects.get(pk=obj.pk)
            services.endpoint_update(
                endpoint=current,
                url=data["url"],
                events=data["events"],
                description=data["description"],
                is_active=data["is_active"],
            )
            return
        endpoint, secret = services.endpoint_create(
            url=data["url"], events=data["events"], description=data["description"]
        )
        if not data["is_active"]:
            services.endpoint_update(
                endpoint=endpoint,
                url=endpoint.url,
                events=endpoint.events,
                description=endpoint.description,
                is_active=False,
            )
        obj.pk, obj.created_at, obj.secret = endpoint.pk, endpoint.created_at, secret
        obj._state.adding = False
        request._webhook_secret = secret  # type: ignore[attr-defined]

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        services.endpoint_delete(endpoint=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_delete(endpoint=endpoint)

    def _secret_page(self, request: HttpRequest, endpoint: WebhookEndpoint, secret: str):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "endpoint": endpoint,
            "secret": secret,
            "title": endpoint.url,
        }
        response = TemplateResponse(request, "admin/webhooks/webhookendpoint/secret.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: Any = None
    ) -> HttpResponse:
        """The page showing the signing secret, once (never in a message cookie)."""
        return self._secret_page(request, obj, request._webhook_secret)  # type: ignore[attr-defined]

    @admin.action(description=_("Rotate the signing secret (shows the new one)"))
    def rotate_secret(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse | None:
        endpoints = list(queryset[:2])
        if len(endpoints) != 1:
            self.message_user(
                request, _("Choose one endpoint to rotate its secret."), messages.WARNING
            )
            return None
        secret = services.endpoint_secret_rotate(endpoint=endpoints[0])
        return self._secret_page(request, endpoints[0], secret)

    @admin.action(description=_("Turn on (clears the failure count, sends what waited)"))
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = 0
        for endpoint in queryset:
            services.endpoint_enable(endpoint=endpoint)
            count += 1
        self.message_user(
            request,
            ngettext("%(n)d endpoint turned on.", "%(n)d endpoints turned on.", count)
            % {"n": count},
            messages.SUCCESS,
        )


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "created_at",
        "response_code",
        "duration_ms",
        "error",
        "request_headers",
        "response_body",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: each event sent to each endpoint, with every attempt (request headers,
    response code, the first bytes of the answer, duration). Read-only; "Replay" sends the
    event again (the button on a delivery, or the list's action)."""

    list_display = (
        "id",
        "event_type",
        "endpoint",
        "key",
        "status",
        "attempts",
        "last_code",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "endpoint", "event__type")
    search_fields = ("key", "event__uid")
    actions = ("replay",)
    inlines = (AttemptInline,)
    list_select_related = ("event", "endpoint")
    fields = (
        "endpoint",
        "event_type",
        "event_id",
        "key",
        "status",
        "attempts",
        "next_attempt_at",
        "replay_of",
        "created_at",
        "finished_at",
        "body",
    )
    readonly_fields = fields
    change_form_template = "admin/webhooks/webhookdelivery/change_form.html"

    @admin.display(description=_("event"))
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    @admin.display(description=_("event id"))
    def event_id(self, obj: WebhookDelivery) -> str:
        return str(obj.event.uid)

    @admin.display(description=_("request body"))
    def body(self, obj: WebhookDelivery) -> str:
        attempt = obj.log.order_by("-number").first()
        return attempt.request_body if attempt else ""

    @admin.display(description=_("last response code"))
    def last_code(self, obj: WebhookDelivery) -> Any:
        attempt = obj.log.order_by("-number").first()
        return attempt.response_code if attempt else None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and _is_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and _is_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="webhooks_webhookdelivery_replay",
            ),
            *super().get_urls(),
        ]

    def _replay(self, request: HttpRequest, deliveries: list[WebhookDelivery]) -> None:
        count = 0
        for delivery in deliveries:
            try:
                services.delivery_replay(delivery=delivery)
            except ServiceError as exc:
                self.message_user(request, f"#{delivery.pk}: {exc.message}", messages.ERROR)
                continue
            count += 1
        if count:
            self.message_user(
                request,
                ngettext("%(n)d delivery queued again.", "%(n)d deliveries queued again.", count)
                % {"n": count},
                messages.SUCCESS,
            )

    def replay_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """``POST <pk>/replay/``: the change page's Replay button."""
        if request.method != "POST" or not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:webhooks_webhookdelivery_changelist"))
        delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint"), pk=pk)
        self._replay(request, [delivery])
        return HttpResponseRedirect(reverse("admin:webhooks_webhookdelivery_changelist"))

    @admin.action(description=_("Replay (send the events again)"))
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        self._replay(request, list(queryset.select_related("endpoint")))
