"""The end of a tenant (docs/operations.md, "Deleting a tenant"): exported whole from the
platform admin, deletion scheduled with a grace period during which it is suspended and can be
cancelled, then a final archive and the schema, files, domains and row gone — from the platform
admin, the beat and a command."""

from __future__ import annotations

import datetime as dt
import io
import tarfile
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from kefu.models import Visitor
from org.models import User
from tenants import backup, lifecycle, metrics
from tenants.models import Domain, Tenant, TenantArchive
from tests.conftest import PASSWORD, unique
from tests.tenants.test_backup import _company
from tests.tenants.test_metrics import scrape
from tests.waits import wait_until
from weiyu import celery as weiyu_celery


def _platform_client() -> Client:
    root = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    assert client.login(username=root.username, password=PASSWORD)
    return client


def _domain(tenant: Tenant) -> str:
    return tenant.domains.get().domain


def test_a_scheduled_deletion_suspends_with_the_date_and_cancelling_restores():
    tenant = _company()
    web = Client(HTTP_HOST=_domain(tenant), HTTP_ACCEPT_LANGUAGE="en")
    assert web.post("/admin/login/", {"username": "owner", "password": "x"}).status_code != 403

    lifecycle.tenant_deletion_schedule(
        schema=tenant.schema_name, grace_days=7, now=dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)
    )

    page = web.get("/admin/")
    assert page.status_code == 403
    assert "scheduled for deletion on 2030-01-09 03:04" in page.content.decode()
    assert web.get("/api/v1/kefu/visitors").json()["error"] == "suspended"
    # the beat before the date leaves it alone
    assert lifecycle.tenants_delete_due(now=dt.datetime(2030, 1, 9, 3, 3, tzinfo=dt.UTC)) == 0
    assert schema_exists(tenant.schema_name)

    lifecycle.tenant_deletion_cancel(schema=tenant.schema_name)
    assert web.get("/admin/login/").status_code == 200
    tenant.refresh_from_db()
    assert (tenant.is_active, tenant.delete_after, tenant.suspended_reason) == (True, None, "")


def test_a_due_deletion_keeps_a_final_archive_then_removes_schema_files_domains_and_row(
    tmp_path, monkeypatch
):
    tenant = _company()
    schema, domain = tenant.schema_name, _domain(tenant)
    # a Celery worker stored a message of the tenant: the scrape reports it until the deletion
    monkeypatch.setattr(weiyu_celery, "IN_WORKER", True)
    metrics.message_stored(schema, "visitor")
    monkeypatch.setattr(weiyu_celery, "IN_WORKER", False)
    counted = (
        "weiyu_messages_total",
        (("kind", "visitor"), ("origin", "worker"), ("tenant", schema)),
    )
    assert scrape()[counted] == 1
    files_before = list(backup.stored_files(schema))
    assert files_before  # the company has an uploaded file
    bystander = _company()
    lifecycle.tenant_deletion_schedule(schema=schema, grace_days=0)
    lifecycle.tenant_deletion_schedule(schema=bystander.schema_name, grace_days=30)

    assert lifecycle.tenants_delete_due() == 1

    assert not schema_exists(schema)
    assert not Tenant.objects.filter(schema_name=schema).exists()
    assert not Domain.objects.filter(domain=domain).exists()
    assert not list(backup.stored_files(schema))
    assert Client(HTTP_HOST=domain).get("/admin/login/").status_code == 404
    assert schema_exists(bystander.schema_name)
    # the workers' counts of a tenant that is gone are no longer reported
    assert counted not in scrape()

    archive = TenantArchive.objects.get(schema_name=schema)
    assert archive.reason == "final"
    assert archive.finished_at
    assert not archive.error
    assert archive.files == len(files_before)
    assert archive.rows > 0
    # the archive is a whole tenant: it restores as a new one with the visitor's data
    local = tmp_path / "final.tar.gz"
    with default_storage.open(archive.path, "rb") as handle:
        local.write_bytes(handle.read())
    assert archive.size_bytes == local.stat().st_size
    restored = f"rs_{uuid.uuid4().hex[:10]}"
    call_command(
        "tenant_restore",
        str(local),
        schema=restored,
        domain=f"{restored.replace('_', '-')}.localhost",
    )
    with schema_context(restored):
        assert Visitor.objects.count() == 1
    assert len(list(backup.stored_files(restored))) == len(files_before)


