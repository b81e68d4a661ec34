"""Directory sync from LDAP / Active Directory (ORG-5, org.ldap_sync) against a real LDAP server
(ldaptor, tests/ldap_server.py) on a loopback port the platform allows: people and departments
created, changed, disabled when removed upstream and enabled when back; the dry run; a refused
bind reported clearly; paged searches; the back office page, the command and the schedule."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_tenants.utils import schema_context

from org import ldap_sync
from org.models import Department, DepartmentMember, LdapDirectory, User
from tests.conftest import agent_client, unique
from tests.ldap_server import LdapServer
from tests.servers import celery_worker_start
from tests.waits import wait_until
from weiyu.celery import app

BASE = "dc=example,dc=org"
STAFF = f"ou=staff,{BASE}"
BIND_DN = f"cn=sync,{BASE}"
BIND_PASSWORD = secrets.token_hex(8)


def _ldif(people: list[dict], departments: list[dict]) -> str:
    """A tree: the root, the bind account, ``ou=staff`` and below it the departments (each
    ``{"ou", "uuid", "parent": ou or None}``) and the people (``{"uid", "uuid", "cn", "mail",
    "ou": department ou or None, ...}``), parents first."""
    blocks = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {BIND_DN}\nobjectClass: person\ncn: sync\nsn: sync\nuserPassword: {BIND_PASSWORD}",
        f"dn: {STAFF}\nobjectClass: organizationalUnit\nou: staff\nentryUUID: staff-root",
    ]
    dns = {}
    for dept in departments:
        parent = dns[dept["parent"]] if dept.get("parent") else STAFF
        dns[dept["ou"]] = f"ou={dept['ou']},{parent}"
        blocks.append(
            f"dn: {dns[dept['ou']]}\nobjectClass: organizationalUnit\nou: {dept['ou']}\n"
            f"entryUUID: {dept['uuid']}"
        )
    for person in people:
        parent = dns[person["ou"]] if person.get("ou") else STAFF
        lines = [
            f"dn: uid={person['uid']},{parent}",
            "objectClass: inetOrgPerson",
            f"uid: {person['uid']}",
            f"cn: {person['cn']}",
            "sn: x",
            f"entryUUID: {person['uuid']}",
        ]
        lines += [
            f"{attr}: {person[attr]}" for attr in ("mail", "title", "department") if attr in person
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


@pytest.fixture(scope="module")
def ldap_server(tmp_path_factory):
    """A real LDAP server for the module (its tree rewritten by each test)."""
    server = LdapServer(tmp_path_factory.mktemp("ldap") / "tree.ldif", _ldif([], []))
    yield server
    server.stop()


@pytest.fixture
def directory(ldap_server, settings):
    """acme's LDAP settings pointing at the server, which the platform allows."""
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{ldap_server.port}"
    with schema_context("acme"):
        row = LdapDirectory.objects.order_by("pk").first() or LdapDirectory()
        for name, value in {
            "server_url": ldap_server.url,
            "start_tls": False,
            "bind_dn": BIND_DN,
            "bind_password": BIND_PASSWORD,
            "people_base_dn": STAFF,
            "people_filter": "(objectClass=inetOrgPerson)",
            "departments_base_dn": STAFF,
            "departments_filter": "(objectClass=organizationalUnit)",
            "attr_department": "department",
            "enabled": False,
            "page_size": 500,
            "last_sync_at": None,
        }.items():
            setattr(row, name, value)
        row.save()
    return row


def _sync(row: LdapDirectory, *, dry_run: bool):
    with schema_context("acme"):
        return ldap_sync.ldap_sync(row=LdapDirectory.objects.get(pk=row.pk), dry_run=dry_run)


def _org(p: str) -> tuple[list[dict], list[dict]]:
    """Two departments (Sales > East) and three people: one in East, one in Sales, one
    directly under the base with a department path attribute."""
    departments = [
        {"ou": f"{p}Sales", "uuid": f"{p}-d-sales"},
        {"ou": f"{p}East", "uuid": f"{p}-d-east", "parent": f"{p}Sales"},
    ]
    people = [
        {"uid": f"{p}li", "uuid": f"{p}-li", "cn": "Li Lei", "mail": f"{p}li@example.org",
         "title": "Engineer", "ou": f"{p}East"},
        {"uid": f"{p}han", "uuid": f"{p}-han", "cn": "Han Meimei", "mail": f"{p}han@example.org",
         "ou": f"{p}Sales"},
        {"uid": f"{p}zhao", "uuid": f"{p}-zhao", "cn": "Zhao Wei",
         "department": f"{p}Legal/Contracts"},
    ]  # fmt: skip
    return people, departments


