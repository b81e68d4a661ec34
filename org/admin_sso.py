"""The back office of single sign-on (Organisation → Single sign-on): the tenant's
:class:`org.models.SingleSignOn` row, checked against the provider when saved (org.sso).
Registered from ``org.admin``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from org import audit, sso
from org.models import SingleSignOn
from weiyu import outbound
from weiyu.errors import ServiceError


class SingleSignOnForm(forms.ModelForm):
    """The settings; the client secret is never shown back (empty keeps the stored one). When
    enabled, the issuer must pass the outgoing-request rules and its discovery document and
    keys must be readable now."""

    issuer = forms.URLField(
        label=_("issuer URL"),
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text=SingleSignOn._meta.get_field("issuer").help_text,
    )
    client_secret = forms.CharField(
        label=_("client secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted; leave empty to keep the current one."),
    )

    class Meta:
        model = SingleSignOn
        fields = (
            "enabled",
            "provider_name",
            "issuer",
            "client_id",
            "client_secret",
            "scopes",
            "default_role",
            "create_users",
            "allowed_domains",
            "password_sign_in_off",
        )

    def clean_client_secret(self) -> str:
        value = self.cleaned_data.get("client_secret") or ""
        return value or (self.instance.client_secret if self.instance.pk else "")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("enabled"):
            if data.get("password_sign_in_off"):
                self.add_error(
                    "password_sign_in_off", _("Password sign-in can only be off with SSO on.")
                )
            return data
        for name in ("issuer", "client_id", "client_secret"):
            if not data.get(name):
                self.add_error(name, _("Needed to turn single sign-on on."))
        if self.errors:
            return data
        try:
            outbound.check_url(data["issuer"])
        except outbound.OutboundRefusedError as exc:
            self.add_error("issuer", str(exc))
            return data
        probe = SingleSignOn(issuer=data["issuer"])
        try:
            sso.check_provider(probe)
        except ServiceError as exc:
            self.add_error("issuer", exc.message)
        return data


class SingleSignOnAdmin(admin.ModelAdmin):
    """Single sign-on with an OpenID Connect provider (docs/security.md, "Single sign-on").
    One row; changes are in the audit log (never the secret)."""

    form = SingleSignOnForm
    list_display = ("__str__", "enabled", "provider_name", "issuer", "password_sign_in_off")
    readonly_fields = ("callback_url",)

    @admin.display(description=_("callback URL to register at the provider"))
    def callback_url(self, obj: SingleSignOn) -> str:
        request = audit.current_request.get()  # the request being served
        return sso.redirect_uri(request) if request is not None else ""

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("callback_url", *SingleSignOnForm.Meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not SingleSignOn.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        SingleSignOn.current()
        return super().changelist_view(request, extra_context)


admin.site.register(SingleSignOn, SingleSignOnAdmin)
