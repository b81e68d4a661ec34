"""Ticket reports (TK-4) agree with the raw data: tickets created, answered and solved at known
instants give known daily counts, backlog, time distributions, per-agent and per-workgroup
figures and SLA attainment; the admin page draws them and exports the same numbers as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from unittest import mock
from zoneinfo import ZoneInfo

from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import Workgroup
from tenants.models import Tenant
from tests.conftest import make_agent, session_cookie, unique
from tests.tickets.conftest import make_policy
from tickets import reports
from tickets.models import Ticket
from tickets.services import comments as ticket_comments
from tickets.services import tickets as ticket_services

SH = ZoneInfo("Asia/Shanghai")  # settings.TIME_ZONE in the tests


MONTH = {"month": 3}


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2031, MONTH["month"], day, hour, minute, tzinfo=SH)


def _when(moment: dt.datetime):
    return mock.patch("django.utils.timezone.now", return_value=moment)


def _world(month: int):
    """A workgroup of its own, two agents, and tickets in ``month`` of 2031 (each test its own
    month, which nothing else touches): on the 2nd three tickets, on the 3rd one more; answers
    and solves at known times."""
    MONTH["month"] = month
    a = make_agent(name="rita", status="offline")
    b = make_agent(name="raj", status="offline")
    workgroup = Workgroup.objects.create(name=unique("reports"))
    make_policy(workgroup=workgroup, name=unique("Report policy"), normal=(3600, None, 8 * 3600))
    made = {}
    for key, created, agent in [
        ("t1", at(2, 9), a),
        ("t2", at(2, 10), a),
        ("t3", at(2, 23, 30), b),
        ("t4", at(3, 9), b),
    ]:
        with _when(created):
            made[key] = ticket_services.ticket_create(
                subject=key,
                body="help",
                source=Ticket.Source.API,
                creator=a,
                requester_user_id=make_agent(name="req", status="offline").pk,
                workgroup_id=workgroup.pk,
                assignee_id=agent.pk,
            )
    # t1: answered after 30 min, solved after 2 h (both on time)
    with _when(at(2, 9, 30)):
        ticket_comments.comment_add(ticket_id=made["t1"].pk, user=a, body="looking")
    with _when(at(2, 11)):
        ticket_services.ticket_update(
            ticket_id=made["t1"].pk, actor=a, changes={"status": "solved"}
        )
    # t2: answered after 3 h (first response breached), solved on the 3rd at 12:00 (26 h: late)
    with _when(at(2, 13)):
        ticket_comments.comment_add(ticket_id=made["t2"].pk, user=a, body="sorry")
    with _when(at(3, 12)):
        ticket_services.ticket_update(
            ticket_id=made["t2"].pk, actor=a, changes={"status": "solved"}
        )
    # t3 and t4 stay open; t4 is answered after 10 min
    with _when(at(3, 9, 10)):
        ticket_comments.comment_add(ticket_id=made["t4"].pk, user=b, body="on it")
    return workgroup, a, b, made


def test_the_report_agrees_with_the_tickets(acme):
    with schema_context(acme.schema_name):
        # tickets of other tests (this tenant is shared) are open since before 2031
        earlier = Ticket.objects.filter(
            status__in=("new", "open", "pending", "on_hold"),
            created_at__lt=dt.datetime(2031, 3, 1, tzinfo=SH),
        ).count()
        workgroup, a, b, _made = _world(3)
        report = reports.build(start=dt.date(2031, 3, 1), end=dt.date(2031, 3, 4))
    assert report["daily"] == [
        {"date": "2031-03-01", "created": 0, "solved": 0, "backlog": earlier},
        {"date": "2031-03-02", "created": 3, "solved": 1, "backlog": earlier + 2},
        {"date": "2031-03-03", "created": 1, "solved": 1, "backlog": earlier + 2},
        {"date": "2031-03-04", "created": 0, "solved": 0, "backlog": earlier + 2},
    ]
    first = {row["bucket"]: row["tickets"] for row in report["first_response"]}
    assert first["< 1 h"] == 2  # t1 30 min, t4 10 min
    assert first["1–4 h"] == 1  # t2 3 h
    resolution = {row["bucket"]: row["tickets"] for row in report["resolution"]}
    assert resolution["1–4 h"] == 1  # t1 2 h
    assert resolution["1–3 d"] == 1  # t2 26 h
    groups = {row["name"]: row for row in report["workgroups"]}
    mine = groups[workgroup.name]
    assert (mine["created"], mine["solved"]) == (4, 2)
    assert mine["first_response_avg_s"] == (1800 + 3 * 3600 + 600) / 3
    assert mine["resolution_avg_s"] == (2 * 3600 + 26 * 3600) / 2
    agents = {row["name"]: row for row in report["agents"]}
    assert (agents[a.name]["created"], agents[a.name]["solved"]) == (2, 2)
    assert (agents[b.name]["created"], agents[b.name]["solved"]) == (2, 0)
    sla = [row for row in report["sla"] if row["policy"].startswith("Report policy")]
    by_target = {row["target"]: row for row in sla}
    # first response: t1 and t4 on time, t2 late; resolution: t1 on time, t2 late
    assert (by_target["first_response"]["met"], by_target["first_response"]["breached"]) == (2, 1)
    assert by_target["first_response"]["attainment_pct"] == 66.7
    assert (by_target["resolution"]["met"], by_target["resolution"]["breached"]) == (1, 1)


def test_admin_page_and_csv_export(acme):
    with schema_context(acme.schema_name):
        workgroup, _a, _b, _made = _world(4)
        from org.models import User

        boss = User.objects.get(username="bob")  # the tenant admin
    client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    name, value = (
        session_cookie(Tenant.objects.get(schema_name="acme"), boss).decode().split("=", 1)
    )
    client.cookies[name] = value
    page = client.get("/admin/tickets/ticket/reports/?start=2031-04-01&end=2031-04-04")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="chart-daily"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    export = client.get(
        "/admin/tickets/ticket/reports/?start=2031-04-01&end=2031-04-04&export=csv&part=workgroups"
    )
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0] == reports.CSV_COLUMNS["workgroups"]
    mine = next(r for r in rows if r[1] == workgroup.name)
    assert mine[2:4] == ["4", "2"]
    # the same through the API, for agents
    api = client.get(
        "/api/v1/tickets/reports?start=2031-04-01&end=2031-04-04&export=csv&part=daily"
    )
    assert api.status_code == 200
    assert api.content.decode().splitlines()[0] == "date,created,solved,backlog"
    bad = client.get("/api/v1/tickets/reports?start=2031-04-04&end=2031-04-01")
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid"


def test_admin_creates_and_changes_tickets_through_the_services(acme, desk):
    from org.models import User

    with schema_context(acme.schema_name):
        boss = User.objects.get(username="bob")
    client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    name, value = (
        session_cookie(Tenant.objects.get(schema_name="acme"), boss).decode().split("=", 1)
    )
    client.cookies[name] = value
    form = {
        "subject": "Printer jammed",
        "status": "new",
        "priority": "urgent",
        "requester_user": str(desk.staff.pk),
        "requester_email": "",
        "assignee": str(desk.agent.pk),
        "workgroup": str(desk.workgroup.pk),
        "tags": "[]",
        "body": "Third floor",
        "comments-TOTAL_FORMS": "0",
        "comments-INITIAL_FORMS": "0",
        "clocks-TOTAL_FORMS": "0",
        "clocks-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/tickets/ticket/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    with schema_context(acme.schema_name):
        ticket = Ticket.objects.filter(subject="Printer jammed").latest("pk")
        assert ticket.source == Ticket.Source.ADMIN
        assert ticket.comments.get().body == "Third floor"
        assert {c.kind for c in ticket.clocks.all()} == {"first_response", "resolution"}
    form.update(status="solved")
    response = client.post(f"/admin/tickets/ticket/{ticket.pk}/change/", form)
    assert response.status_code == 302
    with schema_context(acme.schema_name):
        ticket.refresh_from_db()
        assert ticket.status == "solved"
        assert not ticket.clocks.filter(met_at__isnull=True, cancelled=False).exists()
