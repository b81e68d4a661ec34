"""The audit log (issue 12): who changed or did what, to what, when and from which address, per
tenant; read-only in the back office for the tenant's own admins, searchable and exportable."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from auditlog.models import LogEntry
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import Session, Skill, Workgroup
from kefu.services import messages
from org import audit
from org.models import AuditEntry, User, VisitorLimits
from tests.conftest import (
    PASSWORD,
    agent_client,
    make_desk,
    make_visitor,
    session_cookie,
    unique,
)
from tests.waits import WAIT_S
from tests.ws import receive_until
from weiyu.asgi import application

_addresses = itertools.count(10)


def _address() -> str:
    """A client address of each test's own (sign-in lock-outs by address never spill over)."""
    n = next(_addresses)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def _admin(schema: str = "acme") -> User:
    with schema_context(schema):
        return User.objects.create_user(
            username=unique("boss"),
            password=PASSWORD,
            email="boss@example.com",
            role="admin",
            is_staff=True,
            is_superuser=True,
        )


def _client(user: User, ip: str, schema: str = "acme") -> Client:
    client = agent_client(user, tenant=schema)
    client.defaults["REMOTE_ADDR"] = ip
    return client


def _events(event: str, **filters: object) -> list[LogEntry]:
    return list(LogEntry.objects.filter(additional_data__event=event, **filters).order_by("pk"))


def _open_session(desk) -> Session:
    with schema_context(desk.tenant.schema_name):
        visitor, _ = make_visitor(desk)
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="help", client_msg_id=unique("c")
        )
        return Session.objects.select_related("visitor").get(visitor=visitor)


def test_an_admin_edit_is_recorded_with_before_after_actor_and_the_real_address(acme):
    boss = _admin()
    ip = _address()
    client = _client(boss, ip)
    old, new = unique("Billing"), unique("Refunds")
    with schema_context("acme"):
        skill = Skill.objects.create(name=old)
    # when the admin renames a skill, from behind an X-Forwarded-For the client wrote itself
    r = client.post(
        f"/admin/kefu/skill/{skill.pk}/change/",
        {"name": new},
        HTTP_X_FORWARDED_FOR="203.0.113.66",
    )
    assert r.status_code == 302
    with schema_context("acme"):
        entry = LogEntry.objects.get(
            content_type__model="skill", object_pk=str(skill.pk), action=LogEntry.Action.UPDATE
        )
        # then the log holds who, from where (not the forged header), and before → after
        assert entry.actor_id == boss.pk
        assert entry.remote_addr == ip
        assert entry.changes_dict == {"name": [old, new]}
        # and the admin reads it so on the entry's page
        page = client.get(f"/admin/org/auditentry/{entry.pk}/change/").content.decode()
    assert boss.username in page
    assert ip in page
    assert f"<tr><td>Name</td><td>{old}</td><td>{new}</td></tr>" in page


def test_secrets_are_never_logged(acme):
    with schema_context("acme"):
        user = User.objects.create_user(username=unique("carol"), password="s3cret-Passw0rd")
        user.set_password("an0ther-Passw0rd")
        user.save()
        entries = LogEntry.objects.filter(content_type__model="user", object_pk=str(user.pk))
        assert entries.count() >= 1
        for entry in entries:
            assert "password" not in (entry.changes_dict or {})


def test_failed_and_successful_sign_in_and_sign_out_are_recorded(acme):
    with schema_context("acme"):
        user = User.objects.create_user(username=unique("dave"), password=PASSWORD, role="agent")
    ip = _address()
    client = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip)
    wrong = client.post("/inbox/login/", {"username": user.username, "password": "nope"})
    assert wrong.status_code == 200
    right = client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert right.status_code == 302
    assert client.post("/inbox/logout/").status_code == 302
    with schema_context("acme"):
        (failed,) = _events(audit.SIGN_IN_FAILED, remote_addr=ip)
        assert failed.actor_id is None
        assert failed.additional_data["username"] == user.username
        assert failed.object_pk == str(user.pk)
        (signed_in,) = _events(audit.SIGN_IN, remote_addr=ip)
        assert signed_in.actor_id == user.pk
        (signed_out,) = _events(audit.SIGN_OUT, remote_addr=ip)
        assert signed_out.actor_id == user.pk
    # an unknown username is recorded too, under the name that was tried
    name = unique("nobody")
    client.post("/inbox/login/", {"username": name, "password": "guess"})
    with schema_context("acme"):
        (unknown,) = _events(audit.SIGN_IN_FAILED, additional_data__username=name)
        assert unknown.object_pk == ""
        assert unknown.remote_addr == ip


