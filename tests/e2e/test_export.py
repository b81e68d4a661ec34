"""Exporting a conversation from the inbox (CSV and JSON downloads, the printable transcript) and
splitting a customer's message off into a ticket, in real Chromium."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django_tenants.utils import schema_context

from kefu.models import Session
from tests.e2e.test_live_chat import TIMEOUT, _say
from tests.e2e.test_snooze_schedule import _chat, _desk
from tests.waits import wait_until
from tickets.models import Ticket

pytestmark = pytest.mark.e2e


def test_an_agent_downloads_the_conversation_and_splits_a_message(
    daphne_server, browser, django_db_blocker
):
    desk = _desk(django_db_blocker, "export")
    agent_ctx, visitor_ctx, inbox, widget, session = _chat(
        browser, daphne_server, desk, "我想退货，订单 A-1001"
    )
    try:
        inbox.fill("#composer", "好的，请把照片发给我们")
        inbox.click("#send")
        _say(widget, "The box arrived broken, order A-1001")
        inbox.locator("#messages .msg", has_text="arrived broken").wait_for(timeout=TIMEOUT)
        said = [
            "我想退货，订单 A-1001",
            "好的，请把照片发给我们",
            "The box arrived broken, order A-1001",
        ]

        # when the agent exports the conversation as CSV
        inbox.click("#export-btn")
        with inbox.expect_download(timeout=TIMEOUT) as download:
            inbox.click("#export-csv")
        path = Path(download.value.path())
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        # then the file holds every line, in order
        assert rows[0][:3] == ["seq", "created_at", "sender"]
        assert [r[5] for r in rows[1:] if r[3] != "system"] == said
        # and as JSON
        with inbox.expect_download(timeout=TIMEOUT) as download:
            inbox.click("#export-json")
        data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        assert data["conversation"]["conversation_id"] == session.conversation_id
        assert [m["text"] for m in data["messages"] if m["sender_type"] != "system"] == said
        # the printable transcript opens in a new tab, ready to print
        with agent_ctx.expect_page(timeout=TIMEOUT) as new_page:
            inbox.click("#export-print")
        page = new_page.value
        page.wait_for_load_state()
        lines = page.locator("#transcript .transcript-line:not(.system) .what").all_inner_texts()
        assert [t.strip() for t in lines] == said
        assert page.locator("#print-btn").is_visible()
        page.emulate_media(media="print")
        assert not page.locator("#print-btn").is_visible()
        page.close()
        inbox.click("#export-close")

        # when the agent splits the customer's complaint off into a ticket
        message = inbox.locator("#messages .msg", has_text="arrived broken")
        message.locator(".msg-split").click()
        toast = inbox.locator("#toast")
        toast.wait_for(timeout=TIMEOUT)
        assert "created from this message" in toast.inner_text()
        inbox.locator("#messages .msg.system", has_text="split a message off into ticket").wait_for(
            timeout=TIMEOUT
        )
        with schema_context(desk.tenant.schema_name):
            ticket = Ticket.objects.get(conversation_id=session.conversation_id)
            assert ticket.subject == said[2]
            assert ticket.requester_visitor_id == session.visitor_id
        # the customer never sees the internal line
        assert widget.locator("#messages .msg", has_text="split a message off").count() == 0
    finally:
        agent_ctx.close()
        visitor_ctx.close()


def test_an_agent_merges_the_customers_earlier_conversation(
    daphne_server, browser, django_db_blocker
):
    desk = _desk(django_db_blocker, "merge")
    agent_ctx, visitor_ctx, inbox, widget, first = _chat(
        browser, daphne_server, desk, "Where is parcel 77?"
    )
    try:
        # given the first conversation ended and the customer came back with a new one
        inbox.click("#close-conv")
        widget.locator(
            f'#messages .msg.ended[data-conversation="{first.conversation_id}"]'
        ).wait_for(timeout=TIMEOUT)
        _say(widget, "Still no parcel 77")
        with schema_context(desk.tenant.schema_name):
            second = wait_until(
                lambda: (
                    Session.objects.filter(visitor_id=first.visitor_id).exclude(pk=first.pk).first()
                ),
                what="the second conversation",
            )
        inbox.locator(f'.conv-item[data-id="{second.conversation_id}"]').click(timeout=TIMEOUT)
        inbox.locator("#messages .msg", has_text="Still no parcel").wait_for(timeout=TIMEOUT)
        # when the agent merges the earlier one into it
        inbox.click("#conv-merge-btn")
        choice = inbox.locator(f'#merge-list input[value="{first.conversation_id}"]')
        choice.check(timeout=TIMEOUT)
        inbox.click("#merge-ok")
        # then an internal line says so, and the transcript holds both conversations in order
        inbox.locator("#messages .msg.system", has_text="into this one").wait_for(timeout=TIMEOUT)
        with agent_ctx.expect_page(timeout=TIMEOUT) as new_page:
            inbox.click("#export-btn")
            inbox.click("#export-print")
        page = new_page.value
        page.wait_for_load_state()
        lines = page.locator("#transcript .transcript-line.visitor .what").all_inner_texts()
        assert [t.strip() for t in lines] == ["Where is parcel 77?", "Still no parcel 77"]
        assert f"#{first.conversation_id}" in page.locator(".print-facts").inner_text()
        with schema_context(desk.tenant.schema_name):
            first.refresh_from_db()
            assert first.merged_into_id == second.pk
        # the customer is not told
        assert widget.locator("#messages .msg", has_text="into this one").count() == 0
    finally:
        agent_ctx.close()
        visitor_ctx.close()
