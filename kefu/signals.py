"""Signals other apps listen to without kefu importing them (dependency direction, see
docs/architecture.md)."""

from django.dispatch import Signal

#: sent by ``manage.py demo_setup`` inside the demo tenant once its people, workgroup and channel
#: exist; keyword arguments ``tenant``, ``admin`` (the tenant admin user), ``workgroup``,
#: ``channel``. Receivers add their demo data and must be idempotent.
demo_tenant_ready = Signal()
