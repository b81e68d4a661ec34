"""The platform admin (public schema, e.g. ``http://localhost:8000/admin/``): tenants and domains.

It is a separate ``AdminSite`` so tenant back offices never show platform tables and the platform
admin never shows tenant tables (which do not exist in the public schema). Apps above tenants
register their own platform pages on :data:`platform_admin_site` (org: platform users); this
module imports no other app. Every write goes through :mod:`tenants.services`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from tenants import services
from tenants.models import Domain, Tenant


class PlatformAdminSite(admin.AdminSite):
    site_header = _("Weiyu platform administration")
    site_title = _("Weiyu platform")
    index_title = _("Tenants and platform users")

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The admin's sign-in; a POST without ``next`` (a script, a password manager) lands on
        this site's index. Without one Django would redirect to ``LOGIN_REDIRECT_URL``, the
        tenants' inbox, which public domains do not serve (it answered 500)."""
        if (
            request.method == "POST"
            and REDIRECT_FIELD_NAME not in request.POST
            and REDIRECT_FIELD_NAME not in request.GET
        ):
            request.GET = request.GET.copy()
            request.GET[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        return super().login(request, extra_context)


platform_admin_site = PlatformAdminSite(name="platform_admin")


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 1


@admin.register(Tenant, site=platform_admin_site)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "schema_name", "primary_domain", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "schema_name", "domains__domain")
    inlines = [DomainInline]
    actions = ["suspend", "resume"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Tenant | None = None
    ) -> tuple[str, ...]:
        # a schema cannot be renamed once created
        return ("schema_name", "created_at") if obj else ("created_at",)

    @admin.display(description=_("primary domain"))
    def primary_domain(self, obj: Tenant) -> str:
        domain = obj.domains.filter(is_primary=True).first()
        return domain.domain if domain else "—"

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
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