def test_the_first_sync_creates_people_and_departments_as_in_the_tree(ldap_server, directory):
    # given a directory with departments Sales > East and three people
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))

    # when the tenant syncs
    report = _sync(directory, dry_run=False)

    # then everyone is created, no errors, and the departments are nested as upstream
    assert report.errors == []
    assert sorted(report.created) == sorted([f"{p}-li", f"{p}-han", f"{p}-zhao"])
    with schema_context("acme"):
        sales = Department.objects.get(external_id=f"{p}-d-sales")
        east = Department.objects.get(external_id=f"{p}-d-east")
        assert (sales.name, east.name) == (f"{p}Sales", f"{p}East")
        assert Department.objects.get_parent(east) == sales
        li = User.objects.get(external_id=f"{p}-li")
        assert (li.username, li.email, li.display_name, li.title) == (
            f"{p}li", f"{p}li@example.org", "Li Lei", "Engineer",
        )  # fmt: skip
        assert li.is_active
        assert not li.has_usable_password()
        membership = DepartmentMember.objects.get(user=li)
        assert (membership.department, membership.is_primary) == (east, True)
        han = User.objects.get(external_id=f"{p}-han")
        assert [m.department for m in DepartmentMember.objects.filter(user=han)] == [sales]
        # no department entry above Zhao: his department attribute is a path
        zhao = User.objects.get(external_id=f"{p}-zhao")
        contracts = DepartmentMember.objects.get(user=zhao).department
        assert contracts.name == "Contracts"
        assert Department.objects.get_parent(contracts).name == f"{p}Legal"
        row = LdapDirectory.objects.get(pk=directory.pk)
        assert row.last_sync_at is not None
        assert sorted(row.last_report["created"]) == sorted(report.created)

    # and the same directory again changes nothing
    again = _sync(directory, dry_run=False)
    assert (again.created, again.updated, again.disabled) == ([], [], [])
    assert sorted(again.unchanged) == sorted(report.created)


def test_changes_upstream_update_removals_disable_and_a_dry_run_changes_nothing(
    ldap_server, directory
):
    # given a synced directory
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    assert _sync(directory, dry_run=False).errors == []

    # when Li is renamed and moves to Sales, and Han leaves
    people[0].update(cn="Li Lei-Wang", ou=f"{p}Sales")
    changed = [people[0], people[2]]
    ldap_server.write(_ldif(changed, departments))

    # then a dry run reports it all and changes nothing
    dry = _sync(directory, dry_run=True)
    assert dry.dry_run
    assert dry.errors == []
    assert dry.updated == [f"{p}-li"]
    assert f"{p}-han" in dry.disabled
    with schema_context("acme"):
        li = User.objects.get(external_id=f"{p}-li")
        assert li.display_name == "Li Lei"
        assert DepartmentMember.objects.get(user=li).department.external_id == f"{p}-d-east"
        assert User.objects.get(external_id=f"{p}-han").is_active

    # and the real sync does it: Li updated and moved, Han disabled with the account kept
    real = _sync(directory, dry_run=False)
    assert real.updated == [f"{p}-li"]
    assert f"{p}-han" in real.disabled
    with schema_context("acme"):
        li = User.objects.get(external_id=f"{p}-li")
        assert li.display_name == "Li Lei-Wang"
        assert DepartmentMember.objects.get(user=li).department.external_id == f"{p}-d-sales"
        han = User.objects.get(external_id=f"{p}-han")
        assert not han.is_active
        assert han.deleted_at is None

    # when Han comes back upstream, the next sync enables the same account
    ldap_server.write(_ldif(people, departments))
    back = _sync(directory, dry_run=False)
    assert back.updated == [f"{p}-han"]
    with schema_context("acme"):
        assert User.objects.get(pk=han.pk).is_active


def test_a_bad_entry_is_reported_by_its_dn_and_the_others_go_on(ldap_server, directory):
    # given one person with an e-mail that is not one
    p = unique("ld")
    people, departments = _org(p)
    people[1]["mail"] = "not-an-address"
    ldap_server.write(_ldif(people, departments))

    report = _sync(directory, dry_run=False)

    # then that entry is an error naming its DN and field; the others are created
    assert sorted(report.created) == sorted([f"{p}-li", f"{p}-zhao"])
    [(line, message)] = report.errors
    assert line > 0
    assert message.startswith(f"uid={p}han,ou={p}Sales,{STAFF}: email: ")


