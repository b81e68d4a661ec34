"""Directory sync (ORG-5): people and departments from an HR system, by their external ids
(docs/operations.md, "Directory sync"; docs/api.md, "People and departments").

Three ways in, one set of rules:

- a CSV or XLSX file (the back office's "Import directory" page, ``manage.py
  import_directory``): :func:`read_table` then :func:`directory_import`, with a dry run and a
  report by line;
- ``PUT /api/v1/org/people/<external_id>`` and ``PUT /api/v1/org/departments/<external_id>``
  (org.api): :func:`person_upsert` and :func:`department_upsert`, idempotent;
- ``DELETE /api/v1/org/people/<external_id>``: :func:`person_disable`.

A person is found by ``external_id``, else (first sync of an existing account) by
``username``. People are created without a usable password: they sign in through single
sign-on (org.sso) or after "Forgot your password?". People removed upstream — missing from a
full import, or deleted through the API — are disabled with :func:`org.services.user_deactivate`:
the account stays with everything they took part in, and enabling it again restores it.

File columns (a header row; names are case-insensitive, Chinese names accepted):
``external_id`` (required), ``username``, ``email``, ``name``, ``title``, ``phone``, ``role``
(admin / agent / staff, default staff), ``departments`` (paths like ``Sales/East``, several
separated by ``;``; the first is the primary one), ``active`` (yes/no, default yes).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.translation import gettext as _

from org import audit, services
from org.models import Department, DepartmentMember, User
from tenants import quotas
from weiyu.errors import ServiceError

#: bytes of a file read at most
MAX_BYTES = 5 * 1024 * 1024
#: data rows of a file read at most
MAX_ROWS = 20_000
EXTERNAL_ID_MAX = 100
_FIELDS = ("external_id", "username", "email", "name", "title", "phone", "role", "departments")
#: the columns a file may have, in the order of the documentation
COLUMNS = (*_FIELDS, "active")
_HEADERS = {
    "external_id": "external_id",
    "external id": "external_id",
    "employee id": "external_id",
    "工号": "external_id",
    "username": "username",
    "用户名": "username",
    "email": "email",
    "e-mail": "email",
    "邮箱": "email",
    "name": "name",
    "display name": "name",
    "姓名": "name",
    "title": "title",
    "job title": "title",
    "职位": "title",
    "phone": "phone",
    "电话": "phone",
    "手机": "phone",
    "role": "role",
    "角色": "role",
    "departments": "departments",
    "department": "departments",
    "部门": "departments",
    "active": "active",
    "状态": "active",
}
_TRUE = {"", "1", "yes", "y", "true", "active", "是", "在职"}
_FALSE = {"0", "no", "n", "false", "inactive", "disabled", "否", "离职"}
_LIMITS = {"username": 150, "email": 254, "name": 64, "title": 64, "phone": 32}


@dataclass
class Report:
    """What an import did (or, in a dry run, would do): ``created``/``updated``/``unchanged``/
    ``disabled`` are lists of external ids, ``errors`` is ``[(line, message)]`` (for a file,
    line 1 is the header; for an LDAP directory, the entry's position in what was read, the
    message starting with its DN; line 0: the whole sync failed, e.g. the server refused the
    bind, and nothing was changed)."""

    dry_run: bool
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{"dry_run", "created", "updated", "unchanged", "disabled", "errors": [{"line",
        "message"}]}``."""
        return {
            "dry_run": self.dry_run,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "disabled": self.disabled,
            "errors": [{"line": line, "message": message} for line, message in self.errors],
        }


class _DryRunRollbackError(Exception):
    """Raised at the end of a dry run to roll its writes back."""


# --- reading files ---------------------------------------------------------------------------


