"""Agents' inbox tabs dropped and resumed while visitors write (docs/protocol.md §3, "sync").

Each tab is the reference client (``static/weiyu/client.js``) in real Chromium; tabs are dropped
at random and come back by themselves. Conversations are assigned while tabs are open (so their
first message predates the agent) and while tabs are away (so tabs learn of them on resuming).
After a last resume every tab of an agent must hold every message of that agent's
conversations, each handed to the page once.
"""

from __future__ import annotations

import random

import pytest
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import Session
from kefu.services import messages as kefu_messages
from kefu.services.visitors import visitor_start
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, session_cookie, unique
from tests.waits import WAIT_MS, wait_until

pytestmark = pytest.mark.e2e

TABS = 3  # per agent
OPEN_TABS = """
async ({ wsUrl, n }) => {
  const { WeiyuClient } = await import('/static/weiyu/client.js');
  window.tabs = [];
  for (let i = 0; i < n; i++) {
    const tab = { held: new Map(), handed: 0, syncs: 0 };
    const keep = (m) => {
      const c = String(m.conversation_id);
      if (!tab.held.has(c)) tab.held.set(c, new Set());
      tab.held.get(c).add(m.seq);
      tab.handed += 1;
    };
    tab.client = new WeiyuClient({
      url: wsUrl,
      onFrame: (f) => {
        if (f.type === 'message.new' && f.message) keep(f.message);
        if (f.type === 'sync.result' || f.type === 'history.result') (f.messages || []).forEach(keep);
        if (f.type === 'sync.result') tab.syncs += 1;
      },
    });
    window.tabs.push(tab);
  }
}
"""
DROP = "(i) => { const c = window.tabs[i].client; if (c.ws) c._drop(c.ws); }"
STATE = """() => window.tabs.map((t) => ({
  open: t.client.connected,
  syncs: t.syncs,
  handed: t.handed,
  held: Object.fromEntries([...t.held].map(([c, s]) => [c, [...s].sort((a, b) => a - b)])),
}))"""


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        schema = unique("churn")
        tenant = tenant_create(
            name="Churn",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="bob",
            admin_password=PASSWORD,
        )
        return make_desk(tenant, agents=2, cap=20)


def _say(visitor, conversation_id: int | None, text: str) -> int:
    message, _created = kefu_messages.visitor_message_send(
        visitor=visitor, conversation_id=conversation_id, content=text, client_msg_id=unique("c")
    )
    return message.conversation_id


def _open_tabs(browser, server, desk) -> list:
    """A page per agent on the tenant's site holding ``TABS`` clients, each synced once."""
    host = f"{desk.tenant.schema_name}.localhost"
    pages = []
    for agent in desk.agents:
        context = browser.new_context()
        name, value = session_cookie(desk.tenant, agent).decode().split("=", 1)
        context.add_cookies([{"name": name, "value": value, "url": server.url(host)}])
        page = context.new_page()
        page.goto(server.url(host, "/help/"))
        page.evaluate(OPEN_TABS, {"wsUrl": f"ws://{host}:{server.port}/ws/agent/", "n": TABS})
        pages.append(page)
    for page in pages:
        page.wait_for_function("() => window.tabs.every((t) => t.syncs > 0)", timeout=WAIT_MS)
    return pages


def _visitors_write(desk, pages) -> dict[int, dict[str, list[int]]]:
    """Six visitors write ten messages each while tabs drop at random: three start with every
    tab open, three while every tab is away. Returns, per agent, the seqs of each conversation
    they serve (conversation id as a string)."""
    rng = random.Random(7)  # noqa: S311 - a reproducible schedule, not a secret

    def drop_some(share: float) -> None:
        for page in pages:
            for i in range(TABS):
                if rng.random() < share:
                    page.evaluate(DROP, i)

    with schema_context(desk.tenant.schema_name):
        visitors = [visitor_start(channel=desk.channel, language="en")[0] for _ in range(6)]
        chats: dict[int, int] = {v.pk: _say(v, None, "hello") for v in visitors[:3]}
        for round_no in range(1, 10):
            drop_some(1.0 if round_no == 4 else 0.3)
            if round_no == 4:
                chats.update({v.pk: _say(v, None, "hello") for v in visitors[3:]})
            for v in visitors:
                if v.pk in chats:
                    _say(v, chats[v.pk], f"message {round_no}")
        served = dict(
            Session.objects.filter(conversation_id__in=chats.values()).values_list(
                "conversation_id", "agent_id"
            )
        )
        assert None not in served.values()
        return {
            agent.pk: {
                str(cid): sorted(
                    Message.objects.filter(conversation_id=cid).values_list("seq", flat=True)
                )
                for cid, agent_id in served.items()
                if agent_id == agent.pk
            }
            for agent in desk.agents
        }


def _resume_all(pages) -> None:
    """Drop every tab once more and wait until each has synced again."""
    for page in pages:
        before = [t["syncs"] for t in page.evaluate(STATE)]
        for i in range(TABS):
            page.evaluate(DROP, i)
        page.wait_for_function(
            "(before) => window.tabs.every((t, i) => t.client.connected && t.syncs > before[i])",
            arg=before,
            timeout=WAIT_MS,
        )


def test_dropped_tabs_resume_every_message_once(daphne_server, browser, desk):
    # given two agents with three open tabs each
    pages = _open_tabs(browser, daphne_server, desk)
    # when visitors write while tabs drop and resume, and every tab resumes once more at the end
    expected = _visitors_write(desk, pages)
    _resume_all(pages)
    # then every tab holds every message of its agent's conversations, each handed out once
    for agent, page in zip(desk.agents, pages, strict=True):
        want = expected[agent.pk]

        def complete(page=page, want=want):
            tabs = page.evaluate(STATE)
            done = all(all(t["held"].get(c) == seqs for c, seqs in want.items()) for t in tabs)
            return tabs if done else None

        try:
            tabs = wait_until(complete, what=f"{agent.username}'s tabs to hold every message")
        except AssertionError:
            missing = [
                {c: sorted(set(seqs) - set(t["held"].get(c, []))) for c, seqs in want.items()}
                for t in page.evaluate(STATE)
            ]
            pytest.fail(f"tabs of {agent.username} miss messages: {missing}")
        for tab in tabs:
            assert tab["handed"] == sum(len(seqs) for seqs in tab["held"].values())
    for page in pages:
        page.context.close()
