"""Tenant and Domain: the only shared (public-schema) tables with data of their own."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin


class Tenant(TenantMixin):
    """A company using Weiyu. ``schema_name`` is its PostgreSQL schema (``[a-z][a-z0-9_]{0,62}``)."""

    name = models.CharField(_("name"), max_length=100)
    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("Suspended tenants cannot be reached.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"


class Domain(DomainMixin):
    """A host name that resolves to a tenant, e.g. ``acme.localhost`` or ``support.acme.com``."""

    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")
