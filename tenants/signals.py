"""Signals of the tenants app, for the apps above it (dependency direction,
docs/architecture.md): tenants knows nothing of them, they connect receivers in their
``AppConfig.ready``."""

from django.dispatch import Signal

#: sent by ``manage.py demo_setup`` inside the demo tenant (its schema active) once its people,
#: workgroup and channel exist; keyword arguments ``tenant`` (the :class:`tenants.models.Tenant`),
#: ``admin`` (the tenant admin user), ``workgroup`` and ``channel`` (the demo's kefu workgroup and
#: widget channel). Receivers (kbase, tickets) add their demo data and must be idempotent.
demo_tenant_ready = Signal()
