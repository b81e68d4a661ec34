"""HTTP tenant resolution: django-tenants' middleware, refusing suspended tenants (TEN-3)."""

from __future__ import annotations

from typing import Any

from django_tenants.middleware.main import TenantMainMiddleware


class ActiveTenantMiddleware(TenantMainMiddleware):
    """Like ``TenantMainMiddleware``; a suspended tenant's domains answer 404 as unknown ones do."""

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        tenant = super().get_tenant(domain_model, hostname)
        if not tenant.is_active:
            raise domain_model.DoesNotExist
        return tenant
