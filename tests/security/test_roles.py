"""Roles (docs/security.md "Roles"): a supervisor sees only the workgroups they supervise, an
auditor reads everything and changes nothing, knowledge bases and canned responses restricted
to workgroups stay invisible to everyone else, and a custom role grants exactly its
permissions."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.urls import resolve
from django.utils import timezone
from django_tenants.utils import schema_context
from guardian.shortcuts import get_objects_for_user

from kbase.models import KnowledgeBase
from kbase.services import faq_upsert
from kefu import stats, supervision
from kefu.models import CannedResponse, ExportJob, Session
from kefu.services import messages
from org.middleware import OWN_SETTINGS, READS_ONLY
from org.models import AlertPreferences, AuditEntry, Department, DepartmentMember, Role, User
from tenants.models import Tenant
from tests.conftest import (
    PASSWORD,
    agent_client,
    make_desk,
    make_visitor,
    session_cookie,
    unique,
)
from tests.test_api_bad_input import _endpoints
from tests.ws import connect
from tickets.models import Ticket
from tickets.services import tickets as ticket_services


def _person(role: str, **extra: object) -> User:
    with schema_context("acme"):
        return User.objects.create_user(
            username=unique(role), password=PASSWORD, role=role, **extra
        )


def _conversation(desk) -> Session:
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("m")
        )
        return Session.objects.get(visitor=visitor)


def _ticket(desk, subject: str) -> Ticket:
    with schema_context("acme"):
        return ticket_services.ticket_create(
            subject=subject,
            body="It drips.",
            source=Ticket.Source.INBOX,
            creator=desk.agents[0],
            workgroup_id=desk.workgroup.pk,
        )


def test_a_supervisor_sees_only_the_workgroups_they_supervise(acme):
    # given two workgroups with a conversation and a ticket each, and a supervisor of the first
    mine, other = make_desk(acme), make_desk(acme)
    seen, unseen = _conversation(mine), _conversation(other)
    seen_ticket = _ticket(mine, unique("Tap"))
    unseen_ticket = _ticket(other, unique("Roof"))
    with schema_context("acme"):
        stats.rollup(timezone.localdate())
    boss = _person("supervisor", is_staff=True)
    admin = _person("admin", is_staff=True, is_superuser=True)

    # when an administrator makes them the first workgroup's supervisor in the back office
    page = agent_client(admin).get(f"/admin/kefu/workgroup/{mine.workgroup.pk}/change/")
    assert page.status_code == 200
    assert 'name="supervisors"' in page.content.decode()
    with schema_context("acme"):
        supervision.workgroup_supervisors_set(workgroup=mine.workgroup, users=[boss])
        assert list(
            get_objects_for_user(boss, "kefu.supervise_workgroup", accept_global_perms=False)
        ) == [mine.workgroup]
        assert AuditEntry.objects.filter(
            object_repr__contains=mine.workgroup.name, content_type__app_label="guardian"
        ).exists()
    client = agent_client(boss)
    fields = agent_client(admin).get(f"/api/v1/kefu/workgroups/{mine.workgroup.pk}").json()
    assert fields["supervisor_ids"] == [boss.pk]

    # then the monitor shows that workgroup and its conversations only
    data = client.get("/api/v1/kefu/monitor").json()
    assert [w["id"] for w in data["workgroups"]] == [mine.workgroup.pk]
    assert {c["workgroup"] for c in data["conversations"]} == {mine.workgroup.name}
    assert client.get(f"/inbox/monitor/conversations/{seen.conversation_id}/").status_code == 200
    assert client.get(f"/inbox/monitor/conversations/{unseen.conversation_id}/").status_code == 404
    # the statistics: that workgroup's figures only
    report = client.get("/api/v1/kefu/stats").json()
    assert [w["id"] for w in report["workgroups"]] == [mine.workgroup.pk]
    assert report["total"]["conversations"] >= 1
    # the tickets: theirs, not the other workgroup's (API and back office)
    listed = client.get("/api/v1/tickets?limit=200").json()["tickets"]
    numbers = {t["number"] for t in listed}
    assert seen_ticket.number in numbers
    assert unseen_ticket.number not in numbers
    assert client.get(f"/api/v1/tickets/{unseen_ticket.pk}").status_code == 404
    changed = client.patch(
        f"/api/v1/tickets/{seen_ticket.pk}", {"priority": "high"}, content_type="application/json"
    )
    assert changed.status_code == 200, changed.content
    tickets_page = client.get("/admin/tickets/ticket/?q=").content.decode()
    assert seen_ticket.subject in tickets_page
    assert unseen_ticket.subject not in tickets_page
    sessions_page = client.get("/admin/kefu/session/").content.decode()
    assert f"/admin/kefu/session/{seen.pk}/change/" in sessions_page
    assert f"/admin/kefu/session/{unseen.pk}/change/" not in sessions_page
    assert client.get(f"/admin/kefu/session/{unseen.pk}/change/").status_code == 302  # not found
    reports = client.get("/admin/kefu/session/reports/").content.decode()
    assert mine.workgroup.name in reports
    assert other.workgroup.name not in reports
    # the ticket reports: over their workgroups' tickets (API, CSV and back office)
    ticket_report = client.get("/api/v1/tickets/reports").json()
    assert [w["id"] for w in ticket_report["workgroups"]] == [mine.workgroup.pk]
    assert sum(d["created"] for d in ticket_report["daily"]) == 1
    csv = client.get("/api/v1/tickets/reports?export=csv&part=workgroups").content.decode()
    assert mine.workgroup.name in csv
    assert other.workgroup.name not in csv
    ticket_reports_page = client.get("/admin/tickets/ticket/reports/")
    assert ticket_reports_page.status_code == 200
    assert mine.workgroup.name in ticket_reports_page.content.decode()
    assert other.workgroup.name not in ticket_reports_page.content.decode()

    # and a supervisor of nothing sees no monitor, no statistics
    idle = agent_client(_person("supervisor", is_staff=True))
    assert idle.get("/api/v1/kefu/monitor").status_code == 403
    assert idle.get("/api/v1/kefu/stats").status_code == 403
    assert idle.get("/admin/kefu/session/reports/").status_code == 403
    assert idle.get("/api/v1/tickets/reports").status_code == 403
    assert idle.get("/admin/tickets/ticket/reports/").status_code == 403


def test_a_department_head_supervises_the_workgroups_of_their_departments(acme):
    # given a department tree (support > support/north) and two workgroups: one in the
    # sub-department, one in no department
    north, elsewhere = make_desk(acme), make_desk(acme)
    seen, unseen = _conversation(north), _conversation(elsewhere)
    head = _person("agent", is_staff=False)
    admin = _person("admin", is_staff=True, is_superuser=True)
    with schema_context("acme"):
        support = Department.objects.add_root({"name": unique("Support")})
        sub = Department.objects.add_child(support, {"name": unique("North")})
        membership = DepartmentMember.objects.create(department=support, user=head, is_head=True)
    # when an administrator puts the first workgroup in the sub-department (back office)
    page = agent_client(admin).get(f"/admin/kefu/workgroup/{north.workgroup.pk}/change/")
    assert 'name="department"' in page.content.decode()
    with schema_context("acme"):
        north.workgroup.department = sub
        north.workgroup.save(update_fields=["department"])
    fields = agent_client(admin).get(f"/api/v1/kefu/workgroups/{north.workgroup.pk}").json()
    assert fields["department_id"] == sub.pk

    # then the head of the department above supervises it, and only it
    client = agent_client(head)
    data = client.get("/api/v1/kefu/monitor").json()
    assert [w["id"] for w in data["workgroups"]] == [north.workgroup.pk]
    assert client.get(f"/inbox/monitor/conversations/{seen.conversation_id}/").status_code == 200
    assert client.get(f"/inbox/monitor/conversations/{unseen.conversation_id}/").status_code == 404

    # and a head who is no longer head sees nothing at once
    with schema_context("acme"):
        membership.is_head = False
        membership.save(update_fields=["is_head"])
    assert client.get("/api/v1/kefu/monitor").status_code == 403
    assert client.get(f"/inbox/monitor/conversations/{seen.conversation_id}/").status_code == 403


WRITES = ("post", "put", "patch", "delete")


def test_an_auditor_reads_everything_and_every_write_is_refused(acme):
    # given an auditor with back-office access, and a live conversation
    desk = make_desk(acme)
    session = _conversation(desk)
    auditor = _person("auditor", is_staff=True)
    client = agent_client(auditor)

    # then every write of the REST API is refused with a JSON 403, before the view runs
    refused = 0
    for url, methods in _endpoints():
        for method in methods:
            if method not in WRITES:
                continue
            r = getattr(client, method)(url, "{}", content_type="application/json")
            if r.status_code == 401:  # a path for visitors, behind their token
                continue
            view = resolve(url).func.view_class
            if getattr(view, OWN_SETTINGS, False):
                continue  # their own language and alerts: below
            if method == "post" and getattr(view, READS_ONLY, False):
                continue  # an export: below
            assert r.status_code == 403, (method, url, r.status_code)
            assert r.json()["error"] == "read_only", (method, url)
            refused += 1
    assert refused > 40
    # reads work: the monitor, every workgroup's statistics, tickets, the audit log
    assert client.get("/api/v1/kefu/monitor").status_code == 200
    assert client.get(f"/inbox/monitor/conversations/{session.conversation_id}/").status_code == 200
    assert client.get("/api/v1/kefu/stats").status_code == 200
    assert client.get("/api/v1/tickets").status_code == 200
    assert client.get("/api/v1/tickets/reports").status_code == 200
    assert client.get("/admin/org/auditentry/").status_code == 200
    assert client.get(f"/api/v1/kefu/workgroups/{desk.workgroup.pk}").status_code == 200
    # the back office shows every page read-only and refuses every form
    page = client.get(f"/admin/kefu/workgroup/{desk.workgroup.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.get("/admin/kefu/channel/").status_code == 200
    assert client.get("/admin/kefu/workgroup/add/").status_code == 403
    before = desk.workgroup.name
    r = client.post(f"/admin/kefu/workgroup/{desk.workgroup.pk}/change/", {"name": "Hijacked"})
    assert r.status_code == 403
    r = client.post(
        "/admin/kefu/session/",
        {"action": "close_sessions", "_selected_action": [session.pk]},
    )
    assert r.status_code == 403
    with schema_context("acme"):
        desk.workgroup.refresh_from_db()
        assert desk.workgroup.name == before
        assert Session.objects.get(pk=session.pk).status != Session.Status.CLOSED
    # but the exports, which only read, run: the back office's actions and the API
    r = client.post(
        "/admin/kefu/session/",
        {"action": "export_csv", "_selected_action": [session.pk]},
        follow=True,
    )
    assert r.status_code == 200
    assert "Export #" in r.content.decode()
    r = client.post(
        "/api/v1/kefu/exports", {"format": "json", "filters": {}}, content_type="application/json"
    )
    assert r.status_code == 202, r.content
    with schema_context("acme"):
        assert ExportJob.objects.filter(requester=auditor).count() == 2
    # and their own settings change: language and alerts (API and the alerts page)
    r = client.put("/api/v1/org/me/language", {"language": "en"}, content_type="application/json")
    assert r.status_code == 200, r.content
    r = client.post("/inbox/alerts/", {"digest_after_minutes": "30", "push": ["assigned"]})
    assert r.status_code in (200, 302), r.status_code
    with schema_context("acme"):
        auditor.refresh_from_db()
        assert auditor.language == "en"
        assert AlertPreferences.objects.get(user=auditor).digest_after_minutes == 30
    # signing out still works
    assert client.post("/admin/logout/").status_code in (200, 302)


def test_an_auditors_socket_reads_but_every_action_is_refused(acme):
    auditor = _person("auditor", is_staff=True)
    cookie = session_cookie(Tenant.objects.get(schema_name="acme"), auditor)

    async def scenario() -> list[dict]:
        ws, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
        assert hello["type"] == "hello"
        frames = []
        for frame in (
            {"type": "message.send", "conversation_id": 1, "content": "hi", "client_msg_id": "a"},
            {"type": "conversation.close", "conversation_id": 1},
            {"type": "agent.status", "status": "online"},
            {"type": "typing.start", "conversation_id": 1},
            {"type": "ping"},
        ):
            await ws.send_json_to({**frame, "ref": frame["type"]})
            frames.append(await ws.receive_json_from(timeout=10))
        await ws.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    assert [(f["type"], f.get("code")) for f in frames[:4]] == [("error", "read_only")] * 4
    assert frames[4]["type"] == "pong"


def test_restricted_knowledge_bases_and_canned_responses_are_invisible_to_outsiders(acme):
    # given a knowledge base and a shared canned response restricted to one workgroup
    inside, outside = make_desk(acme), make_desk(acme)
    word = unique("zanzibarquux")
    with schema_context("acme"):
        kb = KnowledgeBase.objects.create(name=unique("Internal"), kind="internal")
        faq_upsert(kb=kb, question=f"What is {word}?", answer="A secret.", index_later=False)
        inside.workgroup.knowledge_bases.add(kb)
        canned = CannedResponse.objects.create(
            shortcut=unique("secret"), title="Secret", content="Only for us"
        )
        canned.workgroups.add(inside.workgroup)
        open_kb = KnowledgeBase.objects.create(name=unique("Open"), kind="faq")
        faq_upsert(kb=open_kb, question=f"Where is {word}?", answer="Here.", index_later=False)

    def kbs(user: User) -> set[int]:
        r = agent_client(user).get(f"/api/v1/kbase/search?q={word}&mode=keyword")
        assert r.status_code == 200
        return {hit["kb"]["id"] for hit in r.json()["results"]}

    def shortcuts(user: User) -> set[str]:
        items = agent_client(user).get("/api/v1/kefu/canned").json()["canned"]
        return {i["shortcut"] for i in items}

    # then the workgroup's agents see both, an agent of another workgroup neither
    assert kbs(inside.agents[0]) == {kb.pk, open_kb.pk}
    assert kbs(outside.agents[0]) == {open_kb.pk}
    assert canned.shortcut in shortcuts(inside.agents[0])
    assert canned.shortcut not in shortcuts(outside.agents[0])
    # administrators and auditors see everything
    admin = _person("admin", is_staff=True, is_superuser=True)
    assert kbs(admin) == {kb.pk, open_kb.pk}
    assert canned.shortcut in shortcuts(admin)
    # the robot answers from it only in the workgroup's own conversations
    with schema_context("acme"):
        hidden = supervision.channel_hidden_knowledge_base_ids
        assert kb.pk in hidden(workgroup_id=outside.workgroup.pk)
        assert kb.pk not in hidden(workgroup_id=inside.workgroup.pk)
        assert open_kb.pk not in hidden(workgroup_id=outside.workgroup.pk)


def test_a_custom_role_grants_exactly_its_permissions(acme):
    # given a custom role "ticket clerk" that may read and change tickets
    with schema_context("acme"):
        role = Role.objects.create(name=unique("Ticket clerk"))
        role.permissions.set(
            Permission.objects.filter(
                content_type__app_label="tickets", codename__in=["view_ticket", "change_ticket"]
            )
        )
    clerk = _person("staff", is_staff=True)
    admin = _person("admin", is_staff=True, is_superuser=True)

    # when an administrator assigns it on the person's page
    page = agent_client(admin).get(f"/admin/org/user/{clerk.pk}/change/").content.decode()
    assert "Custom roles" in page or "custom roles" in page
    assert agent_client(admin).get("/admin/org/role/").status_code == 200
    with schema_context("acme"):
        clerk.groups.add(role)
        fresh = User.objects.get(pk=clerk.pk)
        # then the person holds exactly those permissions
        assert fresh.get_all_permissions() == {"tickets.view_ticket", "tickets.change_ticket"}
    client = agent_client(clerk)
    assert client.get("/admin/tickets/ticket/").status_code == 200
    assert client.get("/admin/tickets/ticket/add/").status_code == 403
    assert client.get("/admin/kefu/workgroup/").status_code == 403
    assert client.get("/admin/org/user/").status_code == 403
    # and back-office access is not administration: no monitor, no statistics
    assert client.get("/api/v1/kefu/monitor").status_code == 403
    assert client.get("/admin/kefu/session/reports/").status_code == 403


@pytest.mark.parametrize("role", ["auditor", "supervisor"])
def test_auditors_and_supervisors_are_not_administrators(acme, role):
    person = _person(role, is_staff=True)
    with schema_context("acme"):
        assert not person.is_admin
        assert not person.is_agent
        assert person.is_auditor == (role == "auditor")
        expected = None if role == "auditor" else set()
        assert supervision.supervised_workgroup_ids(person) == expected
