"""A whole tenant as one file, and back (docs/operations.md, "Backup and restore of a tenant";
MISSION.md TEN-4, issue "Safe on the open internet": per-tenant backup and restore).

:func:`tenant_backup` writes a ``.tar.gz`` with

- ``manifest.json``: ``{"format": 1, "schema", "name", "created_at", "migrations": {app: last
  applied}, "objects", "files"}``;
- ``data.json``: every row of the tenant's schema as Django's ``dumpdata`` writes it (natural
  keys for content types and permissions, so it loads into another schema or installation),
  without what is rebuilt or short-lived: content types, permissions, sessions, sign-in
  attempts; every secret at rest (:class:`weiyu.fields.EncryptedTextField`: vendor keys,
  signing secrets, channel credentials) sealed again with the installation's field keys
  (``{"sealed": <Fernet token>}``) instead of the plain text ``dumpdata`` would write;
- ``files/<path>``: every stored file of the tenant (uploads, thumbnails, stickers: the
  storage's ``<schema>/`` prefix), from the local disk or S3 alike;
- ``public.json``: the tenant's rows of the public schema (:func:`public_rows`): its mail
  settings (the SMTP password as stored, still sealed with the installation's field keys), its
  branding and its custom domains.

:func:`tenant_restore` makes a new tenant (schema from the template, a domain) and loads it: the
rows with their ids, the files under the new schema's prefix (paths in the rows rewritten), the
sequences moved past the loaded ids; the public rows are made again (:func:`public_restore`),
**unverified**: the mail settings wait for a new test mail (until then the platform's server
sends), the custom domains for a new DNS check of their unchanged TXT token (until then they do
not route). The audit log is not written during the load (the entries come from the backup).
The backup must come from the same migrations (``manifest.migrations``), else
``ServiceError("invalid")`` names the difference: restore into the version that wrote it, then
upgrade.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auditlog.context import disable_auditlog
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.functions import Cast
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.domains import host_check
from tenants.models import Branding, CustomDomain, Domain, MailSettings, Tenant
from tenants.services import _tenant_schema_provision, _validate
from weiyu.errors import ServiceError
from weiyu.fields import EncryptedTextField, FieldKeyError, decrypt, encrypt

FORMAT = 1
#: rows not kept: rebuilt by migrations, or short-lived
EXCLUDED = [
    "contenttypes",
    "auth.permission",
    "sessions",
    "axes.accessattempt",
    "axes.accesslog",
    "axes.accessfailurelog",
]


def _tenant_app_labels() -> list[str]:
    labels = []
    for name in settings.TENANT_APPS:
        config = next((c for c in apps.get_app_configs() if c.name == name), None)
        if config is not None and config.label not in ("contenttypes", "sessions"):
            labels.append(config.label)
    return labels


def _migrations() -> dict[str, str]:
    """The last applied migration of each app in the current schema."""
    last: dict[str, str] = {}
    for app, name in MigrationRecorder(connection).applied_migrations():
        if name > last.get(app, ""):
            last[app] = name
    return dict(sorted(last.items()))


def stored_files(prefix: str) -> Iterator[str]:
    """Every file name under ``prefix`` in the default storage (recursively)."""
    try:
        dirs, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        yield f"{prefix}/{name}"
    for sub in dirs:
        yield from stored_files(f"{prefix}/{sub}")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(timezone.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


_MAIL_FIELDS = ("host", "port", "security", "username", "from_name", "from_address")
_BRAND_FIELDS = ("logo_path", "logo_type", "primary_color", "accent_color")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def public_rows(tenant: Tenant) -> dict[str, Any]:
    """The tenant's rows of the public schema, as ``public.json`` keeps them:
    ``{"mail_settings": {host, port, security, username, from_name, from_address,
    "password_sealed" (the stored Fernet token, never the password), "verified_at"} | null,
    "branding": {logo_path, logo_type, primary_color, accent_color} | null, "custom_domains":
    [{"host", "token", "verified_at"}]}`` (times ISO 8601 or null)."""
    mail = (
        MailSettings.objects.filter(tenant=tenant)
        .annotate(sealed=Cast("password", models.TextField()))
        .first()
    )
    brand = Branding.objects.filter(tenant=tenant).first()
    return {
        "mail_settings": None
        if mail is None
        else {
            **{name: getattr(mail, name) for name in _MAIL_FIELDS},
            "password_sealed": mail.sealed or "",
            "verified_at": _iso(mail.verified_at),
        },
        "branding": None
        if brand is None
        else {name: getattr(brand, name) for name in _BRAND_FIELDS},
        "custom_domains": [
            {"host": c.host, "token": c.token, "verified_at": _iso(c.verified_at)}
            for c in CustomDomain.objects.filter(tenant=tenant).order_by("host")
        ],
    }


def _bad(what: str, exc: Exception) -> ServiceError:
    detail = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
    return ServiceError("invalid", f"public.json: {what}: {'; '.join(detail)}")


def public_restore(*, tenant: Tenant, rows: dict[str, Any], old_schema: str) -> dict[str, Any]:
    """Make ``tenant``'s public rows from a backup's ``public.json`` (:func:`public_rows`), each
    checked as the forms check it. Mail settings come back **unverified** (``verified_at``
    empty, so the platform's server sends until a test mail passes) and their password opened
    with this installation's field keys (:func:`_opened`) and sealed again. The logo path moves
    to the new schema's prefix. Custom domains come back with their token, **unverified** and
    routing nothing, until a DNS check (the same TXT record) verifies them again. Returns
    ``{"mail_settings": bool, "mail_password": bool, "branding": bool, "custom_domains": n}``.
    Raises ``ServiceError("invalid")``."""
    if not isinstance(rows, dict):
        raise ServiceError("invalid", "public.json is not an object.")
    done = {"mail_settings": False, "mail_password": False, "branding": False, "custom_domains": 0}
    mail = rows.get("mail_settings")
    if mail is not None:
        try:
            row = MailSettings(tenant=tenant, **{name: mail[name] for name in _MAIL_FIELDS})
            row.password = _opened(mail.get("password_sealed"))
            done["mail_password"] = bool(row.password)
            row.full_clean(exclude=["tenant"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise _bad("mail settings", exc) from exc
        row.save()
        done["mail_settings"] = True
    brand = rows.get("branding")
    if brand is not None:
        try:
            row = Branding(tenant=tenant, **{name: brand[name] for name in _BRAND_FIELDS})
            if row.logo_path and not row.logo_path.startswith(f"{old_schema}/branding/"):
                raise ValidationError("the logo is not one of the tenant's files")
            if row.logo_path:
                row.logo_path = f"{tenant.schema_name}/{row.logo_path[len(old_schema) + 1 :]}"
            row.full_clean(exclude=["tenant"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise _bad("branding", exc) from exc
        row.save()
        done["branding"] = True
    for item in rows.get("custom_domains") or []:
        try:
            host, token = host_check(item["host"]), str(item["token"])[:64]
        except (KeyError, TypeError, ServiceError) as exc:
            raise _bad("custom domains", exc) from exc
        CustomDomain.objects.get_or_create(tenant=tenant, host=host, defaults={"token": token})
        done["custom_domains"] += 1
    return done


def tenant_backup(*, schema: str, output: Path) -> dict[str, Any]:
    """Write the tenant ``schema`` to ``output`` (a ``.tar.gz``); returns the manifest.
    Raises ``ServiceError("not_found")`` for an unknown schema."""
    tenant = Tenant.objects.filter(schema_name=schema).first()
    if tenant is None or schema == settings.PUBLIC_SCHEMA_NAME:
        raise ServiceError("not_found", f"No tenant with schema {schema!r}.")
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "data.json"
        with schema_context(schema):
            call_command(
                "dumpdata",
                *_tenant_app_labels(),
                exclude=EXCLUDED,
                natural_foreign=True,
                output=str(data_path),
                verbosity=0,
            )
            migrations = _migrations()
        public = public_rows(tenant)
        rows = json.loads(data_path.read_text())
        _seal_secrets(rows)
        data_path.write_text(json.dumps(rows))
        objects = len(rows)
        files = sorted(stored_files(schema))
        manifest = {
            "format": FORMAT,
            "schema": schema,
            "name": tenant.name,
            "created_at": timezone.now().isoformat(),
            "migrations": migrations,
            "objects": objects,
            "files": len(files),
            "public": {
                "mail_settings": public["mail_settings"] is not None,
                "branding": public["branding"] is not None,
                "custom_domains": len(public["custom_domains"]),
            },
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(output, "w:gz") as tar:
            _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
            tar.add(data_path, arcname="data.json")
            _add(tar, "public.json", json.dumps(public, indent=2).encode())
            for name in files:
                with default_storage.open(name, "rb") as handle:
                    _add(tar, f"files/{name}", handle.read())
    return manifest


def _secret_fields(label: str) -> list[str]:
    model = apps.get_model(label)
    return [f.name for f in model._meta.fields if isinstance(f, EncryptedTextField)]


def _seal_secrets(rows: list[dict[str, Any]]) -> None:
    """Each secret-at-rest value of the rows → ``{"sealed": <token>}`` (empty ones stay empty)."""
    cache: dict[str, list[str]] = {}
    for row in rows:
        for name in cache.setdefault(row["model"], _secret_fields(row["model"])):
            value = row["fields"].get(name)
            if value:
                row["fields"][name] = {"sealed": encrypt(value)}


def _open_secrets(rows: list[dict[str, Any]]) -> None:
    """The inverse of :func:`_seal_secrets` (:func:`_opened`). Raises ``ServiceError``."""
    cache: dict[str, list[str]] = {}
    for row in rows:
        for name in cache.setdefault(row["model"], _secret_fields(row["model"])):
            value = row["fields"].get(name)
            if isinstance(value, dict):
                row["fields"][name] = _opened(value.get("sealed"))


def _opened(token: object) -> str:
    """A sealed secret of the backup, opened with this installation's field keys. Raises
    ``ServiceError("invalid")`` when none opens it (the archive came from an installation with
    other keys: add its key to ``WEIYU_FIELD_KEYS``)."""
    try:
        return decrypt(str(token or ""))
    except FieldKeyError as exc:
        raise ServiceError(
            "invalid",
            "The backup's secrets were sealed with other field keys: add the key of the "
            "installation that wrote it to WEIYU_FIELD_KEYS.",
        ) from exc


def _file_fields(label: str) -> list[str]:
    model = apps.get_model(label)
    return [f.name for f in model._meta.fields if isinstance(f, models.FileField)]


def _rewrite_paths(rows: list[dict[str, Any]], old: str, new: str) -> None:
    """File paths in the rows move from the ``old`` schema's prefix to the ``new`` one's."""
    cache: dict[str, list[str]] = {}
    for row in rows:
        fields = cache.setdefault(row["model"], _file_fields(row["model"]))
        for name in fields:
            value = row["fields"].get(name)
            if value and value.startswith(f"{old}/"):
                row["fields"][name] = f"{new}/{value[len(old) + 1 :]}"


def _reset_sequences(labels: list[str]) -> None:
    models_ = [m for label in labels for m in apps.get_app_config(label).get_models()]
    statements = connection.ops.sequence_reset_sql(no_style(), models_)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _fixture(rows: list[dict[str, Any]], tmp: Path, *, old: str, new: str) -> Path:
    """The rows made ready to load into schema ``new`` (file paths moved, secrets opened; before
    any schema is made, so a refusal leaves nothing), written to ``tmp/data.json``."""
    _rewrite_paths(rows, old, new)
    _open_secrets(rows)
    fixture = tmp / "data.json"
    fixture.write_text(json.dumps(rows))
    return fixture


def _public_of(tar: tarfile.TarFile) -> dict[str, Any]:
    """The backup's ``public.json`` (``{}`` in a backup written before it was kept)."""
    try:
        return json.load(tar.extractfile("public.json"))
    except KeyError:
        return {}
    except (TypeError, ValueError) as exc:
        raise ServiceError("invalid", "public.json is not JSON.") from exc


def tenant_restore(*, archive: Path, schema: str, domain: str, name: str = "") -> Tenant:
    """A new tenant ``schema`` at ``domain`` with the contents of a :func:`tenant_backup` file
    (its name from the backup unless ``name``). Raises ``ServiceError``: ``invalid`` (not a
    backup, another format, other migrations, bad schema or domain), ``conflict`` (schema or
    domain taken). On error nothing is left behind (files copied are removed)."""
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise ServiceError("invalid", f"Not a tenant backup: {exc}") from exc
    copied: list[str] = []
    with tar, tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = json.load(tar.extractfile("manifest.json"))
            rows = json.load(tar.extractfile("data.json"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceError(
                "invalid", "Not a tenant backup (manifest or data missing)."
            ) from exc
        public = _public_of(tar)
        if manifest.get("format") != FORMAT:
            raise ServiceError("invalid", f"Backup format {manifest.get('format')!r} is unknown.")
        old = manifest["schema"]
        name = (name or manifest.get("name") or schema).strip()
        schema = schema.strip().lower()
        domain = domain.strip().lower()
        _validate(name, schema, domain)
        fixture = _fixture(rows, Path(tmp), old=old, new=schema)
        try:
            with transaction.atomic():
                tenant = Tenant(name=name, schema_name=schema)
                _tenant_schema_provision(tenant=tenant)
                Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
                public_restore(tenant=tenant, rows=public, old_schema=old)
                with schema_context(schema):
                    ours = _migrations()
                    if ours != manifest.get("migrations"):
                        differ = sorted(
                            app
                            for app in set(ours) | set(manifest.get("migrations") or {})
                            if ours.get(app) != (manifest.get("migrations") or {}).get(app)
                        )
                        raise ServiceError(
                            "invalid",
                            "The backup was written by other migrations (apps: "
                            f"{', '.join(differ)}): restore it with the version that wrote it.",
                        )
                    with disable_auditlog():
                        call_command("loaddata", str(fixture), verbosity=0)
                    _reset_sequences(_tenant_app_labels())
                for member in tar.getmembers():
                    if not member.isfile() or not member.name.startswith("files/"):
                        continue
                    path = member.name[len("files/") :]
                    if not path.startswith(f"{old}/") or ".." in Path(path).parts:
                        continue
                    target = f"{schema}/{path[len(old) + 1 :]}"
                    # left by an earlier tenant of that schema name: the rows name this path
                    if default_storage.exists(target):
                        default_storage.delete(target)
                    saved = default_storage.save(
                        target, ContentFile(tar.extractfile(member).read())
                    )
                    copied.append(saved)
        except BaseException:
            # the schema and rows went with the rollback; the files are ours to remove
            for path in copied:
                default_storage.delete(path)
            raise
    return tenant
