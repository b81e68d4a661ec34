"""The end of a tenant (TEN-4, issue 16 "Tenant lifecycle"; docs/operations.md "Deleting a
tenant"): export it whole, schedule its deletion, and delete it after a grace period.

- :func:`tenant_export` writes a :class:`~tenants.models.TenantArchive` (the ``.tar.gz`` of
  :func:`tenants.backup.tenant_backup`) into the platform's storage;
- :func:`tenant_deletion_schedule` suspends the tenant (reason ``deletion``: its staff are told
  the date) and sets ``Tenant.delete_after`` to now + the grace period
  (``WEIYU_TENANT_DELETE_GRACE_DAYS``, 30 days); :func:`tenant_deletion_cancel` undoes both;
- :func:`tenants_delete_due` (beat, hourly) deletes every tenant whose ``delete_after`` has
  passed with :func:`tenant_destroy`: a final archive first (a failed export stops the deletion
  of that tenant: nothing is deleted that was not archived), then the schema (``DROP SCHEMA …
  CASCADE``), its stored files (the storage's ``<schema>/`` prefix), its domains and its row.

The archives are kept after the tenant is gone; ``manage.py tenant_restore`` brings one back as a
new tenant.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tenants import backup, metrics, quotas
from tenants.models import Tenant, TenantArchive
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: where archives live in the default storage (no schema can be named so: schemas start with a
#: letter)
ARCHIVE_PREFIX = "_platform/archives"


def _tenant(schema: str) -> Tenant:
    tenant = Tenant.objects.filter(schema_name=schema).first()
    if tenant is None or schema == settings.PUBLIC_SCHEMA_NAME:
        raise ServiceError("not_found", _("No tenant with schema %(schema)s.") % {"schema": schema})
    return tenant


def tenant_export(*, schema: str, reason: str = TenantArchive.Reason.EXPORT) -> TenantArchive:
    """Write the tenant ``schema`` (every row and stored file) to
    ``_platform/archives/<schema>-<yyyymmdd-hhmmss>.tar.gz`` in the default storage and return
    its finished :class:`TenantArchive` (``size_bytes``, ``rows``, ``files`` filled in).

    A failure is recorded on the archive (``error``) before it is raised again. Raises
    ``ServiceError("not_found")`` for an unknown schema or the public one."""
    tenant = _tenant(schema)
    archive = TenantArchive.objects.create(
        schema_name=schema, tenant_name=tenant.name, reason=reason
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "tenant.tar.gz"
            manifest = backup.tenant_backup(schema=schema, output=local)
            name = f"{ARCHIVE_PREFIX}/{schema}-{timezone.now():%Y%m%d-%H%M%S}-{archive.pk}.tar.gz"
            with local.open("rb") as handle:
                stored = default_storage.save(name, File(handle))
            archive.path = stored
            archive.size_bytes = local.stat().st_size
            archive.rows = manifest["objects"]
            archive.files = manifest["files"]
            archive.finished_at = timezone.now()
            archive.save(update_fields=["path", "size_bytes", "rows", "files", "finished_at"])
    except Exception as exc:
        archive.error = f"{type(exc).__name__}: {exc}"[:2000]
        archive.save(update_fields=["error"])
        raise
    return archive


def tenant_deletion_schedule(
    *, schema: str, grace_days: int | None = None, now: dt.datetime | None = None
) -> Tenant:
    """Suspend the tenant ``schema`` and schedule its deletion ``grace_days`` from ``now``
    (default ``WEIYU_TENANT_DELETE_GRACE_DAYS``; 0 = at the next run of the beat). Its staff see
    the date on the suspension page. Raises ``ServiceError("not_found")`` for an unknown or the
    public schema, ``ServiceError("invalid")`` for a negative grace."""
    grace = settings.WEIYU_TENANT_DELETE_GRACE_DAYS if grace_days is None else grace_days
    if grace < 0:
        raise ServiceError("invalid", _("The grace period cannot be negative."), field="grace")
    tenant = _tenant(schema)
    tenant.is_active = False
    tenant.suspended_reason = "deletion"
    tenant.delete_after = (now or timezone.now()) + dt.timedelta(days=grace)
    tenant.save(update_fields=["is_active", "suspended_reason", "delete_after"])
    quotas.forget(schema)
    logger.info("tenant %s: deletion scheduled for %s", schema, tenant.delete_after.isoformat())
    return tenant


def tenant_deletion_cancel(*, schema: str) -> Tenant:
    """Cancel a scheduled deletion and make the tenant reachable again. Raises
    ``ServiceError("not_found")`` for an unknown schema, ``ServiceError("invalid")`` when no
    deletion is scheduled."""
    tenant = _tenant(schema)
    if tenant.delete_after is None:
        raise ServiceError("invalid", _("No deletion is scheduled for this tenant."))
    tenant.delete_after = None
    tenant.is_active = True
    tenant.suspended_reason = ""
    tenant.save(update_fields=["delete_after", "is_active", "suspended_reason"])
    quotas.forget(schema)
    return tenant


def _files_delete(prefix: str) -> int:
    names = list(backup.stored_files(prefix))
    for name in names:
        default_storage.delete(name)
    return len(names)


def tenant_destroy(*, schema: str) -> TenantArchive:
    """Delete the tenant ``schema`` now, after writing its final archive: its schema, stored
    files, domains and row. Returns the final archive. An export that fails raises and deletes
    nothing. Raises ``ServiceError("not_found")`` for an unknown or the public schema."""
    _tenant(schema)
    archive = tenant_export(schema=schema, reason=TenantArchive.Reason.FINAL)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(schema_name=schema)
        connection.set_schema_to_public()
        # django-tenants drops the schema (DROP SCHEMA … CASCADE) when asked to
        tenant.delete(force_drop=True)
    removed = _files_delete(schema)
    quotas.forget(schema)
    metrics.tenant_forget(schema)
    logger.info("tenant %s deleted (%d files); final archive %s", schema, removed, archive.path)
    return archive


def tenants_delete_due(*, now: dt.datetime | None = None) -> int:
    """Beat (hourly): :func:`tenant_destroy` every tenant whose ``delete_after`` has passed. A
    tenant that fails is logged and retried at the next run; the others go on. Returns how many
    were deleted."""
    due = list(
        Tenant.objects.filter(delete_after__lte=now or timezone.now())
        .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .values_list("schema_name", flat=True)
    )
    deleted = 0
    for schema in due:
        try:
            tenant_destroy(schema=schema)
            deleted += 1
        except Exception:
            logger.exception("deleting tenant %s failed; it is retried at the next run", schema)
    return deleted