def test_a_refused_bind_is_a_clear_error_and_changes_nothing(ldap_server, directory):
    # given a synced person and then a wrong bind password
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    assert _sync(directory, dry_run=False).errors == []
    with schema_context("acme"):
        row = LdapDirectory.objects.get(pk=directory.pk)
        row.bind_password = "wrong-" + BIND_PASSWORD
        row.save()
    ldap_server.write(_ldif([], departments))  # everyone gone upstream

    # when it syncs
    report = _sync(directory, dry_run=False)

    # then the report says the bind was refused, and nobody was disabled
    assert report.created == report.updated == report.disabled == []
    [(line, message)] = report.errors
    assert line == 0
    assert "invalidCredentials" in message
    assert "bind DN and password" in message
    with schema_context("acme"):
        assert User.objects.get(external_id=f"{p}-li").is_active
        assert LdapDirectory.objects.get(pk=directory.pk).last_report["errors"][0]["line"] == 0

    # and the command fails with the same reason
    with pytest.raises(CommandError, match="invalidCredentials"):
        call_command("directory_ldap_sync", "--tenant", "acme")


def test_an_empty_result_disables_nobody(ldap_server, directory):
    # given a synced person, then a filter that matches nobody
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    assert _sync(directory, dry_run=False).errors == []
    with schema_context("acme"):
        LdapDirectory.objects.filter(pk=directory.pk).update(people_filter="(uid=nobody)")

    report = _sync(directory, dry_run=False)

    assert report.disabled == []
    assert report.errors[0][0] == 0
    assert "no people" in report.errors[0][1]
    with schema_context("acme"):
        assert User.objects.get(external_id=f"{p}-li").is_active


def test_a_loopback_server_is_refused_unless_the_platform_allows_it(
    ldap_server, directory, settings
):
    # given the platform does not allow the loopback server
    settings.WEIYU_OUTBOUND_ALLOW = ""

    report = _sync(directory, dry_run=True)

    # then nothing is read and the report says why
    [(line, message)] = report.errors
    assert line == 0
    assert "WEIYU_OUTBOUND_ALLOW" in message


def test_large_directories_are_read_page_by_page(tmp_path, directory, settings):
    # given a server that, like Active Directory, sends at most 3 entries without paging
    p = unique("ld")
    people = [
        {"uid": f"{p}u{i}", "uuid": f"{p}-u{i}", "cn": f"User {i}", "mail": f"{p}u{i}@ex.org"}
        for i in range(7)
    ]
    server = LdapServer(tmp_path / "big.ldif", _ldif(people, []), max_page=3)
    try:
        settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{server.port}"
        with schema_context("acme"):
            LdapDirectory.objects.filter(pk=directory.pk).update(
                server_url=server.url, page_size=2, departments_base_dn=""
            )

        # when it syncs with pages of 2
        report = _sync(directory, dry_run=True)

        # then all seven are read, over four pages
        assert report.errors == []
        assert sorted(report.created) == sorted(person["uuid"] for person in people)
        assert server.pages() == 4
    finally:
        server.stop()


