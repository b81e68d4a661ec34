"""The tenant's own settings pages in its back office (``admin.site`` on the tenant's domain):
mail server and sender, branding, custom domains. The rows live in the public schema (the
platform admin lists them too), so every page shows and changes only ``request.tenant``'s.
Writes go through :mod:`tenants.mail`, :mod:`tenants.branding` and :mod:`tenants.domains`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from tenants import branding, domains, mail
from tenants.models import Branding, CustomDomain, MailSettings
from weiyu.errors import ServiceError


class _OneRowAdmin(admin.ModelAdmin):
    """A page for the tenant's single row: the list shows it, or offers to add it."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).filter(tenant=getattr(request, "tenant", None))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not self.get_queryset(request).exists()

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        return self.response_change(request, obj)

    def response_change(self, request: HttpRequest, obj: Any) -> Any:
        self.message_user(request, _("Saved."), messages.SUCCESS)
        info = (self.opts.app_label, self.opts.model_name)
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))


class MailSettingsForm(forms.ModelForm):
    """The SMTP settings; an empty password keeps the stored one; ``test_to``: where the test
    mail goes after saving."""

    password = forms.CharField(
        label=_("password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Empty: keep the stored password."),
    )
    test_to = forms.EmailField(
        label=_("Send a test mail to"),
        required=False,
        help_text=_(
            "After saving, a test mail goes to this address through these settings. Only when "
            "it arrives are they used; until then e-mails are sent by the platform."
        ),
    )

    class Meta:
        model = MailSettings
        fields = ("host", "port", "security", "username", "password", "from_name", "from_address")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("host") and data.get("port"):
            try:
                data["host"] = mail.host_check(data["host"], data["port"])
            except ServiceError as exc:
                self.add_error("host", exc.message)
        return data


@admin.register(MailSettings)
class MailSettingsAdmin(_OneRowAdmin):
    """Organisation → Mail settings: the tenant's SMTP server and sender, and their test."""

    form = MailSettingsForm
    readonly_fields = ("status", "tested_at", "last_error")
    fieldsets = (
        (None, {"fields": ("host", "port", "security", "username", "password")}),
        (_("Sender"), {"fields": ("from_name", "from_address")}),
        (_("Test"), {"fields": ("test_to", "status", "tested_at", "last_error")}),
    )

    @admin.display(description=_("status"))
    def status(self, obj: MailSettings | None) -> str:
        if obj is None or obj.pk is None:
            return str(_("Not saved yet: e-mails are sent by the platform."))
        if obj.verified_at:
            return str(_("Verified: e-mails are sent through this server."))
        return str(_("Not verified: e-mails are sent by the platform until a test mail arrives."))

    def save_model(self, request: HttpRequest, obj: MailSettings, form: Any, change: bool) -> None:
        values = {name: form.cleaned_data.get(name) for name in MailSettingsForm.Meta.fields}
        row = mail.mail_settings_save(tenant=request.tenant, values=values)
        obj.pk = row.pk
        if form.cleaned_data.get("test_to"):
            mail.mail_settings_test_schedule(row=row, to=form.cleaned_data["test_to"])
            self.message_user(
                request,
                _("A test mail is on its way to %(to)s; reload this page to see the outcome.")
                % {"to": form.cleaned_data["test_to"]},
                messages.INFO,
            )

    def delete_model(self, request: HttpRequest, obj: MailSettings) -> None:
        mail.mail_settings_delete(tenant=request.tenant)