def test_the_platform_admin_schedules_cancels_and_downloads_archives():
    tenant = _company()
    client = _platform_client()
    changelist = "/admin/tenants/tenant/"

    # the action asks for the grace period first
    confirm = client.post(
        changelist, {"action": "schedule_deletion", "_selected_action": [tenant.pk]}
    )
    assert confirm.status_code == 200
    assert tenant.schema_name in confirm.content.decode()
    tenant.refresh_from_db()
    assert tenant.is_active
    assert tenant.delete_after is None
    done = client.post(
        changelist,
        {
            "action": "schedule_deletion",
            "_selected_action": [tenant.pk],
            "confirm": "1",
            "grace_days": "7",
        },
    )
    assert done.status_code == 302
    tenant.refresh_from_db()
    assert not tenant.is_active
    assert tenant.suspended_reason == "deletion"
    assert abs(tenant.delete_after - timezone.now() - dt.timedelta(days=7)) < dt.timedelta(hours=1)
    # "Suspend" does not hide the scheduled deletion; "Cancel scheduled deletion" lifts it
    client.post(changelist, {"action": "suspend", "_selected_action": [tenant.pk]})
    tenant.refresh_from_db()
    assert tenant.suspended_reason == "deletion"
    client.post(changelist, {"action": "cancel_deletion", "_selected_action": [tenant.pk]})
    tenant.refresh_from_db()
    assert tenant.is_active
    assert tenant.delete_after is None

    # an archive is listed with a download link that only platform staff can follow
    archive = lifecycle.tenant_export(schema=tenant.schema_name)
    listing = client.get("/admin/tenants/tenantarchive/").content.decode()
    link = f"/admin/tenants/tenantarchive/{archive.pk}/download/"
    assert link in listing
    download = client.get(link)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/gzip"
    body = b"".join(download.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert {"manifest.json", "data.json"} <= set(tar.getnames())
    stranger = Client(HTTP_HOST="localhost")
    assert stranger.get(link).status_code == 302  # to the sign-in page


def test_the_export_action_writes_an_archive_through_a_real_worker():
    from tests.servers import celery_worker_start
    from weiyu.celery import app

    tenant = _company()
    client = _platform_client()
    queue = unique("tenant-exports")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(queue=queue, name="tenant-exports", concurrency=1)
    try:
        response = client.post(
            "/admin/tenants/tenant/", {"action": "export", "_selected_action": [tenant.pk]}
        )
        assert response.status_code == 302
        archive = wait_until(
            lambda: TenantArchive.objects.filter(
                schema_name=tenant.schema_name, finished_at__isnull=False
            ).first(),
            what="the worker's archive",
        )
        assert archive.reason == "export"
        assert archive.rows > 0
        assert default_storage.exists(archive.path)
    finally:
        worker.stop()
        app.conf.task_default_queue = previous


def test_the_command_schedules_cancels_deletes_and_refuses_bad_input():
    tenant = _company()
    out = io.StringIO()
    call_command("tenant_delete", schema=tenant.schema_name, grace_days=3, stdout=out)
    assert "will be deleted after" in out.getvalue()
    call_command("tenant_delete", schema=tenant.schema_name, cancel=True, stdout=out)
    with pytest.raises(CommandError, match="No deletion is scheduled"):
        call_command("tenant_delete", schema=tenant.schema_name, cancel=True)
    with pytest.raises(CommandError, match="negative"):
        call_command("tenant_delete", schema=tenant.schema_name, grace_days=-1)
    with pytest.raises(CommandError, match="No tenant"):
        call_command("tenant_delete", schema="public", now=True)
    with pytest.raises(CommandError, match="No tenant"):
        call_command("tenant_delete", schema="nosuchtenant", now=True)

    call_command("tenant_delete", schema=tenant.schema_name, now=True, stdout=out)
    assert not schema_exists(tenant.schema_name)
    final = TenantArchive.objects.get(schema_name=tenant.schema_name, reason="final")
    assert f"Final archive: {final.path}" in out.getvalue()
    assert Path(final.path).name.startswith(tenant.schema_name)
