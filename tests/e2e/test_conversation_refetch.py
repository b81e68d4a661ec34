"""A customer conversation the inbox fetches again keeps its session part (visitor, workgroup,
status), in real Chromium: pinning it answers with the conversation from the messaging API, which
replaced the stored one without its ``session``, and the visitor's details were gone the next
time the conversation was opened."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from kefu.services import messages as kefu_messages
from tests.conftest import make_visitor, unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in, fresh_desk

pytestmark = pytest.mark.e2e


def test_visitor_details_stay_after_the_conversation_is_fetched_again(
    daphne_server, browser, django_db_blocker
):
    # given an agent whose inbox holds two customers' conversations
    with django_db_blocker.unblock():
        desk = fresh_desk("refetch")
        visitors = []
        for name in ("Ann Lee", "Bo Chen"):
            visitor, _token = make_visitor(desk)
            with schema_context(desk.tenant.schema_name):
                visitor.name = name
                visitor.save(update_fields=["name"])
                kefu_messages.visitor_message_send(
                    visitor=visitor,
                    conversation_id=None,
                    content=f"hello from {name}",
                    client_msg_id=unique("c"),
                )
            visitors.append(visitor)
    host = f"{desk.tenant.schema_name}.localhost"
    context = browser.new_context(locale="en-US")
    try:
        inbox = context.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        ann = inbox.locator(".conv-item", has_text="Ann Lee")
        ann.click(timeout=TIMEOUT)
        expect(inbox.locator("#v-name")).to_have_text("Ann Lee", timeout=TIMEOUT)
        expect(inbox.locator("#v-workgroup")).to_have_text(desk.workgroup.name, timeout=TIMEOUT)

        # when the agent pins it (the answer is the conversation, fetched again), opens the
        # other one and comes back
        inbox.locator("#pin-btn").click()
        expect(inbox.locator("#pin-btn")).to_have_attribute("aria-pressed", "true", timeout=TIMEOUT)
        inbox.locator(".conv-item", has_text="Bo Chen").click()
        expect(inbox.locator("#v-name")).to_have_text("Bo Chen", timeout=TIMEOUT)
        ann.click()

        # then the visitor's details are still shown, with the session's workgroup and status
        expect(inbox.locator("#v-name")).to_have_text("Ann Lee", timeout=TIMEOUT)
        expect(inbox.locator("#v-workgroup")).to_have_text(desk.workgroup.name, timeout=TIMEOUT)
        expect(inbox.locator("#v-status")).not_to_be_empty(timeout=TIMEOUT)
        expect(inbox.locator("#v-agent")).to_contain_text(desk.agents[0].name, timeout=TIMEOUT)
    finally:
        context.close()
