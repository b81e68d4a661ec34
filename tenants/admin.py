"""The platform admin (public schema, e.g. ``http://localhost:8000/admin/``): tenants and domains.

It is a separate ``AdminSite`` so tenant back offices never show platform tables and the platform
admin never shows tenant tables (which do not exist in the public schema).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from org.admin import DeleteKeepingHistory
from org.models import User
from tenants.models import Domain, Tenant


class PlatformAdminSite(admin.AdminSite):
    site_header = _("Weiyu platform administration")
    site_title = _("Weiyu platform")
    index_title = _("Tenants and platform users")


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

    @admin.action(description=_("Suspend selected tenants"))
    def suspend(self, request: HttpRequest, queryset: Any) -> None:
        count = queryset.exclude(schema_name="public").update(is_active=False)
        self.message_user(
            request, _("%(count)d tenants suspended.") % {"count": count}, messages.SUCCESS
        )

    @admin.action(description=_("Resume selected tenants"))
    def resume(self, request: HttpRequest, queryset: Any) -> None:
        count = queryset.update(is_active=True)
        self.message_user(
            request, _("%(count)d tenants resumed.") % {"count": count}, messages.SUCCESS
        )


@admin.register(Domain, site=platform_admin_site)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain", "tenant__name")
    list_select_related = ("tenant",)


class PlatformUserAdmin(DeleteKeepingHistory, UserAdmin):
    """Platform admins; deleting one keeps the row (org.services.user_delete), like tenant
    users: the admin log and tenants they created still point at it."""


platform_admin_site.register(User, PlatformUserAdmin)
