"""An agent transfers a visitor to a colleague, who accepts; the visitor sees who serves them
now. Real Chromium, three browser contexts."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import AgentState
from kefu.services import agents as kefu_agents
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, unique
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in

pytestmark = pytest.mark.e2e


def test_an_agent_transfers_to_a_colleague_who_accepts(daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        schema = unique("transfer")
        tenant = tenant_create(
            name="Transfer", schema_name=schema, domain=f"{schema}.localhost",
            admin_username="bob", admin_password=PASSWORD,
        )  # fmt: skip
        desk = make_desk(tenant, agents=2)
        first, colleague = sorted(desk.agents, key=lambda u: u.pk)
        with schema_context(schema):
            kefu_agents.agent_status_set(user=colleague, status="away")  # the visitor goes to first
    host = f"{schema}.localhost"
    contexts = [browser.new_context(locale="en-US") for _ in range(3)]
    try:
        first_inbox, colleague_inbox = contexts[0].new_page(), contexts[1].new_page()
        _sign_in(first_inbox, daphne_server.url(host, "/inbox/login/"), first.username)
        _sign_in(colleague_inbox, daphne_server.url(host, "/inbox/login/"), colleague.username)
        _page, widget = _open_widget(contexts[2], daphne_server.url(host, "/"))
        _say(widget, "I need help with an invoice")
        first_inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        first_inbox.locator("#messages .msg", has_text="help with an invoice").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(schema):
            kefu_agents.agent_status_set(user=colleague, status="online")
            assert AgentState.objects.get(user=colleague).open_count == 0

        # when the first agent transfers to the colleague with a note
        first_inbox.locator("#transfer-form").wait_for(timeout=TIMEOUT)
        first_inbox.reload()  # the colleague just came online: the picker lists them
        first_inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        first_inbox.locator(f"#transfer-agents option[value='a:{colleague.pk}']").wait_for(
            state="attached", timeout=TIMEOUT
        )
        first_inbox.select_option("#transfer-target", f"a:{colleague.pk}")
        first_inbox.fill("#transfer-note", "Invoice question, order 1234")
        first_inbox.click("#transfer-btn")
        first_inbox.locator("#transfer-status", has_text="Waiting for").wait_for(timeout=TIMEOUT)

        # then the colleague is asked, sees the note, and accepts
        offer = colleague_inbox.locator(".transfer-offer")
        offer.wait_for(timeout=TIMEOUT)
        assert "Invoice question, order 1234" in offer.inner_text()
        offer.locator("button[data-action='accept']").click()

        # and the visitor is told who serves them now
        widget.locator(
            "#messages .msg.system", has_text=f"{colleague.name} is now serving you"
        ).wait_for(timeout=TIMEOUT)
        # the colleague has the conversation open with its history; the first agent is told
        colleague_inbox.locator("#messages .msg", has_text="help with an invoice").wait_for(
            timeout=TIMEOUT
        )
        first_inbox.locator("#toast", has_text="took the conversation").wait_for(timeout=TIMEOUT)
        # and the colleague's reply reaches the visitor
        colleague_inbox.fill("#composer", "Hi, I can look at order 1234.")
        colleague_inbox.click("#send")
        widget.locator("#messages .msg", has_text="look at order 1234").wait_for(timeout=TIMEOUT)
    finally:
        for context in contexts:
            context.close()