def test_transfer_close_and_block_are_recorded(acme):
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    ip = _address()
    client = _client(agent, ip)
    with schema_context("acme"):
        billing = Workgroup.objects.create(name=unique("billing"))
    # a transfer to a workgroup
    moved = _open_session(desk)
    r = client.post(
        "/api/v1/kefu/transfers",
        json.dumps({"conversation_id": moved.conversation_id, "to_workgroup_id": billing.pk}),
        content_type="application/json",
    )
    assert r.status_code == 201
    # a block, which closes the conversation
    spam = _open_session(desk)
    r = client.post(
        "/api/v1/kefu/blocks",
        json.dumps({"conversation_id": spam.conversation_id, "minutes": 60, "reason": "spam"}),
        content_type="application/json",
    )
    assert r.status_code == 201
    with schema_context("acme"):
        (transfer,) = _events(audit.TRANSFER, object_pk=str(moved.pk))
        assert (transfer.actor_id, transfer.remote_addr) == (agent.pk, ip)
        assert transfer.additional_data["to_workgroup_id"] == billing.pk
        assert transfer.additional_data["step"] == "done"
        (block,) = _events(audit.BLOCK, object_pk=str(spam.visitor_id))
        assert (block.actor_id, block.remote_addr) == (agent.pk, ip)
        assert block.additional_data["reason"] == "spam"
        assert block.additional_data["minutes"] == 60
        (close,) = _events(audit.CLOSE, object_pk=str(spam.pk))
        assert (close.actor_id, close.remote_addr) == (agent.pk, ip)
    # an admin closing a session in the back office is recorded as well
    boss = _admin()
    boss_ip = _address()
    with schema_context("acme"):
        desk.workgroup.agents.add(boss)
    other = _open_session(desk)
    r = _client(boss, boss_ip).post(
        "/admin/kefu/session/",
        {"action": "close_sessions", "_selected_action": [other.pk]},
    )
    assert r.status_code == 302
    with schema_context("acme"):
        (close,) = _events(audit.CLOSE, object_pk=str(other.pk))
        assert (close.actor_id, close.remote_addr) == (boss.pk, boss_ip)


