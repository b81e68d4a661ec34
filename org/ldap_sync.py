"""Directory sync from LDAP / Active Directory (ORG-5; docs/operations.md, "Directory sync"):
the tenant's :class:`org.models.LdapDirectory` read with ldap3 (pure Python) and applied with
the rules of :mod:`org.directory` — people upserted by external id, departments by external id
and nested as in the tree, people missing upstream disabled (history kept), people who come
back enabled, and the same :class:`org.directory.Report`.

Reading comes first and changes nothing: a connection, TLS, bind or search failure gives a
report whose one error (line 0) says why, and nobody is touched. A directory that returns no
people disables nobody either (a wrong base DN or filter must not empty the organisation).

The server is the tenant's choice, so the connection obeys the outgoing-request rules of
:mod:`weiyu.outbound`: every address the host resolves to must be public unless its
``ip:port`` is in ``WEIYU_OUTBOUND_ALLOW``, and the socket connects to an address that was
checked; TLS (``ldaps://`` or StartTLS) verifies the certificate and the URL's host name.

Searches are paged (RFC 2696, ``page_size`` entries a page), as Active Directory requires for
more than 1000 entries; at most :data:`org.directory.MAX_ROWS` people are read.

Runs: the back office (Organisation → LDAP directory: Test connection, Sync now, dry run),
``manage.py directory_ldap_sync --tenant <schema> [--dry-run]``, and the beat task
:func:`ldap_sync_due_all_task` for the rows with ``enabled``, every ``interval_minutes``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ldap3
from celery import shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.dn import parse_dn

from org import directory
from org.models import Department, LdapDirectory, User
from tenants import fanout
from weiyu import outbound
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: seconds to connect, and to wait for each answer of the server
TIMEOUT_S = 30
_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}


# --- connecting ------------------------------------------------------------------------------


def server_parts(url: object) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``ldap://host[:port]`` or ``ldaps://host[:port]`` (no path,
    user or query). Raises ``ServiceError("invalid", field="server_url")``."""
    text = str(url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ServiceError("invalid", _("Use an ldap:// or ldaps:// address."), field="server_url")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        port = 0
    if (
        not parts.hostname
        or not port
        or parts.username
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ServiceError(
            "invalid",
            _("The address is ldap://host or ldaps://host, with an optional :port."),
            field="server_url",
        )
    return parts.scheme, parts.hostname, port


def server_check(url: object) -> list[str]:
    """The checked addresses of the server at ``url`` (:func:`server_parts`; resolved now,
    public or allow-listed only). Raises ``ServiceError("invalid", field="server_url")`` with
    the reason."""
    _scheme, host, port = server_parts(url)
    try:
        return outbound.checked_addresses(host, port)
    except outbound.OutboundRefusedError as exc:
        raise ServiceError("invalid", str(exc), field="server_url") from None


class _GuardedServer(ldap3.Server):
    """An ldap3 server that connects only to the addresses given (checked beforehand) while
    keeping the URL's host name for TLS."""

    def __init__(self, *args: Any, addresses: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address_info = [
            [*info, None, None]
            for address in addresses
            for info in socket.getaddrinfo(
                address, self.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        ]

    @property
    def address_info(self) -> list[list[Any]]:
        return self._address_info


def _failure(exc: Exception, host: str = "") -> str:
    """The reason of an ldap3 error, short enough for a report; a certificate for another host
    said in words (ldap3 prints the whole certificate)."""
    text = str(exc).strip() or type(exc).__name__
    if "doesn't match any name" in text:
        return _("the server's certificate is not for %(host)s") % {"host": host}
    return text[:300]


def connect(row: LdapDirectory) -> ldap3.Connection:
    """An open, bound, read-only connection to the tenant's directory. Raises
    ``ServiceError("invalid", field="server_url")`` for a refused address and
    ``ServiceError("unavailable")`` with a message for the admin when the server cannot be
    reached, TLS fails, or the bind is refused (the server's result code named)."""
    scheme, host, port = server_parts(row.server_url)
    addresses = server_check(row.server_url)
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        ca_certs_data=row.ca_certificate.strip() or None,
        sni=host,
    )
    server = _GuardedServer(
        host,
        port=port,
        use_ssl=scheme == "ldaps",
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=TIMEOUT_S,
        addresses=addresses,
    )
    conn = ldap3.Connection(
        server,
        user=row.bind_dn or None,
        password=row.bind_password or None,
        authentication=ldap3.SIMPLE if row.bind_dn else ldap3.ANONYMOUS,
        receive_timeout=TIMEOUT_S,
        read_only=True,
        raise_exceptions=False,
        auto_referrals=False,
    )
    try:
        conn.open()
        if scheme == "ldap" and row.start_tls and not _start_tls(conn):
            raise ServiceError(
                "unavailable",
                _("The server refused StartTLS (%(result)s).")
                % {"result": (conn.result or {}).get("description", "")},
            )
        if not conn.bind():
            result = conn.result or {}
            raise ServiceError(
                "unavailable",
                _("The directory refused the bind (%(result)s): check the bind DN and password.")
                % {"result": result.get("description") or result.get("result", "")},
            )
    except LDAPException as exc:
        _close(conn)
        raise ServiceError(
            "unavailable",
            _("Cannot connect to the directory at %(url)s: %(error)s")
            % {"url": row.server_url, "error": _failure(exc, host)},
        ) from None
    except ServiceError:
        _close(conn)
        raise
    return conn


def _start_tls(conn: ldap3.Connection) -> bool:
    """Whether the server accepted StartTLS (the connection is then TLS, certificate and host
    name checked); a TLS failure after acceptance raises ``LDAPException``."""
    try:
        return bool(conn.start_tls())
    except LDAPStartTLSError as exc:
        if str(exc).startswith("startTLS failed - "):  # the server answered no
            return False
        raise


def _close(conn: ldap3.Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Entry:
    """One entry read: its DN (as the server wrote it) and its attributes' raw values by
    lower-case name."""

    dn: str
    values: dict[str, list[bytes]]

    def text(self, attr: str) -> str:
        """The first value of ``attr`` as text ('' when absent or ``attr`` is empty):
        ``objectGUID`` (16 bytes) as the GUID Active Directory shows, other binary values as
        hex."""
        if not attr:
            return ""
        raw = self.values.get(attr.lower()) or []
        if not raw:
            return ""
        value = raw[0]
        if attr.lower() == "objectguid" and len(value) == 16:
            return str(uuid.UUID(bytes_le=value))
        try:
            return value.decode("utf-8").strip()
        except UnicodeDecodeError:
            return value.hex()


@dataclass
class Snapshot:
    """What the directory holds now: department entries and people (in the order read)."""

    departments: list[Entry] = field(default_factory=list)
    people: list[Entry] = field(default_factory=list)


def _dn_key(dn: str) -> tuple[str, ...]:
    """A DN as a tuple of normalised RDNs, leaf first (``OU=Sales, DC=x`` → ``("ou=sales",
    "dc=x")``) for ancestor tests."""
    return tuple(
        f"{attr.strip().lower()}={value.strip().lower()}"
        for attr, value, _sep in parse_dn(dn, escape=False, strip=True)
    )


def _search(
    conn: ldap3.Connection, *, base: str, search_filter: str, attributes: list[str], row
) -> list[Entry]:
    entries: list[Entry] = []
    results = conn.extend.standard.paged_search(
        search_base=base,
        search_filter=search_filter,
        search_scope=ldap3.SUBTREE,
        attributes=[a for a in attributes if a],
        paged_size=row.page_size,
        generator=True,
    )
    try:
        for item in results:
            if item.get("type") != "searchResEntry":
                continue  # referrals and the like
            entries.append(
                Entry(
                    dn=item["dn"],
                    values={k.lower(): list(v) for k, v in item["raw_attributes"].items()},
                )
            )
            if len(entries) > directory.MAX_ROWS:
                raise ServiceError(
                    "invalid",
                    _("The search under %(base)s found more than %(n)d entries.")
                    % {"base": base, "n": directory.MAX_ROWS},
                )
    except LDAPException as exc:
        raise ServiceError(
            "unavailable",
            _("The search under %(base)s failed: %(error)s")
            % {"base": base, "error": _failure(exc)},
        ) from None
    result = conn.result or {}
    if result.get("result", 0) != 0:
        raise ServiceError(
            "unavailable",
            _("The search under %(base)s failed (%(result)s %(message)s).")
            % {
                "base": base,
                "result": result.get("description", result.get("result")),
                "message": result.get("message", ""),
            },
        )
    return entries


def directory_read(row: LdapDirectory) -> Snapshot:
    """Connect (:func:`connect`), read the departments (when ``departments_base_dn`` is set;
    the base entry itself left out) and the people, and disconnect. Changes nothing. Raises
    ``ServiceError`` (``"invalid"``/``"unavailable"``) with the reason."""
    conn = connect(row)
    try:
        snapshot = Snapshot()
        if row.departments_base_dn:
            found = _search(
                conn,
                base=row.departments_base_dn,
                search_filter=row.departments_filter,
                attributes=[row.attr_external_id, row.attr_department_name],
                row=row,
            )
            base = _dn_key(row.departments_base_dn)
            snapshot.departments = [e for e in found if _dn_key(e.dn) != base]
        snapshot.people = _search(
            conn,
            base=row.people_base_dn,
            search_filter=row.people_filter,
            attributes=[
                row.attr_external_id,
                row.attr_username,
                row.attr_name,
                row.attr_email,
                row.attr_title,
                row.attr_phone,
                row.attr_department,
            ],
            row=row,
        )
        return snapshot
    finally:
        _close(conn)


def connection_test(row: LdapDirectory) -> str:
    """Read the directory as a sync would (:func:`directory_read`) and say what was found:
    ``"Connected: 12 people and 3 departments found."``. Raises ``ServiceError`` with the
    reason."""
    snapshot = directory_read(row)
    return _("Connected: %(people)d people and %(departments)d departments found.") % {
        "people": len(snapshot.people),
        "departments": len(snapshot.departments),
    }


# --- applying --------------------------------------------------------------------------------


def _label(entry: Entry) -> str:
    return f"{entry.dn}: "


def _nearest(dn: str, departments: dict[tuple[str, ...], Department]) -> Department | None:
    """The department whose entry is the nearest ancestor of ``dn``."""
    key = _dn_key(dn)
    for depth in range(1, len(key)):
        found = departments.get(key[depth:])
        if found is not None:
            return found
    return None


def _apply(row: LdapDirectory, snapshot: Snapshot, report: directory.Report) -> set[str] | None:
    line = 0
    by_dn: dict[tuple[str, ...], Department] = {}
    for entry in sorted(snapshot.departments, key=lambda e: len(_dn_key(e.dn))):
        line += 1
        key = _dn_key(entry.dn)
        parent = _nearest(entry.dn, by_dn)
        name = entry.text(row.attr_department_name) or entry.dn.split(",", 1)[0].split("=", 1)[-1]
        try:
            with transaction.atomic():
                department, _outcome = directory.department_upsert(
                    external_id=entry.text(row.attr_external_id),
                    name=name,
                    parent_external_id=parent.external_id if parent else None,
                )
        except ServiceError as exc:
            field_label = f"{exc.field}: " if exc.field else ""
            report.errors.append((line, f"{_label(entry)}{field_label}{exc.message}"))
            continue
        by_dn[key] = department
    with_departments = bool(row.departments_base_dn or row.attr_department)
    seen: dict[str, int] = {}
    for entry in snapshot.people:
        line += 1

        def build(entry: Entry = entry) -> tuple[dict[str, Any], list[Department] | None]:
            data: dict[str, Any] = {"active": True}
            for key, attr in (
                ("username", row.attr_username),
                ("email", row.attr_email),
                ("name", row.attr_name),
                ("title", row.attr_title),
                ("phone", row.attr_phone),
            ):
                value = entry.text(attr)
                if value:
                    data[key] = value
            if not with_departments:
                return data, None
            department = _nearest(entry.dn, by_dn)
            if department is None and entry.text(row.attr_department):
                department = directory.path_department(entry.text(row.attr_department))
            return data, [department] if department else []

        directory.row_apply(
            report,
            seen,
            line=line,
            external_id=entry.text(row.attr_external_id),
            build=build,
            label=_label(entry),
        )
    if not snapshot.people:
        report.errors.append(
            (0, _("The directory returned no people: nobody was disabled (check the base DN "
                  "and filter)."))
        )  # fmt: skip
        return None
    return set(seen)


def ldap_sync(*, row: LdapDirectory, dry_run: bool, actor: User | None = None) -> directory.Report:
    """Read the directory and apply it (in the current tenant's schema): departments, then
    people, then people missing upstream disabled; ``dry_run`` changes nothing. A failure to
    read gives a report with one error on line 0 and changes nothing. A real sync is in the
    audit log (``directory_import``, source ``ldap``) and its report is kept on the row
    (``last_report``, ``last_sync_at``). Returns the :class:`org.directory.Report`."""
    try:
        snapshot = directory_read(row)
    except ServiceError as exc:
        report = directory.Report(dry_run=dry_run)
        report.errors.append((0, exc.message))
    else:
        report = directory.directory_run(
            apply=lambda report: _apply(row, snapshot, report),
            dry_run=dry_run,
            actor=actor,
            source="ldap",
        )
    if not dry_run:
        now = timezone.now()
        LdapDirectory.objects.filter(pk=row.pk).update(
            last_sync_at=now, last_report={**report.as_dict(), "at": now.isoformat()}
        )
    return report


# --- schedule --------------------------------------------------------------------------------


@shared_task(name="org.tasks.ldap_sync_task")
def ldap_sync_task(schema: str) -> dict[str, Any] | None:
    """Sync one tenant's directory if it is enabled and due (its ``last_sync_at`` is taken first
    with a compare-and-set, so two workers never sync it at once). Returns the report's
    ``as_dict()``, or None when it was not due."""
    with schema_context(schema):
        row = LdapDirectory.objects.filter(enabled=True).order_by("pk").first()
        now = timezone.now()
        if row is None or not _due(row, now):
            return None
        taken = LdapDirectory.objects.filter(pk=row.pk, last_sync_at=row.last_sync_at).update(
            last_sync_at=now
        )
        if not taken:
            return None
        report = ldap_sync(row=row, dry_run=False)
        if report.errors and report.errors[0][0] == 0:
            logger.warning("tenant %s: LDAP sync failed: %s", schema, report.errors[0][1])
        return report.as_dict()


def _due(row: LdapDirectory, now: dt.datetime) -> bool:
    return row.last_sync_at is None or now - row.last_sync_at >= dt.timedelta(
        minutes=row.interval_minutes
    )


@shared_task(name="org.tasks.ldap_sync_due_task")
def ldap_sync_due_task(schema: str) -> bool:
    """Queue :func:`ldap_sync_task` for ``schema`` when its directory sync is enabled and due;
    returns whether it was queued."""
    with schema_context(schema):
        row = LdapDirectory.objects.filter(enabled=True).order_by("pk").first()
        due = row is not None and _due(row, timezone.now())
    if due:
        ldap_sync_task.delay(schema)
    return due


@shared_task(name="org.tasks.ldap_sync_due_all_task")
def ldap_sync_due_all_task() -> int:
    """Beat (every ``WEIYU_LDAP_SCAN_S``, default 300 s): :func:`ldap_sync_due_task` for every
    active tenant, in chunks (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("org.tasks.ldap_sync_due_task")