def read_table(*, name: str, data: bytes) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV (UTF-8, with or without BOM; comma, semicolon or tab) or XLSX file
    (its first sheet) as ``[(line, {column: text})]``, columns named as in this module's
    docstring; empty rows skipped. Raises ``ServiceError("invalid")`` for another kind of
    file, one over :data:`MAX_BYTES` or :data:`MAX_ROWS`, an unreadable one, or a header
    without ``external_id``."""
    if len(data) > MAX_BYTES:
        raise ServiceError(
            "invalid", _("The file is larger than %(mb)d MB.") % {"mb": MAX_BYTES // 2**20}
        )
    lower = name.lower()
    if lower.endswith(".csv"):
        rows = _csv_rows(data)
    elif lower.endswith(".xlsx"):
        rows = _xlsx_rows(data)
    else:
        raise ServiceError("invalid", _("Upload a .csv or .xlsx file."))
    if not rows:
        raise ServiceError("invalid", _("The file is empty."))
    header = [_HEADERS.get(str(h or "").strip().lower(), "") for h in rows[0]]
    if "external_id" not in header:
        raise ServiceError(
            "invalid", _("The first row must name the columns, with external_id among them.")
        )
    if len(rows) - 1 > MAX_ROWS:
        raise ServiceError("invalid", _("The file has more than %(n)d rows.") % {"n": MAX_ROWS})
    table = []
    for line, row in enumerate(rows[1:], start=2):
        values = {
            column: str(value if value is not None else "").strip()
            for column, value in zip(header, row, strict=False)
            if column
        }
        if any(values.values()):
            table.append((line, values))
    return table


def _csv_rows(data: bytes) -> list[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ServiceError("invalid", _("The CSV file is not UTF-8 text.")) from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return list(csv.reader(io.StringIO(text), dialect))


def _xlsx_rows(data: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook  # loaded only for spreadsheets (a large import)

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise ServiceError("invalid", _("The XLSX file cannot be read.")) from exc
    try:
        sheet = book.worksheets[0]
        rows = []
        for row in sheet.iter_rows(values_only=True):
            rows.append(list(row))
            if len(rows) > MAX_ROWS + 1:
                break
        return rows
    finally:
        book.close()


# --- people and departments ------------------------------------------------------------------


def _external_id(value: Any, field_name: str = "external_id") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("invalid", _("An external id is required."), field=field_name)
    value = value.strip()
    if len(value) > EXTERNAL_ID_MAX or not re.fullmatch(r"[^\s/]+", value):
        raise ServiceError(
            "invalid",
            _("An external id is 1 to %(n)d characters without spaces or slashes.")
            % {"n": EXTERNAL_ID_MAX},
            field=field_name,
        )
    return value


def _text(data: dict[str, Any], name: str) -> str | None:
    if name not in data or data[name] is None:
        return None
    value = data[name]
    if not isinstance(value, str):
        raise ServiceError("invalid", _("%(field)s must be text.") % {"field": name}, field=name)
    value = value.strip()
    if len(value) > _LIMITS[name]:
        raise ServiceError(
            "invalid",
            _("%(field)s is longer than %(n)d characters.") % {"field": name, "n": _LIMITS[name]},
            field=name,
        )
    return value


def path_department(path: str) -> Department:
    """The department at ``Sales/East`` (made, with its parents, when missing)."""
    parent: Department | None = None
    for part in (p.strip() for p in path.split("/")):
        if not part:
            continue
        siblings = (
            Department.objects.get_root_nodes()
            if parent is None
            else Department.objects.get_children(parent)
        )
        found = siblings.filter(name=part).first()
        parent = found or services.department_create(name=part, parent=parent)
    if parent is None:
        raise ServiceError("invalid", _("An empty department path."), field="departments")
    return parent


def _set_departments(user: User, departments: list[Department]) -> bool:
    """Make ``departments`` the person's departments (the first primary); whether anything
    changed. Head marks of kept memberships stay."""
    wanted = [d.pk for d in departments]
    current = {m.department_id: m for m in DepartmentMember.objects.filter(user=user)}
    changed = False
    for department_id, member in current.items():
        if department_id not in wanted:
            member.delete()
            changed = True
    for position, department_id in enumerate(wanted):
        primary = position == 0
        member = current.get(department_id)
        if member is None:
            DepartmentMember.objects.create(
                department_id=department_id, user=user, is_primary=primary
            )
            changed = True
        elif member.is_primary != primary:
            member.is_primary = primary
            member.save(update_fields=["is_primary"])
            changed = True
    return changed


def _username_for(external_id: str, email: str) -> str:
    base = (email or external_id)[:140]
    username, n = base, 1
    while User.objects.filter(username=username).exists():
        n += 1
        username = f"{base}.{n}"
    return username


def _person_values(data: dict[str, Any]) -> dict[str, Any]:
    """The checked fields of an upsert body (None: left out)."""
    values: dict[str, Any] = {
        name: _text(data, name) for name in ("username", "email", "name", "title", "phone")
    }
    if values["email"]:
        try:
            validate_email(values["email"])
        except ValidationError as exc:
            raise ServiceError("invalid", _("Not an e-mail address."), field="email") from exc
    values["role"] = data.get("role")
    if values["role"] is not None and values["role"] not in User.Role.values:
        raise ServiceError("invalid", _("role is one of admin, agent, staff."), field="role")
    values["active"] = data.get("active")
    if values["active"] is not None and not isinstance(values["active"], bool):
        raise ServiceError("invalid", _("active is true or false."), field="active")
    return values


def _person_find(external_id: str, username: str | None) -> User | None:
    """The person with ``external_id``, else a not yet synced one with ``username``; locked.
    Raises ``ServiceError("conflict")`` for a deleted account or a username someone else has."""
    user = User.objects.select_for_update().filter(external_id=external_id).first()
    if user is None and username:
        user = (
            User.objects.select_for_update()
            .filter(username=username, external_id__isnull=True)
            .first()
        )
    if user is not None and user.deleted_at is not None:
        raise ServiceError("conflict", _("This person was deleted here."), field="external_id")
    if username and (
        User.objects.filter(username=username).exclude(pk=user.pk if user else None).exists()
    ):
        raise ServiceError("conflict", _("Another person has this username."), field="username")
    return user


def _person_changes(user: User, values: dict[str, Any]) -> list[str]:
    """Set ``values`` on ``user``; the names of the fields that changed."""
    changed = []
    for attr, key in (
        ("username", "username"),
        ("email", "email"),
        ("display_name", "name"),
        ("title", "title"),
        ("phone", "phone"),
        ("role", "role"),
    ):
        if values[key] is not None and getattr(user, attr) != values[key]:
            setattr(user, attr, values[key])
            changed.append(attr)
    if values["active"] is True and not user.is_active:
        user.is_active = True
        changed.append("is_active")
    return changed


@transaction.atomic
def person_upsert(
    *, external_id: Any, data: dict[str, Any], departments: list[Department] | None = None
) -> tuple[User, str]:
    """Create or update the person with ``external_id`` from ``data`` (any of ``username``,
    ``email``, ``name``, ``title``, ``phone``, ``role``, ``active`` (bool); a key left out
    keeps its value). ``departments``: their departments (first: primary), or None to leave
    them. Returns ``(user, outcome)`` with outcome ``"created"``, ``"updated"`` or
    ``"unchanged"`` — the same data twice is ``"unchanged"`` the second time. ``active: False``
    disables them (history kept); ``True`` enables them again.

    Raises ``ServiceError("invalid")`` with ``field`` for a bad value, ``("conflict")`` for a
    username another person has, or an account deleted here, ``("quota_exceeded")`` when
    the plan's seats are taken."""
    external_id = _external_id(external_id)
    values = _person_values(data)
    user = _person_find(external_id, values["username"])
    if user is None:
        quotas.check_total("seats")  # the plan's seats (tenants.quotas)
        user = User(
            external_id=external_id,
            username=values["username"] or _username_for(external_id, values["email"] or ""),
            role=values["role"] or User.Role.STAFF,
        )
        user.set_unusable_password()
        _person_changes(user, values)
        user.save()
        outcome = "created"
    else:
        changed = _person_changes(user, values)
        if user.external_id != external_id:
            user.external_id = external_id
            changed.append("external_id")
        if changed:
            user.save(update_fields=changed)
        outcome = "updated" if changed else "unchanged"
    if departments is not None and _set_departments(user, departments) and outcome != "created":
        outcome = "updated"
    if values["active"] is False and user.is_active:
        services.user_deactivate(user=user)
        user.refresh_from_db()
        if outcome == "unchanged":
            outcome = "updated"
    return user, outcome


