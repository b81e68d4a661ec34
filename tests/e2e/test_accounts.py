"""An agent disabled by an administrator is signed out of the open inbox at once and told why;
the visitor they were serving is handed to a colleague. Real Chromium."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kefu.models import Session
from kefu.services import agents as kefu_agents
from org import services as org_services
from org.models import User
from tests.conftest import make_agent
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk


@pytest.mark.e2e
def test_a_disabled_agent_is_signed_out_and_their_visitor_moves_on(
    daphne_server, browser, django_db_blocker
):
    with django_db_blocker.unblock():
        desk = fresh_desk("disable")
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx, agent_ctx = browser.new_context(), browser.new_context(locale="en-US")
    try:
        # given an agent serving a visitor in the inbox
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "Is my parcel on its way?")
        inbox.locator(".conv-item").first.wait_for(timeout=TIMEOUT)

        # when an administrator disables the agent while a colleague is online
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            colleague = make_agent()
            desk.workgroup.agents.add(colleague)
            kefu_agents.agent_status_set(user=colleague, status="online")
            org_services.user_deactivate(user=User.objects.get(pk=desk.agents[0].pk))

        # then the inbox says so and offers to sign in again
        inbox.locator("#conn-status", has_text="An administrator disabled your account").wait_for(
            timeout=TIMEOUT
        )
        # and the visitor is told a colleague takes over, and is served by them
        widget.locator("#messages", has_text="another colleague").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            assert Session.objects.get(channel=desk.channel).agent_id == colleague.pk
    finally:
        visitor_ctx.close()
        agent_ctx.close()
