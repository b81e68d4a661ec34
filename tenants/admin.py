"""The platform admin (public schema, e.g. ``http://localhost:8000/admin/``): tenants and domains.

It is a separate ``AdminSite`` so tenant back offices never show platform tables and the platform
admin never shows tenant tables (which do not exist in the public schema). Apps above tenants
register their own platform pages on :data:`platform_admin_site` (org: platform users); this
module imports no other app. Every write goes through :mod:`tenants.services`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import translation
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django_tenants.utils import tenant_context

from tenants import backoffice, domains, lifecycle, quotas, services, tasks
from tenants.models import (
    CustomDomain,
    Domain,
    MailSettings,
    Plan,
    Signup,
    Tenant,
    TenantArchive,
)
from weiyu.errors import ServiceError


class PlatformAdminSite(admin.AdminSite):
    """The platform admin (public schema). Its sign-in page, ``/admin/login/``, is
    ``org.account_views.admin_login`` (with the two-factor code step; weiyu/urls_public.py)."""

    site_header = _("Weiyu platform administration")
    site_title = _("Weiyu platform")
    index_title = _("Tenants and platform users")


platform_admin_site = PlatformAdminSite(name="platform_admin")


class TenantCreateForm(forms.Form):
    """The platform admin's "Add tenant" form: what :func:`tenants.services.tenant_provision`
    needs. Lengths are checked here; everything else by the service."""

    name = forms.CharField(label=_("Company name"), max_length=100)
    domain = forms.CharField(
        label=_("Domain"),
        max_length=253,
        help_text=_("The host name the company's back office, inbox and widget answer on, e.g. "
                    "acme.localhost or support.acme.com (no port)."),
    )  # fmt: skip
    schema_name = forms.CharField(
        label=_("Schema name"),
        max_length=63,
        required=False,
        help_text=_("Optional: made from the domain's first part when left empty."),
    )
    admin_username = forms.CharField(label=_("Administrator's username"), max_length=150)
    admin_email = forms.EmailField(label=_("Administrator's e-mail"), required=False)


#: a service error's ``field`` → the form field it belongs to
_FORM_FIELDS = {"admin": "admin_username", "admin_username": "admin_username"}


def tenant_public_url(*, request: HttpRequest, domain: str) -> str:
    """``scheme://domain[:port]`` at which people reach a tenant, seen from the platform admin:
    ``WEIYU_PUBLIC_URL`` with its ``{domain}`` filled in when set (docs/operations.md), else this
    request's scheme and port with the tenant's host name."""
    configured = getattr(settings, "WEIYU_PUBLIC_URL", "")
    if configured:
        return configured.replace("{domain}", domain).rstrip("/")
    host = request.get_host()
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else ""
    return f"{request.scheme}://{domain}{':' + port if port else ''}"


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 1


@admin.register(Tenant, site=platform_admin_site)
class TenantAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "schema_name",
        "primary_domain",
        "plan",
        "trial_ends_at",
        "is_active",
        "suspended_reason",
        "delete_after",
        "created_at",
    )
    list_filter = ("is_active", "plan", "suspended_reason")
    search_fields = ("name", "schema_name", "domains__domain")
    inlines = [DomainInline]
    actions = ["suspend", "resume", "export", "schedule_deletion", "cancel_deletion"]

    add_form_template = "admin/tenants/tenant/add_form.html"

    def get_inlines(self, request: HttpRequest, obj: Tenant | None) -> list[Any]:
        return self.inlines if obj else []

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """``/admin/tenants/tenant/add/``: a company with its schema, domain and first
        administrator (:func:`tenants.services.tenant_provision`, a second or two), then a page
        showing the administrator's one-time password, once, with the link to sign in (never
        cached: ``admin_view`` marks every admin page so); with an e-mail address, the
        administrator is also sent an invitation with a set-password link
        (:func:`tenants.services.tenant_admin_invite`)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TenantCreateForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                tenant, password = services.tenant_provision(
                    name=data["name"],
                    domain=data["domain"],
                    schema_name=data["schema_name"],
                    admin_username=data["admin_username"],
                    admin_email=data["admin_email"],
                )
            except ServiceError as exc:
                form.add_error(_FORM_FIELDS.get(exc.field or "", exc.field), exc.message)
            else:
                self.log_addition(request, tenant, [{"added": {}}])
                base = tenant_public_url(request=request, domain=tenant.domains.get().domain)
                if data["admin_email"]:
                    services.tenant_admin_invite(
                        tenant=tenant,
                        username=data["admin_username"].strip(),
                        base_url=base,
                        language=translation.get_language() or settings.LANGUAGE_CODE,
                    )
                sign_in = f"{base}/admin/login/?{urlencode({'next': '/admin/onboarding/'})}"
                context = {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": _("Tenant created"),
                    "tenant": tenant,
                    "base_url": base,
                    "sign_in_url": sign_in,
                    "admin_username": data["admin_username"].strip(),
                    "password": password,
                    "admin_email": data["admin_email"],
                }
                return TemplateResponse(request, "admin/tenants/tenant/created.html", context)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Add tenant"),
            "form": form,
            "add": True,
            "has_view_permission": self.has_view_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.add_form_template, context)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Tenant | None = None
    ) -> tuple[str, ...]:
        # a schema cannot be renamed once created
        return (
            ("schema_name", "created_at", "suspended_reason", "delete_after", "usage_this_month")
            if obj
            else ("created_at",)
        )

    @admin.display(description=_("usage this month"))
    def usage_this_month(self, obj: Tenant) -> str:
        """The tenant's use of each quota beside its plan's limit (tenants.quotas); the
        platform's own (public) tenant has no usage."""
        if obj.schema_name == settings.PUBLIC_SCHEMA_NAME:
            return "—"
        with tenant_context(obj):
            rows = quotas.usage_report(obj)
        return format_html(
            '<table id="tenant-usage"><tbody>{}</tbody></table>',
            format_html_join(
                "",
                '<tr data-quota="{}"><th>{}</th><td class="used">{}</td><td>/ {}</td></tr>',
                (
                    (
                        r["quota"],
                        r["label"],
                        r["used"],
                        _("unlimited") if r["limit"] is None else r["limit"],
                    )
                    for r in rows
                ),
            ),
        )

    @admin.display(description=_("primary domain"))
    def primary_domain(self, obj: Tenant) -> str:
        domain = obj.domains.filter(is_primary=True).first()
        return domain.domain if domain else "—"

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        # a change: new tenants come from add_view, through tenant_provision
        services.tenant_save(tenant=obj)

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        services.tenant_delete(tenant=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_delete(tenant=tenant)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The domains inline, saved through the domain services."""
        domains = formset.save(commit=False)
        for domain in formset.deleted_objects:
            services.domain_delete(domain=domain)
        for domain in domains:
            services.domain_save(domain=domain)

    @admin.action(description=_("Suspend selected tenants"))
    def suspend(self, request: HttpRequest, queryset: Any) -> None:
        count = services.tenants_suspend(tenant_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request, _("%(count)d tenants suspended.") % {"count": count}, messages.SUCCESS
        )

    @admin.action(description=_("Resume selected tenants"))
    def resume(self, request: HttpRequest, queryset: Any) -> None:
        count = services.tenants_resume(tenant_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request, _("%(count)d tenants resumed.") % {"count": count}, messages.SUCCESS
        )

    @admin.action(description=_("Export selected tenants (archive with every row and file)"))
    def export(self, request: HttpRequest, queryset: Any) -> None:
        schemas = list(
            queryset.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME).values_list(
                "schema_name", flat=True
            )
        )
        for schema in schemas:
            tasks.tenant_export_task.delay(schema)
        self.message_user(
            request,
            _("Export of %(count)d tenants started: the archives appear under Tenant archives.")
            % {"count": len(schemas)},
            messages.SUCCESS,
        )

    @admin.action(description=_("Schedule deletion of selected tenants"))
    def schedule_deletion(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        """A confirmation page with the grace period (days); on "Schedule deletion" every
        selected tenant is suspended and deleted after it (:mod:`tenants.lifecycle`)."""
        tenants = list(queryset.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME))
        form = DeletionForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            for tenant in tenants:
                lifecycle.tenant_deletion_schedule(
                    schema=tenant.schema_name, grace_days=form.cleaned_data["grace_days"]
                )
            self.message_user(
                request,
                _("%(count)d tenants suspended and scheduled for deletion.")
                % {"count": len(tenants)},
                messages.WARNING,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Schedule deletion"),
            "tenants": tenants,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/tenants/tenant/schedule_deletion.html", context)

    @admin.action(description=_("Cancel scheduled deletion of selected tenants"))
    def cancel_deletion(self, request: HttpRequest, queryset: Any) -> None:
        count = services.tenants_resume(
            tenant_ids=queryset.filter(delete_after__isnull=False).values_list("pk", flat=True)
        )
        self.message_user(
            request,
            _("Deletion of %(count)d tenants cancelled; they are active again.") % {"count": count},
            messages.SUCCESS,
        )


class DeletionForm(forms.Form):
    """The grace period of "Schedule deletion" (days)."""

    grace_days = forms.IntegerField(
        label=_("Delete after (days)"),
        min_value=0,
        max_value=3650,
        initial=settings.WEIYU_TENANT_DELETE_GRACE_DAYS,
        help_text=_(
            "The tenant is suspended now and deleted after this many days, once a final "
            "archive is written. Until then, cancel to keep it."
        ),
    )


@admin.register(TenantArchive, site=platform_admin_site)
class TenantArchiveAdmin(admin.ModelAdmin):
    """Archives of whole tenants (exports and final exports before deletion), read-only, each
    with a download link served through the storage to platform staff."""

    list_display = (
        "schema_name",
        "tenant_name",
        "reason",
        "created_at",
        "finished_at",
        "rows",
        "files",
        "size_bytes",
        "download",
        "error",
    )
    list_filter = ("reason",)
    search_fields = ("schema_name", "tenant_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("download"))
    def download(self, obj: TenantArchive) -> str:
        if not obj.path:
            return "—"
        url = reverse("platform_admin:tenants_tenantarchive_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download"))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="tenants_tenantarchive_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """``GET …/tenantarchive/<pk>/download/``: the archive (``application/gzip``) to staff
        who may view archives; 403 otherwise, 404 for an archive without a file."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        archive = TenantArchive.objects.filter(pk=pk).exclude(path="").first()
        if archive is None or not default_storage.exists(archive.path):
            raise Http404
        return FileResponse(
            default_storage.open(archive.path, "rb"),
            as_attachment=True,
            filename=archive.path.rsplit("/", 1)[-1],
            content_type="application/gzip",
        )


@admin.register(Plan, site=platform_admin_site)
class PlanAdmin(admin.ModelAdmin):
    """Plans (TEN-3): limits left empty are unlimited; a tenant's plan is set on the tenant.
    Processes read a changed plan within ``tenants.quotas.CACHE_S`` seconds."""

    list_display = (
        "name",
        "code",
        "seats",
        "widget_channels",
        "conversations_per_month",
        "storage_bytes",
        "ai_answers_per_month",
        "feature_ai",
        "trial_days",
    )

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        services.plan_save(plan=obj)


@admin.register(Signup, site=platform_admin_site)
class SignupAdmin(admin.ModelAdmin):
    """Sign-ups on the public site (TEN-4), read-only: who, when, from where, and the tenant
    made once the e-mail was verified."""

    list_display = ("company", "subdomain", "email", "ip_address", "created_at", "verified_at")
    list_filter = ("verified_at",)
    search_fields = ("company", "subdomain", "email")
    exclude = ("password_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Domain, site=platform_admin_site)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain", "tenant__name")
    list_select_related = ("tenant",)

    def save_model(self, request: HttpRequest, obj: Domain, form: Any, change: bool) -> None:
        services.domain_save(domain=obj)

    def delete_model(self, request: HttpRequest, obj: Domain) -> None:
        services.domain_delete(domain=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        for domain in queryset:
            services.domain_delete(domain=domain)


@admin.register(CustomDomain, site=platform_admin_site)
class PlatformCustomDomainAdmin(admin.ModelAdmin):
    """Every tenant's custom domains (tenants.domains): who claimed what, which are verified.
    The platform admin may verify or remove one; the tenant adds them."""

    list_display = ("host", "tenant", "verified_at", "checked_at", "last_error", "created_at")
    list_filter = (("verified_at", admin.EmptyFieldListFilter),)
    search_fields = ("host", "tenant__name", "tenant__schema_name")
    list_select_related = ("tenant",)
    readonly_fields = ("tenant", "host", "token", "verified_at", "checked_at", "last_error",
                       "domain", "created_at")  # fmt: skip
    actions = ("verify_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: CustomDomain) -> None:
        domains.custom_domain_remove(custom=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CustomDomain]) -> None:
        for custom in queryset:
            domains.custom_domain_remove(custom=custom)

    verify_selected = backoffice.CustomDomainAdmin.verify_selected


@admin.register(MailSettings, site=platform_admin_site)
class PlatformMailSettingsAdmin(admin.ModelAdmin):
    """Which tenants send through their own SMTP server (read only; the password is never
    shown)."""

    list_display = ("tenant", "host", "port", "security", "from_address", "verified_at",
                    "tested_at")  # fmt: skip
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "host", "from_address")
    fields = ("tenant", "host", "port", "security", "username", "from_name", "from_address",
              "verified_at", "tested_at", "last_error")  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