def person_disable(*, external_id: Any) -> User:
    """Disable the person removed upstream (history kept; idempotent). Raises
    ``ServiceError("not_found")`` for an unknown external id."""
    external_id = _external_id(external_id)
    user = User.objects.filter(external_id=external_id, deleted_at__isnull=True).first()
    if user is None:
        raise ServiceError("not_found", _("No person has this external id."))
    return services.user_deactivate(user=user)


@transaction.atomic
def department_upsert(
    *, external_id: Any, name: Any, parent_external_id: Any = None
) -> tuple[Department, str]:
    """Create, rename or move the department with ``external_id``: under the department
    with ``parent_external_id`` (which must exist), or at the root when None. Returns
    ``(department, "created" | "updated" | "unchanged")``. Raises ``ServiceError("invalid")``
    for a bad name or id, an unknown parent, or a move under itself."""
    external_id = _external_id(external_id)
    parent = None
    if parent_external_id is not None:
        parent_id = _external_id(parent_external_id, "parent")
        parent = Department.objects.filter(external_id=parent_id).first()
        if parent is None:
            raise ServiceError("invalid", _("No department has this external id."), field="parent")
    department = Department.objects.filter(external_id=external_id).first()
    if department is None:
        department = services.department_create(name=name, parent=parent)
        Department.objects.filter(pk=department.pk).update(external_id=external_id)
        department.external_id = external_id
        return department, "created"
    outcome = "unchanged"
    current_parent = Department.objects.get_parent(department)
    if (current_parent.pk if current_parent else None) != (parent.pk if parent else None):
        department = services.department_move(department=department, parent=parent)
        outcome = "updated"
    clean = services.department_name(name)
    if department.name != clean:
        department.name = clean
        department.save(update_fields=["name"])
        outcome = "updated"
    return department, outcome


# --- files -----------------------------------------------------------------------------------


