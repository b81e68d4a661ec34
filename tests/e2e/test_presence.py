"""Visitors are assigned only to agents who are there — an inbox open and the status online —
and an agent who comes back finds the status they chose last. Real Chromium.

The agents here never had an inbox record made for them (``inbox=False``): they are there only
once their browser's inbox has connected. The grace after the last inbox closed is one second,
waited for by running the service timers' scan until it has acted.
"""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from im.services import groups as im_groups
from kefu.models import AgentState, Session
from kefu.services import agents as kefu_agents
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_agent, make_desk, unique
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in
from tests.waits import wait_until

pytestmark = pytest.mark.e2e

#: Installed in the widget before anything is sent: remembers whether the queue position and
#: "nobody is available" were ever on screen together.
WATCH_BANNERS = """() => {
  const q = document.getElementById('queue-banner');
  const o = document.getElementById('offline-banner');
  window.__bothShown = false;
  const check = () => { if (!q.hidden && !o.hidden) window.__bothShown = true; };
  const watch = new MutationObserver(check);
  for (const el of [q, o]) watch.observe(el, { attributes: true, childList: true, subtree: true });
  check();
}"""


def _desk(prefix: str, *, agents: int = 1):
    schema = unique(prefix)
    tenant = tenant_create(
        name=prefix.title(), schema_name=schema, domain=f"{schema}.localhost",
        admin_username="bob", admin_password=PASSWORD,
    )  # fmt: skip
    return make_desk(tenant, agents=agents, inbox=False)


def _widget_frame(page):
    """The widget's frame (for evaluating scripts in it)."""
    return page.wait_for_selector("#weiyu-frame", timeout=TIMEOUT).content_frame()


def _session(schema: str) -> Session | None:
    with schema_context(schema):
        return Session.objects.order_by("-id").first()


def test_a_visitor_waits_while_no_inbox_is_open_and_is_served_once_one_is(
    daphne_server, browser, django_db_blocker
):
    # given a workgroup whose only agent chose "online" but has not opened the inbox
    with django_db_blocker.unblock():
        desk = _desk("absent")
    schema = desk.tenant.schema_name
    host = f"{schema}.localhost"
    agent = desk.agents[0]
    visitor_ctx = browser.new_context(locale="en-US")
    agent_ctx = browser.new_context(locale="en-US")
    try:
        page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _widget_frame(page).evaluate(WATCH_BANNERS)
        # the widget says nobody is available (the agent is not there)
        widget.locator("#offline-banner").wait_for(timeout=TIMEOUT)
        assert "Nobody is available" in widget.locator("#offline-banner").inner_text()

        # when the visitor writes anyway, they wait in the queue, unassigned
        _say(widget, "Is anyone there?")
        with django_db_blocker.unblock():
            queued = wait_until(lambda: _session(schema), what="the session")
        assert queued.status == Session.Status.QUEUED
        assert queued.agent_id is None
        widget.locator("#messages .msg", has_text="Is anyone there?").wait_for(timeout=TIMEOUT)
        # and are told nobody is available, not a place in the queue
        assert widget.locator("#offline-banner").is_visible()
        assert not widget.locator("#queue-banner").is_visible()

        # when the agent signs in, the visitor is theirs: the inbox lists it, the widget says so
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        inbox.locator(f'.conv-item[data-id="{queued.conversation_id}"]').wait_for(timeout=TIMEOUT)
        widget.locator(
            "#messages .msg.system", has_text=f"{agent.name} is now serving you."
        ).wait_for(timeout=TIMEOUT)
        widget.locator("#offline-banner").wait_for(state="hidden", timeout=TIMEOUT)
        assert not widget.locator("#queue-banner").is_visible()
        inbox.locator("#agent-load", has_text="1/5").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(schema):
            assert Session.objects.get(pk=queued.pk).agent_id == agent.pk
        # the queue position and "nobody is available" were never shown together
        assert _widget_frame(page).evaluate("() => window.__bothShown") is False
    finally:
        visitor_ctx.close()
        agent_ctx.close()


