"""Custom attributes and merging contacts in real Chromium: an agent sets a contact's plan and a
conversation's order number in the visitor panel, narrows the list to plan = vip, and merges the
customer's other contact (found by e-mail) into this one; the past conversations follow."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import AttributeDefinition, Session, Visitor
from kefu.services import messages
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, make_visitor, unique
from tests.e2e.test_live_chat import TIMEOUT, _sign_in
from tests.waits import wait_until

pytestmark = pytest.mark.e2e


def _chat(desk, visitor, text: str) -> Session:
    with schema_context(desk.tenant.schema_name):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
        )
        return Session.objects.filter(visitor=visitor).latest("pk")


def test_an_agent_sets_attributes_filters_by_them_and_merges_a_contact(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock():
        schema = unique("attrs")
        tenant = tenant_create(
            name="Attrs", schema_name=schema, domain=f"{schema}.localhost",
            admin_username="bob", admin_password=PASSWORD,
        )  # fmt: skip
        desk = make_desk(tenant, agents=1)
    agent = desk.agents[0]
    with schema_context(schema):
        AttributeDefinition.objects.create(
            applies_to="contact", key="plan", name="Plan", kind="list", options="free\npro\nvip"
        )
        AttributeDefinition.objects.create(
            applies_to="conversation", key="order_no", name="Order number", kind="text"
        )
    # given a customer writing now, another one, and the first customer's earlier contact
    customer, _ = make_visitor(desk)
    other, _ = make_visitor(desk)
    earlier, _ = make_visitor(desk)
    with schema_context(schema):
        Visitor.objects.filter(pk=earlier.pk).update(name="Ann (old)", email="ann@example.com")
    old = _chat(desk, earlier, "an old question about my order")
    with schema_context(schema):
        Session.objects.filter(pk=old.pk).update(status="closed")
    session = _chat(desk, customer, "Where is order A-1001?")
    _chat(desk, other, "just looking")
    host = f"{schema}.localhost"
    context = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, daphne_server.url(host, "/inbox/login/"), agent.username)
        page.locator(f'.conv-item[data-id="{session.conversation_id}"]').click(timeout=TIMEOUT)
        page.locator("#messages .msg", has_text="A-1001").wait_for(timeout=TIMEOUT)
        # when the agent sets the plan and the order number in the visitor panel
        page.locator("#attr-contact-plan").wait_for(timeout=TIMEOUT)
        page.select_option("#attr-contact-plan", "vip")
        page.locator("#attr-conversation-order_no").wait_for(timeout=TIMEOUT)
        page.fill("#attr-conversation-order_no", "A-1001")
        page.click("#attr-save")
        wait_until(lambda: page.inner_text("#attr-status") == "Attributes saved.", what="saved")
        # then they are stored
        with schema_context(schema):
            assert Visitor.objects.get(pk=customer.pk).attributes == {"plan": "vip"}
            assert Session.objects.get(pk=session.pk).attributes == {"order_no": "A-1001"}
        # the list narrowed to plan = vip shows this conversation, not the other one
        page.click('.view-chip[data-view="open"]')
        page.locator(f'.conv-item[data-id="{_id(schema, other)}"]').wait_for(timeout=TIMEOUT)
        page.click("#view-attribute")
        page.select_option("#af-key", "plan")
        page.select_option("#af-choice", "vip")
        page.click("#af-apply")
        wait_until(
            lambda: page.locator(f'.conv-item[data-id="{_id(schema, other)}"]').count() == 0,
            what="the other conversation filtered out",
        )
        assert page.locator(f'.conv-item[data-id="{session.conversation_id}"]').count() == 1
        assert "plan=vip" in page.inner_text("#view-attribute")
        # when the agent merges the customer's earlier contact, found by e-mail
        page.locator(f'.conv-item[data-id="{session.conversation_id}"]').click()
        page.click("#contact-merge-open")
        page.fill("#cmg-q", "ann@exa")
        page.click("#cmg-search")
        page.locator(f'#cmg-results button[data-id="{earlier.pk}"]').click(timeout=TIMEOUT)
        # then the earlier conversation is among this contact's past conversations
        wait_until(lambda: page.locator("#v-past li").count() == 2, what="two past conversations")
        with schema_context(schema):
            assert Session.objects.get(pk=old.pk).visitor_id == customer.pk
            merged = Visitor.objects.get(pk=customer.pk)
            assert merged.email == "ann@example.com"
            assert Visitor.objects.get(pk=earlier.pk).merged_into_id == customer.pk
    finally:
        context.close()


def _id(schema: str, visitor: Visitor) -> int:
    with schema_context(schema):
        return Session.objects.filter(visitor=visitor).latest("pk").conversation_id
