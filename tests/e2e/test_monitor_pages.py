"""The supervisors' monitor of a busy tenant, in real Chromium: more than 500 live conversations
(it used to list the oldest 500 only), paged and filtered, with their total."""

from __future__ import annotations

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.models import Session
from org.models import User
from tests.conftest import PASSWORD, make_desk, session_cookie, unique
from tests.e2e.test_live_chat import TIMEOUT
from tests.kefu.test_monitor import _live_in_bulk

pytestmark = pytest.mark.e2e


def test_a_supervisor_reaches_the_newest_of_520_live_conversations(daphne_server, browser, acme):
    # given 520 live conversations in one workgroup and 3 in another
    big, small = make_desk(acme, agents=1), make_desk(acme, agents=1)
    with schema_context("acme"):
        Session.objects.exclude(status=Session.Status.CLOSED).update(
            status=Session.Status.CLOSED, closed_at=timezone.now()
        )
        boss = User.objects.create_user(username=unique("boss"), password=PASSWORD, role="admin")
    many = _live_in_bulk(big, 520, agent=big.agents[0])
    few = _live_in_bulk(small, 3, agent=small.agents[0])
    with schema_context("acme"):
        names = dict(
            Session.objects.filter(conversation_id__in=many + few).values_list(
                "conversation_id", "visitor__name"
            )
        )
    context = browser.new_context(locale="en-US")
    name, value = session_cookie(acme, boss).decode().split("=", 1)
    context.add_cookies(
        [{"name": name, "value": value, "url": daphne_server.url("acme.localhost")}]
    )
    try:
        page = context.new_page()
        page.goto(daphne_server.url("acme.localhost", "/inbox/monitor/"))
        rows = page.locator("#conv-table tbody tr")
        # when the monitor opens: the first page, and how many there are in all
        expect(page.locator("#conv-count")).to_have_text(
            "1–100 of 523 conversations", timeout=TIMEOUT
        )
        expect(rows).to_have_count(100)
        newest = names[few[-1]]
        expect(page.locator("#conv-table", has_text=newest)).to_have_count(0)

        # then the last page holds the newest conversations
        for _ in range(5):
            page.locator("#page-next").click()
        expect(page.locator("#conv-count")).to_have_text(
            "501–523 of 523 conversations", timeout=TIMEOUT
        )
        expect(rows.last).to_contain_text(newest, timeout=TIMEOUT)
        expect(page.locator("#page-next")).to_be_disabled()

        # and newest first puts it at the top, back on the first page
        page.locator("#f-order").select_option("newest")
        expect(page.locator("#conv-count")).to_have_text(
            "1–100 of 523 conversations", timeout=TIMEOUT
        )
        expect(rows.first).to_contain_text(newest, timeout=TIMEOUT)

        # and a workgroup filter shows its conversations and their count
        page.locator("#f-workgroup").select_option(str(small.workgroup.pk))
        expect(page.locator("#conv-count")).to_have_text("1–3 of 3 conversations", timeout=TIMEOUT)
        expect(rows).to_have_count(3)
        page.locator("#f-status").select_option("queued")
        expect(page.locator("#conv-count")).to_have_text("1–1 of 1 conversations", timeout=TIMEOUT)
        expect(rows.first).to_contain_text(names[few[0]])
    finally:
        context.close()
