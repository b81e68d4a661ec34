"""The tickets' Kanban board in real Chromium: a card dragged to another column changes the
ticket's status; a move the rules refuse leaves it where it was; the keyboard's "Move to" works."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from tests.e2e.test_live_chat import TIMEOUT, _sign_in
from tests.e2e.test_snooze_schedule import _desk
from tests.waits import wait_until
from tickets.models import Ticket
from tickets.services import tickets as ticket_services

pytestmark = pytest.mark.e2e


def test_dragging_a_card_changes_the_tickets_status(daphne_server, browser, django_db_blocker):
    desk = _desk(django_db_blocker, "kanban")
    agent = desk.agents[0]
    schema = desk.tenant.schema_name
    with schema_context(schema):
        ticket = ticket_services.ticket_create(
            subject="Refund for order 88", body="Please refund", source="inbox", creator=agent
        )
        other = ticket_services.ticket_create(
            subject="Broken hinge", body="The hinge broke", source="inbox", creator=agent
        )
    host = f"{schema}.localhost"
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        _sign_in(page, daphne_server.url(host, "/inbox/login/"), agent.username)
        page.click("#kanban-link")
        card = page.locator(f'.kanban-card[data-id="{ticket.pk}"]')
        card.wait_for(timeout=TIMEOUT)
        assert card.locator("xpath=ancestor::section").get_attribute("data-status") == "new"
        # when the agent drags it to Pending
        card.drag_to(page.locator('.kanban-col[data-status="pending"]'))
        page.locator(
            f'.kanban-col[data-status="pending"] .kanban-card[data-id="{ticket.pk}"]'
        ).wait_for(timeout=TIMEOUT)
        # then the ticket is pending, and the counts follow
        with schema_context(schema):
            wait_until(
                lambda: Ticket.objects.get(pk=ticket.pk).status == "pending",
                what="the ticket pending",
            )
        assert page.inner_text('.kanban-col[data-status="pending"] .kanban-count') == "1"
        # the keyboard's way: "Move to" Solved
        page.locator(f'.kanban-card[data-id="{other.pk}"] select').select_option("solved")
        page.locator(
            f'.kanban-col[data-status="solved"] .kanban-card[data-id="{other.pk}"]'
        ).wait_for(timeout=TIMEOUT)
        with schema_context(schema):
            assert Ticket.objects.get(pk=other.pk).status == "solved"
        # a move the rules refuse (solved → pending) leaves the card where it was
        page.locator(f'.kanban-card[data-id="{other.pk}"]').drag_to(
            page.locator('.kanban-col[data-status="pending"]')
        )
        refusal = wait_until(
            lambda: "moved" not in (text := page.inner_text("#kanban-status")) and text.strip(),
            what="the refusal",
        )
        assert "pending" in refusal.lower() or "cannot" in refusal.lower(), refusal
        assert (
            page.locator(
                f'.kanban-col[data-status="solved"] .kanban-card[data-id="{other.pk}"]'
            ).count()
            == 1
        )
        with schema_context(schema):
            assert Ticket.objects.get(pk=other.pk).status == "solved"
    finally:
        context.close()