def test_the_admin_saves_tests_and_syncs_from_the_back_office(ldap_server, directory, settings):
    # given the tenant admin on Organisation → LDAP directory
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    with schema_context("acme"):
        bob = User.objects.get(username="bob")
    client = agent_client(bob)
    url = f"/admin/org/ldapdirectory/{directory.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert "Test connection" in page.content.decode()
    assert BIND_PASSWORD not in page.content.decode()
    assert "测试连接" in agent_client(bob, language="zh-hans").get(url).content.decode()
    form = {
        "server_url": ldap_server.url,
        "ca_certificate": "",
        "bind_dn": BIND_DN,
        "bind_password": "",
        "people_base_dn": STAFF,
        "people_filter": "(objectClass=inetOrgPerson)",
        "departments_base_dn": STAFF,
        "departments_filter": "(objectClass=organizationalUnit)",
        "attr_external_id": "entryUUID",
        "attr_username": "uid",
        "attr_name": "cn",
        "attr_email": "mail",
        "attr_title": "title",
        "attr_phone": "telephoneNumber",
        "attr_department": "department",
        "attr_department_name": "ou",
        "interval_minutes": "60",
        "page_size": "500",
    }

    # when they save a filter without parentheses, or a server the platform does not allow
    bad_filter = client.post(url, {**form, "people_filter": "objectClass=person"})
    settings.WEIYU_OUTBOUND_ALLOW = ""
    refused = client.post(url, form)
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{ldap_server.port}"

    # then the form says why
    assert bad_filter.status_code == 200
    assert "An LDAP filter in parentheses" in (bad_filter.content.decode())
    assert refused.status_code == 200
    assert "WEIYU_OUTBOUND_ALLOW" in refused.content.decode()

    # when they save with the password left empty: the stored one is kept
    saved = client.post(url, {**form, "enabled": "on", "interval_minutes": "30"})
    assert saved.status_code == 302
    with schema_context("acme"):
        row = LdapDirectory.objects.get(pk=directory.pk)
        assert (row.enabled, row.interval_minutes, row.bind_password) == (
            True, 30, BIND_PASSWORD,
        )  # fmt: skip

    # and press Test connection, Sync now (dry run), Sync now
    run = f"/admin/org/ldapdirectory/{directory.pk}/run/"
    tested = client.post(run, {"action": "test"}).content.decode()
    assert "Connected: 3 people and 2 departments found." in tested
    dry = client.post(run, {"action": "dry_run"}).content.decode()
    assert "Dry run: nothing was changed" in dry
    assert "3 created" in dry
    with schema_context("acme"):
        assert not User.objects.filter(external_id=f"{p}-li").exists()
    real = client.post(run, {"action": "sync"}).content.decode()
    assert "Synced" in real
    assert "3 created" in real
    assert "3 created, 0 updated" in client.get(url).content.decode()  # the last report
    with schema_context("acme"):
        assert User.objects.filter(external_id=f"{p}-li", is_active=True).exists()

    # a refused bind shows on the page, by entry "—"
    with schema_context("acme"):
        row = LdapDirectory.objects.get(pk=directory.pk)
        row.bind_password = "wrong"
        row.save()
    failed = client.post(run, {"action": "sync"}).content.decode()
    assert "invalidCredentials" in failed
    assert client.post(run, {"action": "test"}).content.decode().count("invalidCredentials") == 1
    assert client.get(run).status_code == 405


def test_the_schedule_syncs_enabled_directories_when_due(ldap_server, directory):
    # given an enabled directory never synced
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    with schema_context("acme"):
        LdapDirectory.objects.filter(pk=directory.pk).update(enabled=True, interval_minutes=60)

    # when the tenant's task runs, it syncs; run again at once, it is not due
    first = ldap_sync.ldap_sync_task("acme")
    assert first is not None
    assert f"{p}-li" in first["created"]
    assert ldap_sync.ldap_sync_task("acme") is None

    # when the interval has passed, it is due again
    with schema_context("acme"):
        LdapDirectory.objects.filter(pk=directory.pk).update(
            last_sync_at=timezone.now() - dt.timedelta(minutes=61)
        )
    again = ldap_sync.ldap_sync_task("acme")
    assert again is not None
    assert f"{p}-li" in again["unchanged"]

    # and a disabled directory is never synced
    with schema_context("acme"):
        LdapDirectory.objects.filter(pk=directory.pk).update(enabled=False, last_sync_at=None)
    assert ldap_sync.ldap_sync_task("acme") is None


def test_the_command_syncs_and_dry_runs(ldap_server, directory, capsys):
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))

    call_command("directory_ldap_sync", "--tenant", "acme", "--dry-run")
    assert "Dry run: would have created 3" in capsys.readouterr().out
    with schema_context("acme"):
        assert not User.objects.filter(external_id=f"{p}-li").exists()

    call_command("directory_ldap_sync", "--tenant", "acme")
    assert "created 3" in capsys.readouterr().out
    with schema_context("acme"):
        assert User.objects.filter(external_id=f"{p}-li").exists()

    with pytest.raises(CommandError, match="No tenant"):
        call_command("directory_ldap_sync", "--tenant", "nosuch")