def _row_data(values: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    data: dict[str, Any] = {k: values[k] for k in _FIELDS[1:-2] if values.get(k)}
    role = values.get("role", "").lower()
    if role:
        data["role"] = role
    active = values.get("active")
    if active is not None:
        if active.lower() in _TRUE:
            data["active"] = True
        elif active.lower() in _FALSE:
            data["active"] = False
        else:
            raise ServiceError("invalid", _("active is yes or no."), field="active")
    paths = [p.strip() for p in values.get("departments", "").split(";") if p.strip()]
    return data, paths


def directory_import(
    *,
    rows: Iterable[tuple[int, dict[str, str]]],
    dry_run: bool,
    disable_missing: bool = True,
    actor: User | None = None,
) -> Report:
    """Apply a table from :func:`read_table`: each row upserts a person
    (:func:`person_upsert`, departments by path, made when missing); with ``disable_missing``
    every synced person (one with an external id) not in the table is disabled. A bad row is
    reported with its line and skipped; the others go on. ``dry_run``: everything is checked
    and counted the same way, then rolled back (nobody is disabled).

    Writes a ``directory_import`` audit entry (not in a dry run). Returns the :class:`Report`."""

    def apply(report: Report) -> set[str] | None:
        seen = _apply(rows, report)
        return seen if disable_missing else None

    return directory_run(apply=apply, dry_run=dry_run, actor=actor, source="file")


def directory_run(
    *,
    apply: Callable[[Report], set[str] | None],
    dry_run: bool,
    actor: User | None = None,
    source: str,
) -> Report:
    """The frame of every full sync (a file here, an LDAP directory in :mod:`org.ldap_sync`):
    one transaction in which ``apply(report)`` upserts (each row through :func:`row_apply`)
    and returns the external ids it saw — every synced person missing from them is then
    disabled — or None to disable nobody. ``dry_run``: rolled back at the end. Otherwise a
    ``directory_import`` audit entry with the counts and ``source`` (``"file"``,
    ``"ldap"``). Returns the :class:`Report`."""
    report = Report(dry_run=dry_run)
    try:
        with transaction.atomic():
            seen = apply(report)
            if seen is not None:
                _disable_missing(seen, report, dry_run=dry_run)
            if dry_run:
                raise _DryRunRollbackError
            audit.audit_record(
                actor=actor,
                action=audit.DIRECTORY_IMPORT,
                target=User,
                data={
                    "source": source,
                    "created": len(report.created),
                    "updated": len(report.updated),
                    "disabled": len(report.disabled),
                    "errors": len(report.errors),
                },
            )
    except _DryRunRollbackError:
        pass
    return report


def row_apply(
    report: Report,
    seen: dict[str, int],
    *,
    line: int,
    external_id: str,
    build: Callable[[], tuple[dict[str, Any], list[Department] | None]],
    label: str = "",
) -> User | None:
    """Upsert one person in a savepoint: ``build()`` returns ``(data, departments)`` for
    :func:`person_upsert` (it may make departments; it runs inside the savepoint and may raise
    ``ServiceError``). The outcome goes into ``report`` (``errors`` as ``(line, label +
    message)``; a second row with an external id already in ``seen`` is an error) and ``seen``
    records the id with its line — a failed row counts as present, so it is not disabled.
    Returns the person, or None when the row failed."""
    if external_id in seen:
        report.errors.append(
            (
                line,
                label
                + _("external id %(id)s is also on line %(line)d.")
                % {"id": external_id, "line": seen[external_id]},
            )
        )
        return None
    try:
        with transaction.atomic():
            data, departments = build()
            user, outcome = person_upsert(
                external_id=external_id, data=data, departments=departments
            )
    except ServiceError as exc:
        field_label = f"{exc.field}: " if exc.field else ""
        report.errors.append((line, f"{label}{field_label}{exc.message}"))
        if external_id:
            seen[external_id] = line  # a failed row is still "present": not disabled
        return None
    seen[external_id] = line
    getattr(report, outcome).append(external_id)
    return user


def _apply(rows: Iterable[tuple[int, dict[str, str]]], report: Report) -> set[str]:
    seen: dict[str, int] = {}
    for line, values in rows:

        def build(values: dict[str, str] = values) -> tuple[dict[str, Any], list | None]:
            data, paths = _row_data(values)
            departments = [path_department(p) for p in paths] if "departments" in values else None
            return data, departments

        row_apply(report, seen, line=line, external_id=values.get("external_id", ""), build=build)
    return set(seen)


def _disable_missing(seen: set[str], report: Report, *, dry_run: bool) -> None:
    missing = (
        User.objects.filter(external_id__isnull=False, is_active=True, deleted_at__isnull=True)
        .exclude(external_id__in=list(seen))
        .order_by("external_id")
    )
    for user in missing:
        report.disabled.append(user.external_id or "")
        if not dry_run:
            services.user_deactivate(user=user)