def test_a_returning_agent_gets_the_status_chosen_last_and_the_load_counts_customers_only(
    daphne_server, browser, django_db_blocker, monkeypatch
):
    # given an agent with a 1:1 team chat and a team group
    with django_db_blocker.unblock():
        desk = _desk("return")
        agent = desk.agents[0]
        with schema_context(desk.tenant.schema_name):
            colleague = make_agent(inbox=False)
            im_groups.direct_get_or_create(user=agent, other_user_id=colleague.pk)
            im_groups.group_create(creator=agent, title="Team", member_ids=[colleague.pk])
    schema = desk.tenant.schema_name
    host = f"{schema}.localhost"
    visitor_ctx = browser.new_context(locale="en-US")
    first_ctx = browser.new_context(locale="en-US")
    second_ctx = browser.new_context(locale="en-US")
    try:
        inbox = first_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        status = inbox.locator("#agent-status")
        inbox.locator("#status-wrap[data-status='online']").wait_for(timeout=TIMEOUT)
        assert status.input_value() == "online"
        # when a visitor writes, the agent's load is that one conversation — team chats are not
        page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _widget_frame(page).evaluate(WATCH_BANNERS)
        _say(widget, "Where is my parcel?")
        widget.locator(
            "#messages .msg.system", has_text=f"{agent.name} is now serving you."
        ).wait_for(timeout=TIMEOUT)
        inbox.locator("#agent-load", has_text="1/5").wait_for(timeout=TIMEOUT)
        inbox.locator("#tab-team").click()
        inbox.locator(".conv-item", has_text="Team").wait_for(timeout=TIMEOUT)
        inbox.locator(".conv-item", has_text=colleague.name).wait_for(timeout=TIMEOUT)
        assert inbox.locator("#agent-load").inner_text() == "1/5"

        # when the agent chooses "away" and closes the inbox
        status.select_option("away")
        with django_db_blocker.unblock():
            wait_until(
                lambda: _state(schema, agent).status == "away", what="the status to be saved"
            )
        first_ctx.close()
        # then past the grace they are gone; the visitor is back in the queue and told why …
        monkeypatch.setenv("AGENT_OFFLINE_GRACE_S", "1")
        with django_db_blocker.unblock():
            wait_until(lambda: _gone(schema, agent), what="the scan to find the agent gone")
        widget.locator("#messages .msg.system", has_text=f"{agent.name} had to leave.").wait_for(
            timeout=TIMEOUT
        )
        # … and, nobody being there, reads that rather than a place in the queue
        widget.locator("#offline-banner").wait_for(timeout=TIMEOUT)
        assert not widget.locator("#queue-banner").is_visible()

        # when they sign in again, they are "away" as they chose, and get nobody
        inbox = second_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), agent.username)
        inbox.locator("#status-wrap[data-status='away']").wait_for(timeout=TIMEOUT)
        assert inbox.locator("#agent-status").input_value() == "away"
        inbox.locator("#agent-load", has_text="0/5").wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(schema):
            assert Session.objects.get(visitor__channel=desk.channel).agent_id is None
        # when they go online, the visitor is theirs again
        inbox.locator("#agent-status").select_option("online")
        widget.locator("#messages .msg.system", has_text="is now serving you.").nth(1).wait_for(
            timeout=TIMEOUT
        )
        inbox.locator("#agent-load", has_text="1/5").wait_for(timeout=TIMEOUT)
        assert _widget_frame(page).evaluate("() => window.__bothShown") is False
    finally:
        for context in (visitor_ctx, first_ctx, second_ctx):
            context.close()


def _state(schema: str, user) -> AgentState:
    with schema_context(schema):
        return AgentState.objects.get(user=user)


def _gone(schema: str, user) -> bool:
    with schema_context(schema):
        kefu_agents.offline_scan()
    return not _state(schema, user).connected
