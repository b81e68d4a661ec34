"""The inbox's conversation list as an agent uses it all day: views with counts that move live
as visitors arrive, are assigned and closed; the customer's words and waiting time in the
preview; labels set on one conversation, seen live by a colleague, and on many at once; the
keyboard shortcuts. Real Chromium against daphne."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.models import AgentState, Label, Session
from org.models import User
from tests.conftest import PASSWORD
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk

pytestmark = pytest.mark.e2e


def _count(page, view: str):
    return page.locator(f".view-chip[data-view='{view}'] .view-count")


def _errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_views_count_live_and_the_keyboard_drives_the_list(
    daphne_server, browser, django_db_blocker
):
    # given an agent who serves one visitor at a time, signed in
    with django_db_blocker.unblock():
        desk = fresh_desk("views", cap=1)
    schema = desk.tenant.schema_name
    host = f"{schema}.localhost"
    agent = desk.agents[0]
    contexts = [browser.new_context(locale="en-US") for _ in range(3)]
    try:
        inbox = contexts[0].new_page()
        errors = _errors(inbox)
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        expect(_count(inbox, "mine")).to_have_text("0", timeout=TIMEOUT)

        # when a visitor asks something: the agent gets it
        _p1, first = _open_widget(contexts[1], daphne_server.url(host, "/"))
        _say(first, "Where is my parcel 42?")

        # then "mine" and "waiting for a reply" count it, and the list shows the customer's
        # words (not the line about who serves them) and how long they wait
        expect(_count(inbox, "mine")).to_have_text("1", timeout=TIMEOUT)
        expect(_count(inbox, "waiting")).to_have_text("1", timeout=TIMEOUT)
        item = inbox.locator("#conv-list .conv-item").first
        expect(item.locator(".conv-preview")).to_have_text(
            "Where is my parcel 42?", timeout=TIMEOUT
        )
        expect(item.locator(".conv-wait")).to_contain_text("waiting", timeout=TIMEOUT)

        # when a second visitor comes while the agent is full: unassigned counts them
        _p2, second = _open_widget(contexts[2], daphne_server.url(host, "/"))
        _say(second, "Do you ship to Lyon?")
        expect(_count(inbox, "unassigned")).to_have_text("1", timeout=TIMEOUT)
        # and the Unassigned view (key 2) lists them with their words
        inbox.locator("body").press("2")
        expect(inbox.locator(".view-chip[data-view='unassigned']")).to_have_attribute(
            "aria-pressed", "true", timeout=TIMEOUT
        )
        expect(inbox.locator("#conv-list .conv-item")).to_have_count(1, timeout=TIMEOUT)
        expect(inbox.locator("#conv-list .conv-preview")).to_have_text(
            "Do you ship to Lyon?", timeout=TIMEOUT
        )

        # when the agent goes back to their own (key 1), opens the first with j and closes it
        # with x
        inbox.locator("body").press("1")
        inbox.locator("#conv-list .conv-item", has_text="Where is my parcel").wait_for(
            timeout=TIMEOUT
        )
        inbox.locator("body").press("j")
        inbox.locator("#messages .msg", has_text="parcel 42").wait_for(timeout=TIMEOUT)
        expect(inbox.locator("#conv-list .conv-item.selected")).to_be_focused(timeout=TIMEOUT)
        inbox.keyboard.press("x")

        # then the closed count grows, the waiting visitor is assigned to the agent (the
        # queue moves), and unassigned goes back to 0 — all without a reload
        expect(_count(inbox, "closed")).to_have_text("1", timeout=TIMEOUT)
        expect(_count(inbox, "unassigned")).to_have_text("0", timeout=TIMEOUT)
        expect(_count(inbox, "mine")).to_have_text("1", timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(schema):
            assert Session.objects.filter(agent=agent, status="open").count() == 1

        # and r puts the cursor in the reply box of the selected conversation; Esc leaves it;
        # k moves to the other conversation; keys typed in the box stay text
        inbox.locator("#conv-list .conv-item", has_text="Do you ship").click()
        inbox.locator("#messages .msg", has_text="ship to Lyon").wait_for(timeout=TIMEOUT)
        inbox.locator("#conv-list .conv-item.selected").focus()
        inbox.keyboard.press("r")
        expect(inbox.locator("#composer")).to_be_focused(timeout=TIMEOUT)
        inbox.keyboard.type("jk x")
        expect(inbox.locator("#composer")).to_have_value("jk x")
        inbox.keyboard.press("Control+Enter")
        second.locator("#messages .msg", has_text="jk x").wait_for(timeout=TIMEOUT)
        expect(_count(inbox, "waiting")).to_have_text("0", timeout=TIMEOUT)
        inbox.keyboard.press("Escape")
        # ? lists the shortcuts
        inbox.keyboard.press("?")
        dialog = inbox.locator("#shortcuts-dialog")
        expect(dialog).to_be_visible(timeout=TIMEOUT)
        expect(dialog).to_contain_text("Next conversation")
        inbox.keyboard.press("Escape")
        expect(dialog).to_be_hidden(timeout=TIMEOUT)
        # the tab's unread badge never pushes the tabs onto two lines
        tabs = inbox.locator(".tabs .tab")
        heights = {round(tabs.nth(i).bounding_box()["y"]) for i in range(tabs.count())}
        assert len(heights) == 1
        assert errors == []
    finally:
        for context in contexts:
            context.close()


def test_labels_from_the_panel_reach_a_colleague_live_and_label_many_at_once(
    daphne_server, browser, django_db_blocker
):
    # given two agents of a workgroup, labels, and two conversations of the first agent
    with django_db_blocker.unblock():
        desk = fresh_desk("labels", cap=5)
        schema = desk.tenant.schema_name
        with schema_context(schema):
            colleague = User.objects.create_user(username="carol", password=PASSWORD, role="agent")
            AgentState.objects.create(user=colleague, max_concurrent=5, status="away")
            desk.workgroup.agents.add(colleague)
            vip = Label.objects.create(name="VIP", color="#d1242f")
            refund = Label.objects.create(name="Refund", color="#1f6feb")
    host = f"{schema}.localhost"
    agent = desk.agents[0]
    contexts = [browser.new_context(locale="en-US") for _ in range(4)]
    try:
        inbox, other = contexts[0].new_page(), contexts[1].new_page()
        errors = _errors(inbox)
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        _sign_in(other, daphne_server.url(host, "/inbox/login/"), colleague.username)
        _p1, first = _open_widget(contexts[2], daphne_server.url(host, "/"))
        _say(first, "My card was charged twice")
        _p2, second = _open_widget(contexts[3], daphne_server.url(host, "/"))
        _say(second, "Please refund order 7")
        expect(inbox.locator("#conv-list .conv-item")).to_have_count(2, timeout=TIMEOUT)
        # the colleague watches all open conversations of the workgroup (key 3)
        other.locator(".view-chip[data-view='open']").click()
        expect(other.locator("#conv-list .conv-item")).to_have_count(2, timeout=TIMEOUT)

        # when the agent opens the first conversation and labels it VIP with the keyboard (l)
        inbox.locator("#conv-list .conv-item", has_text="charged twice").click()
        inbox.locator("#messages .msg", has_text="charged twice").wait_for(timeout=TIMEOUT)
        inbox.locator("#conv-list .conv-item.selected").focus()
        inbox.keyboard.press("l")
        expect(inbox.locator("#conv-label-add")).to_be_focused(timeout=TIMEOUT)
        inbox.select_option("#conv-label-add", str(vip.pk))

        # then the conversation panel and the list carry the label, and so does the
        # colleague's list, live
        expect(inbox.locator("#conv-label-chips .label-chip")).to_contain_text(
            ["VIP"], timeout=TIMEOUT
        )
        row = other.locator("#conv-list .conv-item", has_text="charged twice")
        expect(row.locator(".label-chip")).to_have_text(["VIP"], timeout=TIMEOUT)
        # and the label's view counts it
        expect(other.locator(f"#view-more option[value='label:{vip.pk}']")).to_have_text(
            "VIP (1)", timeout=TIMEOUT
        )

        # when the agent ticks both conversations and adds "Refund" to them at once
        for item in inbox.locator("#conv-list .conv-check").all():
            item.check()
        expect(inbox.locator("#conv-bulk-count")).to_have_text("2 selected", timeout=TIMEOUT)
        inbox.select_option("#conv-bulk-label", f"add:{refund.pk}")

        # then both carry it, here and at the colleague's
        expect(inbox.locator("#conv-list .conv-item .label-chip", has_text="Refund")).to_have_count(
            2, timeout=TIMEOUT
        )
        expect(other.locator("#conv-list .conv-item .label-chip", has_text="Refund")).to_have_count(
            2, timeout=TIMEOUT
        )
        # the Refund view shows both; removing VIP from the panel takes it off everywhere
        inbox.locator("#conv-label-chips .label-chip", has_text="VIP").locator(
            ".label-remove"
        ).click()
        expect(row.locator(".label-chip")).to_have_text(["Refund"], timeout=TIMEOUT)
        other.select_option("#view-more", f"label:{refund.pk}")
        expect(other.locator("#conv-list .conv-item")).to_have_count(2, timeout=TIMEOUT)
        # the colleague saves that view, sorted by waiting time, and finds it again later
        other.select_option("#view-sort", "waiting")
        other.click("#view-save")
        other.fill("#vd-name", "Refunds to do")
        other.click("#vd-save")
        saved = other.locator("#view-more optgroup option", has_text="Refunds to do")
        expect(saved).to_have_text("Refunds to do (2)", timeout=TIMEOUT)
        other.keyboard.press("1")  # back to their own: none
        expect(other.locator("#view-list-empty")).to_be_hidden(timeout=TIMEOUT)
        other.select_option("#view-more", label="Refunds to do (2)")
        expect(other.locator("#conv-list .conv-item")).to_have_count(2, timeout=TIMEOUT)
        expect(other.locator("#view-sort")).to_have_value("waiting")
        with django_db_blocker.unblock(), schema_context(schema):
            assert Session.objects.filter(labels=refund).count() == 2
            assert not Session.objects.filter(labels=vip).exists()
        assert errors == []
    finally:
        for context in contexts:
            context.close()