class BrandingForm(forms.ModelForm):
    """Colours and the logo file (checked by :func:`tenants.branding.logo_check`)."""

    logo = forms.FileField(
        label=_("logo"),
        required=False,
        help_text=_("PNG, JPEG or WebP, at most 256 KB and 1024 × 1024 pixels."),
    )
    logo_remove = forms.BooleanField(label=_("Remove the logo"), required=False)

    class Meta:
        model = Branding
        fields = ("primary_color", "accent_color")
        widgets = {
            "primary_color": forms.TextInput(attrs={"placeholder": "#1f6feb", "size": 8}),
            "accent_color": forms.TextInput(attrs={"placeholder": "#1f6feb", "size": 8}),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        upload = data.get("logo")
        if upload is not None:
            try:
                branding.logo_check(upload, size=upload.size)
            except ServiceError as exc:
                self.add_error("logo", exc.message)
            upload.seek(0)
        return data


@admin.register(Branding)
class BrandingAdmin(_OneRowAdmin):
    """Organisation → Branding: logo and colours of the widget, help center and e-mails."""

    form = BrandingForm
    readonly_fields = ("current_logo",)
    fields = ("primary_color", "accent_color", "current_logo", "logo", "logo_remove")

    @admin.display(description=_("current logo"))
    def current_logo(self, obj: Branding | None) -> str:
        if obj is None or not obj.logo_path:
            return "—"
        return format_html(
            '<img src="{}" alt="" style="max-height:48px">',
            f"{reverse('branding-logo')}?v={int(obj.updated_at.timestamp())}",
        )

    def save_model(self, request: HttpRequest, obj: Branding, form: Any, change: bool) -> None:
        upload = form.cleaned_data.get("logo")
        row = branding.branding_save(
            tenant=request.tenant,
            primary_color=form.cleaned_data.get("primary_color", ""),
            accent_color=form.cleaned_data.get("accent_color", ""),
            logo=upload,
            logo_size=upload.size if upload is not None else 0,
            logo_remove=bool(form.cleaned_data.get("logo_remove")),
        )
        obj.pk = row.pk

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CustomDomainForm(forms.ModelForm):
    """The host name to add (checked by :func:`tenants.domains.host_check`)."""

    class Meta:
        model = CustomDomain
        fields = ("host",)

    def clean_host(self) -> str:
        try:
            return domains.host_check(self.cleaned_data.get("host"))
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(CustomDomain)
class CustomDomainAdmin(admin.ModelAdmin):
    """Organisation → Custom domains: add a host name, create the TXT record shown, verify."""

    form = CustomDomainForm
    list_display = ("host", "state", "record", "checked_at", "last_error")
    actions = ("verify_selected",)
    readonly_fields = ("state", "record", "checked_at", "last_error", "verified_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CustomDomain]:
        return super().get_queryset(request).filter(tenant=getattr(request, "tenant", None))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("host",)
        return ("host", "state", "record", "checked_at", "last_error", "verified_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("host", *self.readonly_fields) if obj is not None else ()

    @admin.display(description=_("state"))
    def state(self, obj: CustomDomain) -> str:
        return str(_("verified") if obj.verified_at else _("waiting for the TXT record"))

    @admin.display(description=_("TXT record to create"))
    def record(self, obj: CustomDomain) -> str:
        return format_html("<code>{}</code> TXT <code>{}</code>", obj.record_name, obj.token)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        return form.save(commit=False)

    def save_model(self, request: HttpRequest, obj: CustomDomain, form: Any, change: bool) -> None:
        row = domains.custom_domain_add(tenant=request.tenant, host=obj.host)
        obj.pk, obj.host, obj.token = row.pk, row.host, row.token

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        try:
            return super().add_view(request, form_url, extra_context)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.path)

    def delete_model(self, request: HttpRequest, obj: CustomDomain) -> None:
        domains.custom_domain_remove(custom=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CustomDomain]) -> None:
        for custom in queryset:
            domains.custom_domain_remove(custom=custom)

    @admin.action(description=_("Verify the selected domains (look up their TXT records)"))
    def verify_selected(self, request: HttpRequest, queryset: QuerySet[CustomDomain]) -> None:
        verified = 0
        for custom in queryset:
            try:
                if domains.custom_domain_verify(custom=custom):
                    verified += 1
                else:
                    self.message_user(
                        request, f"{custom.host}: {custom.last_error}", messages.WARNING
                    )
            except ServiceError as exc:
                self.message_user(request, f"{custom.host}: {exc.message}", messages.ERROR)
        if verified:
            self.message_user(
                request,
                ngettext("%(n)d domain verified.", "%(n)d domains verified.", verified)
                % {"n": verified},
                messages.SUCCESS,
            )
