"""A tenant written to one file and restored as a new tenant with equal contents
(docs/operations.md, "Backup and restore of a tenant")."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone
from django_tenants.utils import schema_context
from PIL import Image

from kefu.models import Channel, VisitorNote
from kefu.services import files as visitor_files
from kefu.services import messages
from tenants import backup, domains
from tenants.branding import brand_get, branding_save, logo_read
from tenants.models import CustomDomain, Domain, MailSettings, Tenant
from tenants.services import tenant_create
from tests import fake_dns
from tests.conftest import make_desk, make_visitor
from tickets.services import tickets as ticket_services
from weiyu.errors import ServiceError

PASSWORD = "restore-me-carefully-42"


def _company() -> Tenant:
    schema = f"bk_{uuid.uuid4().hex[:10]}"
    tenant = tenant_create(
        name="Backup Co",
        schema_name=schema,
        domain=f"{schema.replace('_', '-')}.localhost",
        admin_username="owner",
        admin_password=PASSWORD,
        admin_email="owner@backup.example",
    )
    desk = make_desk(tenant, agents=2)
    with schema_context(schema):
        visitor, _token = make_visitor(desk)
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="你好，我的订单呢？", client_msg_id="m1"
        )
        attachment = visitor_files.visitor_attachment_upload(
            visitor=visitor,
            upload=SimpleUploadedFile(
                "order.pdf", b"%PDF-1.4\n1 0 obj\n%%EOF\n", "application/pdf"
            ),
            kind="file",
            conversation_id=message.conversation_id,
        )
        messages.visitor_message_send(
            visitor=visitor,
            conversation_id=message.conversation_id,
            content=None,
            client_msg_id="m2",
            msg_type="file",
            attachment_id=attachment.pk,
        )
        VisitorNote.objects.create(visitor=visitor, author=desk.agents[0], text="Gold customer")
        ticket_services.ticket_create(
            subject="Where is order 5521?",
            body="It has been a week.",
            source="widget",
            requester_visitor=visitor,
        )
    return tenant


def _rows(schema: str, *, paths_as: str | None = None) -> list[dict]:
    out = io.StringIO()
    with schema_context(schema):
        call_command(
            "dumpdata",
            *backup._tenant_app_labels(),
            exclude=backup.EXCLUDED,
            natural_foreign=True,
            stdout=out,
        )
    rows = json.loads(out.getvalue())
    if paths_as:
        backup._rewrite_paths(rows, schema, paths_as)
    return sorted(rows, key=lambda r: (r["model"], str(r["pk"])))


def _files(schema: str) -> dict[str, bytes]:
    found = {}
    for name in backup.stored_files(schema):
        with default_storage.open(name, "rb") as handle:
            found[name[len(schema) + 1 :]] = handle.read()
    return found


def test_a_restored_tenant_has_the_same_rows_files_and_sign_in(tmp_path: Path):
    source = _company()
    archive = tmp_path / "company.tar.gz"
    out = io.StringIO()
    call_command("tenant_backup", "--schema", source.schema_name, "--output", archive, stdout=out)
    assert "rows" in out.getvalue()
    assert archive.is_file()

    target = f"rs_{uuid.uuid4().hex[:10]}"
    call_command(
        "tenant_restore", archive, "--schema", target, "--domain", f"{target.replace('_', '-')}.localhost",
        stdout=io.StringIO(),
    )  # fmt: skip

    # every row is there with its id, files under the new tenant's prefix
    assert _rows(target) == _rows(source.schema_name, paths_as=target)
    source_files = _files(source.schema_name)
    assert source_files
    assert _files(target) == source_files
    assert Tenant.objects.get(schema_name=target).name == "Backup Co"
    # the administrator signs in to the restored tenant with their password
    web = Client(HTTP_HOST=f"{target.replace('_', '-')}.localhost")
    signed_in = web.post("/admin/login/", {"username": "owner", "password": PASSWORD})
    assert signed_in.status_code == 302
    # and new rows get fresh ids (the sequences moved past the loaded ones)
    with schema_context(target):
        note = VisitorNote.objects.create(
            visitor_id=VisitorNote.objects.first().visitor_id, text="after restore"
        )
        assert note.pk > VisitorNote.objects.exclude(pk=note.pk).order_by("-pk").first().pk


def test_a_backup_from_other_migrations_is_refused_and_leaves_nothing(tmp_path: Path):
    source = _company()
    archive = tmp_path / "company.tar.gz"
    backup.tenant_backup(schema=source.schema_name, output=archive)
    # a backup whose manifest names another migration of one app
    tampered = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "r:gz") as old, tarfile.open(tampered, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                manifest["migrations"]["kefu"] = "9999_future"
                data = json.dumps(manifest).encode()
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))
    target = f"rs_{uuid.uuid4().hex[:10]}"
    with pytest.raises(CommandError, match="other migrations"):
        call_command(
            "tenant_restore",
            tampered,
            "--schema",
            target,
            "--domain",
            f"{target.replace('_', '-')}.localhost",
        )
    assert not Tenant.objects.filter(schema_name=target).exists()
    assert not list(backup.stored_files(target))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(CommandError, match="Not a tenant backup"):
        call_command(
            "tenant_restore", tmp_path / "junk.tar.gz", "--schema", target,
            "--domain", f"{target.replace('_', '-')}.localhost",
        )  # fmt: skip


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 32), "#cc3300").save(out, "PNG")
    return out.getvalue()


def test_mail_settings_branding_and_custom_domains_come_back_unverified(tmp_path: Path):
    # given a tenant with its own tested mail server, a logo and colours, and a verified domain
    source = _company()
    MailSettings.objects.create(
        tenant=source,
        host="smtp.backup.example",
        port=465,
        security=MailSettings.Security.SSL,
        username="mailer",
        password="smtp-secret-9",
        from_name="Backup Co",
        from_address="help@backup.example",
        verified_at=timezone.now(),
    )
    logo = _png()
    branding_save(
        tenant=source,
        primary_color="#cc3300",
        accent_color="#00aa55",
        logo=io.BytesIO(logo),
        logo_size=len(logo),
    )
    host = f"help.{source.schema_name.replace('_', '-')}.example"
    custom = domains.custom_domain_add(tenant=source, host=host)
    fake_dns.RECORDS[custom.record_name] = [custom.token]
    assert domains.custom_domain_verify(custom=custom, txt=fake_dns.FakeTxtResolver())

    # when it is backed up and restored as another tenant
    archive = tmp_path / "company.tar.gz"
    manifest = backup.tenant_backup(schema=source.schema_name, output=archive)
    assert manifest["public"] == {"mail_settings": True, "branding": True, "custom_domains": 1}
    with tarfile.open(archive, "r:gz") as tar:
        kept = tar.extractfile("public.json").read().decode()
    assert "smtp-secret-9" not in kept  # the password stays sealed in the file
    target = f"rs_{uuid.uuid4().hex[:10]}"
    restored = backup.tenant_restore(
        archive=archive, schema=target, domain=f"{target.replace('_', '-')}.localhost"
    )

    # then its mail settings are back, password included, waiting for a new test mail
    mail = MailSettings.objects.get(tenant=restored)
    assert (mail.host, mail.port, mail.security, mail.username, mail.from_address) == (
        "smtp.backup.example",
        465,
        "ssl",
        "mailer",
        "help@backup.example",
    )
    assert mail.password == "smtp-secret-9"
    assert mail.verified_at is None
    # its branding shows the same logo, from the new tenant's files
    brand = brand_get(tenant_id=restored.pk)
    assert (brand.primary_color, brand.accent_color) == ("#cc3300", "#00aa55")
    assert brand.logo_path.startswith(f"{target}/branding/")
    assert logo_read(brand) == logo
    # its domain is claimed with the same token but routes nowhere until checked again
    claimed = CustomDomain.objects.get(tenant=restored)
    assert (claimed.host, claimed.token) == (host, custom.token)
    assert claimed.verified_at is None
    assert claimed.domain_id is None
    assert Domain.objects.get(domain=host).tenant_id == source.pk
    # the source is untouched
    assert MailSettings.objects.get(tenant=source).verified_at is not None


def test_a_mail_password_sealed_with_other_keys_refuses_the_restore(tmp_path: Path):
    source = _company()
    MailSettings.objects.create(
        tenant=source, host="smtp.backup.example", password="x-9", from_address="a@b.example"
    )
    archive = tmp_path / "company.tar.gz"
    backup.tenant_backup(schema=source.schema_name, output=archive)
    other_keys = [Fernet.generate_key().decode()]
    target = f"rs_{uuid.uuid4().hex[:10]}"
    with (
        override_settings(WEIYU_FIELD_KEYS=other_keys, SECRET_KEY="another-installation-" * 3),
        pytest.raises(ServiceError, match="other field keys"),
    ):
        backup.tenant_restore(
            archive=archive, schema=target, domain=f"{target.replace('_', '-')}.localhost"
        )
    assert not Tenant.objects.filter(schema_name=target).exists()
    assert not MailSettings.objects.filter(tenant__schema_name=target).exists()


def test_secrets_at_rest_stay_sealed_in_the_archive(tmp_path: Path):
    source = _company()
    secret = f"identity-{uuid.uuid4().hex}"
    with schema_context(source.schema_name):
        channel = Channel.objects.first()
        channel.identity_secret = secret
        channel.save(update_fields=["identity_secret"])
    archive = tmp_path / "company.tar.gz"
    backup.tenant_backup(schema=source.schema_name, output=archive)
    with tarfile.open(archive, "r:gz") as tar:
        assert secret.encode() not in tar.extractfile("data.json").read()
    target = f"rs_{uuid.uuid4().hex[:10]}"
    backup.tenant_restore(
        archive=archive, schema=target, domain=f"{target.replace('_', '-')}.localhost"
    )
    with schema_context(target):
        assert Channel.objects.get(pk=channel.pk).identity_secret == secret
    # an installation without the keys that sealed them refuses the archive, leaving nothing
    other = f"rs_{uuid.uuid4().hex[:10]}"
    with (
        override_settings(WEIYU_FIELD_KEYS=[Fernet.generate_key().decode()], SECRET_KEY="o" * 50),
        pytest.raises(ServiceError, match="other field keys"),
    ):
        backup.tenant_restore(
            archive=archive, schema=other, domain=f"{other.replace('_', '-')}.localhost"
        )
    assert not Tenant.objects.filter(schema_name=other).exists()