@pytest.mark.asyncio
async def test_an_agent_closing_on_the_socket_is_recorded_with_the_sockets_address(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    session = await database_sync_to_async(_open_session)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    ip = _address()
    headers = [
        (b"host", b"acme.localhost"),
        (b"origin", b"http://acme.localhost"),
        (b"cookie", cookie),
    ]
    ws = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    ws.scope["client"] = (ip, 50000)  # the peer, as daphne reports it
    connected, _code = await ws.connect(timeout=WAIT_S)
    assert connected
    await ws.send_json_to(
        {"type": "conversation.close", "conversation_id": session.conversation_id}
    )
    await receive_until(ws, "conversation.closed")
    await ws.disconnect()

    def recorded() -> list[LogEntry]:
        with schema_context("acme"):
            return _events(audit.CLOSE, object_pk=str(session.pk))

    (close,) = await database_sync_to_async(recorded)()
    assert (close.actor_id, close.remote_addr) == (agent.pk, ip)
    assert close.additional_data["conversation_id"] == session.conversation_id


def test_no_one_adds_changes_or_deletes_an_entry_not_even_a_superuser(acme):
    boss = _admin()
    client = _client(boss, _address())
    with schema_context("acme"):
        entry = audit.audit_record(
            actor=boss, action=audit.EXPORT, target=VisitorLimits, data={"report": "x"}
        )
    base = f"/admin/org/auditentry/{entry.pk}"
    # reading is allowed
    assert client.get("/admin/org/auditentry/").status_code == 200
    assert client.get(f"{base}/change/").status_code == 200
    # writing is not
    assert client.post(f"{base}/change/", {"object_repr": "forged"}).status_code == 403
    assert client.get(f"{base}/delete/").status_code == 403
    assert client.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/org/auditentry/add/").status_code == 403
    assert client.post("/admin/org/auditentry/add/", {}).status_code == 403
    with schema_context("acme"):
        entry.refresh_from_db()
        assert entry.object_repr != "forged"
        # nor does a bulk "delete selected" exist on the list
        assert not AuditEntry.objects.filter(pk=entry.pk, object_repr="forged").exists()
    listing = client.get("/admin/org/auditentry/").content.decode()
    assert "delete_selected" not in listing


def test_the_csv_export_holds_the_filtered_entries_and_is_recorded(acme):
    boss = _admin()
    ip = _address()
    client = _client(boss, ip)
    name = unique("intruder")
    Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address()).post(
        "/inbox/login/", {"username": name, "password": "guess"}
    )
    # the list finds the failure by searching the name, filtered by the action
    listing = client.get("/admin/org/auditentry/", {"event": "sign_in_failed", "q": name})
    assert listing.status_code == 200
    assert name in listing.content.decode()
    assert "/admin/org/auditentry/export/?" in listing.content.decode()
    r = client.get("/admin/org/auditentry/export/", {"event": "sign_in_failed", "q": name})
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    text = b"".join(r.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["event"] == "sign_in_failed"
    assert json.loads(rows[0]["details"]) == {"username": name}
    with schema_context("acme"):
        (export,) = _events(audit.EXPORT, actor=boss)
        assert export.remote_addr == ip
        assert export.additional_data["report"] == "audit_log"
        assert export.additional_data["filters"] == {"event": ["sign_in_failed"], "q": [name]}
    # a filter the list refuses is a 400 with the JSON error shape
    bad = client.get("/admin/org/auditentry/export/", {"type": "x"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid"


def test_report_exports_are_recorded(acme):
    boss = _admin()
    ip = _address()
    client = _client(boss, ip)
    r = client.get("/api/v1/tickets/reports", {"export": "csv", "part": "daily"})
    assert r.status_code == 200
    r = client.get("/admin/kefu/session/reports/", {"export": "csv", "part": "agents"})
    assert r.status_code == 200
    with schema_context("acme"):
        reports = {e.additional_data["report"]: e for e in _events(audit.EXPORT, actor=boss)}
        assert set(reports) == {"ticket_report", "service_statistics"}
        assert reports["service_statistics"].additional_data["part"] == "agents"
        assert all(e.remote_addr == ip for e in reports.values())


def test_one_tenants_log_is_not_visible_in_another(acme, globex):
    acme_boss, globex_boss = _admin("acme"), _admin("globex")
    marker = unique("acme-only")
    with schema_context("acme"):
        entry = audit.audit_record(
            actor=acme_boss, action=audit.EXPORT, target=VisitorLimits, data={"report": marker}
        )
    acme_client = _client(acme_boss, _address(), "acme")
    globex_client = _client(globex_boss, _address(), "globex")
    found = acme_client.get("/admin/org/auditentry/", {"q": marker})
    assert found.context["cl"].result_count == 1
    assert f"/admin/org/auditentry/{entry.pk}/change/" in found.content.decode()
    elsewhere = globex_client.get("/admin/org/auditentry/", {"q": marker})
    assert elsewhere.context["cl"].result_count == 0
    seen = globex_client.get(f"/admin/org/auditentry/{entry.pk}/change/", follow=True)
    assert marker not in seen.content.decode()
    export = globex_client.get("/admin/org/auditentry/export/", {"q": marker})
    assert marker not in b"".join(export.streaming_content).decode("utf-8-sig")
    with schema_context("globex"):
        assert not LogEntry.objects.filter(additional_data__report=marker).exists()


def test_a_password_set_by_an_admin_is_recorded_without_the_password(acme):
    boss = _admin()
    ip = _address()
    with schema_context("acme"):
        user = User.objects.create_user(username=unique("erin"), password=PASSWORD)
    new = "An0ther-long-passphrase"
    r = _client(boss, ip).post(
        f"/admin/org/user/{user.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert r.status_code == 302
    with schema_context("acme"):
        entries = _events(audit.PASSWORD_SET, object_pk=str(user.pk), actor=boss)
        assert [e.remote_addr for e in entries] == [ip]
        for entry in LogEntry.objects.filter(object_pk=str(user.pk)):
            assert new not in json.dumps([entry.changes, entry.additional_data])


def test_a_platform_admin_creating_a_tenant_is_named_in_its_log_and_theirs(acme):
    root = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    ip = _address()
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=ip)
    assert client.login(username=root.username, password=PASSWORD)
    schema = unique("hooli")
    r = client.post(
        "/admin/tenants/tenant/add/",
        {"name": "Hooli", "domain": f"{schema}.localhost", "admin_username": "gavin"},
    )
    assert r.status_code == 200
    # the new tenant's log names the platform admin, who is not one of its users
    with schema_context(schema):
        created = LogEntry.objects.get(content_type__model="user", action=LogEntry.Action.CREATE)
        assert created.object_repr == "gavin"
        assert created.actor_id is None
        assert created.actor_email == f"{root.username} (public)"
        assert created.remote_addr == ip
    # and the public schema's own log has the platform admin's sign-in
    assert LogEntry.objects.filter(additional_data__event=audit.SIGN_IN, actor=root).exists()
