"""The conversations' Kanban boards and the inbox's list export in real Chromium: a card dragged
to Snoozed snoozes the conversation, the keyboard's "Move to" closes one, a closed one stays
closed, the board follows a change made elsewhere without a reload, a card dragged between
label columns swaps the label; and "Export…" in the inbox writes the view's file through a real
Celery worker, with its progress and a download."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django_tenants.utils import schema_context

from kefu.models import Label, Session
from kefu.services import labels as label_services
from kefu.services import messages, snooze
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, make_visitor, unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in
from tests.servers import celery_worker_start, daphne_start
from tests.waits import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(django_db_setup):
    """daphne and a worker on a queue of their own (the list export is a worker's job)."""
    queue = unique("boards-e2e")
    worker = celery_worker_start(
        queue=queue, name="boards-e2e", concurrency=1, WEIYU_SEMANTIC="off"
    )
    server = daphne_start(name="boards-e2e-daphne", CELERY_QUEUE=queue)
    yield server
    server.stop()
    worker.stop()


def _desk(django_db_blocker, prefix: str):
    with django_db_blocker.unblock():
        schema = unique(prefix)
        tenant = tenant_create(
            name=prefix.title(), schema_name=schema, domain=f"{schema}.localhost",
            admin_username="bob", admin_password=PASSWORD,
        )  # fmt: skip
        return make_desk(tenant, agents=1)


def _chat(desk, text: str) -> Session:
    visitor, _ = make_visitor(desk)
    with schema_context(desk.tenant.schema_name):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
        )
        return Session.objects.select_related("visitor").get(visitor=visitor)


def _card(page, column: str, session: Session):
    return page.locator(
        f'.kanban-col[data-column="{column}"] .kanban-card[data-id="{session.conversation_id}"]'
    )


def test_conversations_move_on_the_status_and_label_boards(served, browser, django_db_blocker):
    desk = _desk(django_db_blocker, "boards")
    schema = desk.tenant.schema_name
    agent = desk.agents[0]
    first = _chat(desk, "我的包裹在哪里？")
    second = _chat(desk, "Please cancel order 7")
    with schema_context(schema):
        billing = Label.objects.create(name="Billing", color="#1f6feb")
        shipping = Label.objects.create(name="Shipping", color="#2da44e")
        label_services.labels_change(
            user=agent, conversation_ids=[first.conversation_id], add=[billing.pk]
        )
    host = f"{schema}.localhost"
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        _sign_in(page, served.url(host, "/inbox/login/"), agent.username)
        # the inbox links to the boards
        page.click("#kanban-link")
        page.click("#board-status")
        _card(page, "open", first).wait_for(timeout=TIMEOUT)
        assert "我的包裹在哪里" in _card(page, "open", first).inner_text()
        # when the agent drags the first conversation to Snoozed
        _card(page, "open", first).drag_to(page.locator('.kanban-col[data-column="snoozed"]'))
        _card(page, "snoozed", first).wait_for(timeout=TIMEOUT)
        # then it is snoozed until the customer replies
        with schema_context(schema):
            wait_until(
                lambda: Session.objects.get(pk=first.pk).snoozed_at is not None,
                what="the conversation snoozed",
            )
            assert Session.objects.get(pk=first.pk).snoozed_until is None
        # the keyboard's way: "Move to" Closed ends the second one
        _card(page, "open", second).locator("select").select_option("closed")
        _card(page, "closed", second).wait_for(timeout=TIMEOUT)
        with schema_context(schema):
            assert Session.objects.get(pk=second.pk).status == "closed"
        # a closed conversation cannot be dragged back open: refused, the card stays
        _card(page, "closed", second).drag_to(page.locator('.kanban-col[data-column="open"]'))
        refusal = wait_until(
            lambda: "cannot" in (text := page.inner_text("#kanban-status")) and text,
            what="the refusal",
        )
        assert "closed" in refusal.lower()
        assert _card(page, "closed", second).count() == 1
        # live: un-snoozed elsewhere (the inbox, a colleague), the card comes back by itself
        with schema_context(schema):
            snooze.conversation_unsnooze(user=agent, conversation_id=first.conversation_id)
        _card(page, "open", first).wait_for(timeout=TIMEOUT)
        assert page.inner_text('.kanban-col[data-column="snoozed"] .kanban-count') == "0"

        # the labels board: the first conversation under Billing
        page.click("#board-labels")
        _card(page, str(billing.pk), first).wait_for(timeout=TIMEOUT)
        # when it is dragged to Shipping, the label is swapped
        _card(page, str(billing.pk), first).drag_to(
            page.locator(f'.kanban-col[data-column="{shipping.pk}"]')
        )
        _card(page, str(shipping.pk), first).wait_for(timeout=TIMEOUT)
        with schema_context(schema):
            wait_until(
                lambda: (
                    list(Session.objects.get(pk=first.pk).labels.values_list("name", flat=True))
                    == ["Shipping"]
                ),
                what="the label swapped",
            )
        assert _card(page, str(billing.pk), first).count() == 0
        # and "No label" takes it off, from the keyboard
        _card(page, str(shipping.pk), first).locator("select").select_option("none")
        _card(page, "none", first).wait_for(timeout=TIMEOUT)
        with schema_context(schema):
            assert not Session.objects.get(pk=first.pk).labels.exists()
    finally:
        context.close()


def test_an_agent_exports_the_inbox_view(served, browser, django_db_blocker):
    desk = _desk(django_db_blocker, "listexport")
    schema = desk.tenant.schema_name
    agent = desk.agents[0]
    chats = [_chat(desk, f"question {i}") for i in range(3)]
    host = f"{schema}.localhost"
    context = browser.new_context(locale="en-US", accept_downloads=True)
    try:
        page = context.new_page()
        _sign_in(page, served.url(host, "/inbox/login/"), agent.username)
        # the agent looks at "All open" and exports it as CSV
        page.click('.view-chip[data-view="open"]')
        page.click("#view-export")
        assert "All open" in page.inner_text("#ed-summary")
        page.select_option("#ed-format", "csv")
        page.click("#ed-start")
        # the worker writes it; the dialog says so and offers the file
        page.locator("#ed-download").wait_for(state="visible", timeout=TIMEOUT)
        assert "3 conversations exported" in page.inner_text("#ed-state")
        assert page.get_attribute("#ed-progress", "value") == "100"
        with page.expect_download(timeout=TIMEOUT) as download:
            page.click("#ed-download")
        text = Path(download.value.path()).read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][0] == "conversation_id"
        assert sorted(int(r[0]) for r in rows[1:]) == sorted(s.conversation_id for s in chats)
        assert {r[3] for r in rows[1:]} == {s.visitor.name for s in chats}
    finally:
        context.close()