def _certificates(tmp_path, host: str) -> tuple[str, tuple]:
    """A private CA (its PEM) and a server key and certificate for ``host`` signed by it
    (their files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject, key, issuer, issuer_key, *, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("Test CA", ca_key, "Test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(host, key, "Test CA", ca_key, ca=False, san=host)
    key_file, cert_file = tmp_path / "server.key", tmp_path / "server.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return ca.public_bytes(serialization.Encoding.PEM).decode(), (key_file, cert_file)


def test_ldaps_checks_the_certificate_and_the_host_name(tmp_path, directory, settings):
    # given an LDAPS server whose certificate, for "localhost", a private CA signed
    p = unique("ld")
    people, departments = _org(p)
    ca_pem, tls = _certificates(tmp_path, "localhost")
    server = LdapServer(tmp_path / "tls.ldif", _ldif(people, departments), tls=tls)
    try:
        settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{server.port}"

        def sync_with(url: str, ca: str):
            with schema_context("acme"):
                LdapDirectory.objects.filter(pk=directory.pk).update(
                    server_url=url, ca_certificate=ca
                )
            return _sync(directory, dry_run=True)

        # when the settings name the host on its certificate and trust the CA, it works
        good = sync_with(f"ldaps://localhost:{server.port}", ca_pem)
        assert good.errors == []
        assert len(good.created) == 3

        # without that CA the certificate is refused
        [(line, untrusted)] = sync_with(f"ldaps://localhost:{server.port}", "").errors
        assert line == 0
        assert "certificate verify failed" in untrusted

        # and by address (not the name the certificate is for) the host name check fails
        [(line, mismatch)] = sync_with(f"ldaps://127.0.0.1:{server.port}", ca_pem).errors
        assert line == 0
        assert mismatch.endswith("the server's certificate is not for 127.0.0.1")
    finally:
        server.stop()


def test_starttls_upgrades_a_plain_connection_and_is_required_when_asked_for(
    tmp_path, ldap_server, directory, settings
):
    # given a plain LDAP server offering StartTLS with a certificate for "localhost"
    p = unique("ld")
    people, departments = _org(p)
    ca_pem, tls = _certificates(tmp_path, "localhost")
    server = LdapServer(tmp_path / "st.ldif", _ldif(people, departments), tls=tls, starttls=True)
    try:
        settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{server.port},127.0.0.1:{ldap_server.port}"
        with schema_context("acme"):
            LdapDirectory.objects.filter(pk=directory.pk).update(
                server_url=f"ldap://localhost:{server.port}", start_tls=True, ca_certificate=ca_pem
            )

        # when it syncs with StartTLS on (the default), the connection is upgraded and works
        report = _sync(directory, dry_run=True)
        assert report.errors == []
        assert len(report.created) == 3

        # and a server that does not offer StartTLS is refused rather than used in the clear
        with schema_context("acme"):
            LdapDirectory.objects.filter(pk=directory.pk).update(
                server_url=f"ldap://localhost:{ldap_server.port}"
            )
        [(line, message)] = _sync(directory, dry_run=True).errors
        assert line == 0
        assert message == "The server refused StartTLS (protocolError)."
    finally:
        server.stop()


def test_an_active_directory_guid_reads_as_the_guid_shown_there():
    guid = uuid.uuid4()
    entry = ldap_sync.Entry(dn="CN=x", values={"objectguid": [guid.bytes_le]})
    assert entry.text("objectGUID") == str(guid)
    assert entry.text("missing") == ""


def test_the_beat_has_a_worker_sync_a_due_directory(ldap_server, directory):
    # given an enabled directory never synced, and a worker with its beat
    p = unique("ld")
    people, departments = _org(p)
    ldap_server.write(_ldif(people, departments))
    with schema_context("acme"):
        LdapDirectory.objects.filter(pk=directory.pk).update(enabled=True, interval_minutes=15)
    queue = unique("ldapbeat")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="ldap", concurrency=1, beat=True, WEIYU_LDAP_SCAN_S="1",
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{ldap_server.port}", KEFU_TIMER_INTERVAL_S="60",
        SLA_SCAN_INTERVAL_S="60", WEIYU_SEMANTIC="off",
    )  # fmt: skip
    try:

        def reported():
            with schema_context("acme"):
                report = LdapDirectory.objects.get(pk=directory.pk).last_report
            return f"{p}-li" in report.get("created", [])

        # then the sync runs without anyone pressing a button: the report is kept and the
        # people are there
        wait_until(reported, what="the scheduled LDAP sync's report")
        with schema_context("acme"):
            assert User.objects.filter(external_id=f"{p}-li", is_active=True).exists()
            assert LdapDirectory.objects.get(pk=directory.pk).last_sync_at is not None
    finally:
        worker.stop()
        app.conf.task_default_queue = previous
        with schema_context("acme"):
            LdapDirectory.objects.filter(pk=directory.pk).update(enabled=False)
