"""The back office's landing page: the supervisors' dashboard shows the statistics API's
figures, the monitor's queue and the ticket reports' SLA attainment; every page is in a named
group with links to the inbox, monitor, statistics and reports; in both languages."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu import stats
from kefu.models import Session
from org.models import User
from tests.conftest import PASSWORD, agent_client, make_desk, unique
from tests.kefu.conversations import customer_conversation
from tickets.models import SlaClock
from tickets.services import tickets as ticket_services


def _figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="(\w+)" data-value="([^"]*)"', html))


def _number(value: float | int | None) -> str:
    return "" if value is None else str(value)


@pytest.fixture
def busy_day(acme):
    """Conversations of today in acme (answered, rated, one waiting), rolled up."""
    desk = make_desk(acme, agents=1, status="offline", inbox=False)
    agent = desk.agents[0]
    now = timezone.now()
    with schema_context("acme"):
        for minutes, score in ((30, 5), (20, 3)):
            started = now - dt.timedelta(minutes=minutes)
            customer_conversation(
                desk, agent, lines=[("visitor", "hello"), ("agent", "hi")], created=started,
                status="closed", queued_at=started, assigned_at=started + dt.timedelta(seconds=5),
                first_response_at=started + dt.timedelta(seconds=35),
                closed_at=started + dt.timedelta(minutes=4), csat_score=score,
            )  # fmt: skip
        waiting = customer_conversation(desk, agent, status="queued", queued_at=now)
        Session.objects.filter(pk=waiting.pk).update(agent=None)
        today = timezone.localdate()
        stats.stats_refresh(start=today - dt.timedelta(days=6), end=today)
        # a ticket whose first-response clock was met and resolution clock breached today
        ticket = ticket_services.ticket_create(
            subject="Broken tap", body="It drips.", source="inbox", creator=agent
        )
        ticket.clocks.all().delete()
        for kind, met in (("first_response", True), ("resolution", False)):
            SlaClock.objects.create(
                ticket=ticket, kind=kind, target_s=600, started_at=now - dt.timedelta(hours=1),
                met_at=now if met else None, breached_at=None if met else now,
            )  # fmt: skip
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True,
            is_superuser=True,
        )  # fmt: skip
    return boss


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_dashboard_numbers_equal_the_statistics_api(busy_day, language):
    client = agent_client(busy_day, language=language)
    client.get("/admin/onboarding/")  # the first visit of a new tenant goes there once
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    shown = _figures(html)

    today = timezone.localdate()
    week = {"start": (today - dt.timedelta(days=6)).isoformat(), "end": today.isoformat()}
    day = client.get("/api/v1/kefu/stats", {"start": today.isoformat(), "end": today.isoformat()})
    totals = client.get("/api/v1/kefu/stats", week).json()["total"]
    monitor = client.get("/api/v1/kefu/monitor").json()
    sla = client.get("/api/v1/tickets/reports", week).json()["sla"]
    finished = sum(r["finished"] for r in sla)
    attained = round(100 * sum(r["met"] for r in sla) / finished, 1) if finished else None

    assert int(shown["conversations_today"]) == day.json()["total"]["conversations"] >= 3
    assert int(shown["waiting_now"]) == sum(w["queue_length"] for w in monitor["workgroups"]) >= 1
    assert shown["first_response_avg_s"] == _number(totals["first_response_avg_s"])
    assert shown["resolution_avg_s"] == _number(totals["resolution_avg_s"])
    assert shown["csat_avg"] == _number(totals["csat_avg"])
    assert totals["csat_count"] >= 2
    assert shown["sla_attainment_pct"] == _number(attained)
    assert attained is not None

    # the busiest-hours bars count the sessions started in each local hour of the 7 days
    with schema_context("acme"):
        tz = ZoneInfo(settings.TIME_ZONE)
        since = dt.datetime.combine(today - dt.timedelta(days=6), dt.time(), tzinfo=tz)
        expected = Counter(
            s.created_at.astimezone(tz).hour for s in Session.objects.filter(created_at__gte=since)
        )
    bars = {int(h): int(n) for h, n in re.findall(r'data-hour="(\d+)" data-count="(\d+)"', html)}
    assert bars == {h: expected.get(h, 0) for h in range(24)}


def test_grouped_navigation_links_and_the_way_back_to_the_inbox(busy_day):
    client = agent_client(busy_day, language="zh-hans")
    client.get("/admin/onboarding/")
    html = client.get("/admin/").content.decode()
    for link in ("/inbox/", "/inbox/monitor/", "/admin/kefu/session/reports/",
                 "/admin/tickets/ticket/reports/"):  # fmt: skip
        assert f'href="{link}"' in html
    assert 'id="inbox-link"' in html  # on every back-office page, in the user links
    assert "会话" in html
    assert "工单" in html
    assert 'id="bo-search"' in html
    assert 'href="/admin/kefu/channel/"' in html
    assert "/admin/org/user/add/" in html
    # and any other back-office page keeps the way back to the inbox
    assert 'id="inbox-link"' in client.get("/admin/kefu/channel/").content.decode()


def test_staff_without_supervision_see_the_navigation_but_no_figures(acme):
    with schema_context("acme"):
        clerk = User.objects.create_user(
            username=unique("clerk"), password=PASSWORD, role="staff", is_staff=True
        )
    html = agent_client(clerk).get("/admin/").content.decode()
    assert 'id="dashboard"' not in html
    assert 'id="bo-link-inbox"' in html
    assert 'id="bo-link-monitor"' not in html
