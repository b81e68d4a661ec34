"""The back office's landing page in real Chromium: the dashboard shows what the statistics and
monitor APIs answer, the search box narrows the grouped pages, and every page leads back to
the inbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu import stats
from kefu.models import Channel, Session, Workgroup
from tenants.services import tenant_create
from tests.conftest import PASSWORD, Desk, make_agent, unique
from tests.kefu.conversations import customer_conversation
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS


@pytest.fixture(scope="module")
def office(django_db_setup, django_db_blocker):
    """A fresh tenant with a day of conversations, rolled up, and one visitor waiting."""
    with django_db_blocker.unblock():
        schema = unique("office")
        tenant = tenant_create(
            name="Office",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        now = timezone.now()
        with schema_context(schema):
            agent = make_agent(name="amy", status="offline")
            workgroup = Workgroup.objects.create(name="Sales")
            workgroup.agents.add(agent)
            channel = Channel.objects.create(name="Web", workgroup=workgroup)
            desk = Desk(tenant=tenant, workgroup=workgroup, channel=channel, agents=[agent])
            # all of them today in the tenant's time zone, even just after its midnight
            midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            room_s = max((now - midnight).total_seconds() - 1, 0.5)
            for minutes, score in ((50, 4), (40, 5), (30, 2)):
                started = now - dt.timedelta(seconds=min(minutes * 60, room_s * minutes / 50))
                customer_conversation(
                    desk, agent, lines=[("visitor", "hi"), ("agent", "hello")], created=started,
                    status="closed", queued_at=started,
                    assigned_at=started + dt.timedelta(seconds=3),
                    first_response_at=started + dt.timedelta(seconds=20 + minutes),
                    closed_at=started + dt.timedelta(minutes=5), csat_score=score,
                )  # fmt: skip
            waiting = customer_conversation(desk, agent, status="queued", queued_at=now)
            Session.objects.filter(pk=waiting.pk).update(agent=None)
            today = timezone.localdate()
            stats.stats_refresh(start=today - dt.timedelta(days=6), end=today)
        return tenant


def test_dashboard_agrees_with_the_apis_and_the_pages_are_searchable(
    daphne_server, browser, office
):
    host = f"{office.schema_name}.localhost"
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(daphne_server.url(host, "/admin/login/"))
        page.fill("#id_username", "boss")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/**", timeout=TIMEOUT)
        page.goto(daphne_server.url(host, "/admin/"))  # past the first-visit checklist
        page.locator("#dashboard").wait_for(timeout=TIMEOUT)

        def shown(key: str) -> str:
            return page.locator(f'.bo-card[data-figure="{key}"]').get_attribute("data-value")

        today = timezone.localdate()
        start = (today - dt.timedelta(days=6)).isoformat()

        def api(path: str) -> dict:  # asked by the page itself, with its session
            return page.evaluate("async (u) => (await fetch(u)).json()", path)

        day = api(f"/api/v1/kefu/stats?start={today}&end={today}")
        total = api(f"/api/v1/kefu/stats?start={start}&end={today}")["total"]
        live = api("/api/v1/kefu/monitor")
        assert shown("conversations_today") == str(day["total"]["conversations"]) == "4"
        assert shown("waiting_now") == str(sum(w["queue_length"] for w in live["workgroups"]))
        assert shown("waiting_now") == "1"
        assert float(shown("first_response_avg_s")) == total["first_response_avg_s"]
        assert float(shown("resolution_avg_s")) == total["resolution_avg_s"] == 300
        assert float(shown("csat_avg")) == total["csat_avg"] == 3.67
        card = page.locator('.bo-card[data-figure="csat_avg"]').inner_text()
        assert "3.67 / 5" in card
        hours = page.locator(".bo-bar")
        assert hours.count() == 24
        assert sum(int(hours.nth(h).get_attribute("data-count")) for h in range(24)) == 4

        # the search box narrows the grouped pages as one types
        page.fill("#bo-search", "canned")
        visible = page.locator(".bo-entry:visible")
        visible.first.wait_for(timeout=TIMEOUT)
        assert all("canned" in t.lower() for t in visible.all_inner_texts())
        assert page.locator(".bo-group:visible").count() == 1
        assert "Channels and routing" in page.locator(".bo-group:visible h3").inner_text()
        page.fill("#bo-search", "zzzz")
        page.locator("#bo-empty").wait_for(timeout=TIMEOUT)

        # the links lead to the statistics, and every page back to the inbox
        page.fill("#bo-search", "")
        page.click("#bo-link-statistics")
        page.wait_for_url("**/admin/kefu/session/reports/**", timeout=TIMEOUT)
        page.click("#inbox-link")
        page.wait_for_url("**/inbox/", timeout=TIMEOUT)
    finally:
        context.close()
