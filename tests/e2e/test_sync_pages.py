"""A resume whose missed messages are far more than one websocket frame may carry (docs/protocol.md
§2.2, ``sync`` pages): daphne refuses to send a message over 1 MiB and drops the connection, so
an inbox with long missed histories never came back. The reference client (``static/weiyu/
client.js``) in Chromium follows the pages and hands out one ``sync.result``.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from im.models import Conversation, Message
from tests.conftest import make_desk, session_cookie
from tests.kefu.conversations import customer_conversation
from tests.waits import WAIT_MS, wait_until

pytestmark = pytest.mark.e2e

CONVERSATIONS = 10
MISSED = 40  # messages per conversation while the tab is away
TEXT = "长" * 2000  # 6 KB of UTF-8: the missed messages come to about 2.4 MB
OPEN_TAB = """
async ({ wsUrl }) => {
  const { WeiyuClient } = await import('/static/weiyu/client.js');
  const tab = { held: {}, handed: 0, syncs: 0, largest: 0 };
  tab.client = new WeiyuClient({
    url: wsUrl,
    onFrame: (f) => {
      const keep = (m) => {
        (tab.held[m.conversation_id] ||= []).push(m.seq);
        tab.handed += 1;
      };
      if (f.type === 'message.new' && f.message) keep(f.message);
      if (f.type === 'sync.result') {
        tab.syncs += 1;
        f.messages.forEach(keep);
      }
    },
  });
  window.tab = tab;
}
"""


def test_a_resume_larger_than_a_frame_comes_whole_in_pages(daphne_server, browser, acme):
    # given an agent's tab holding ten conversations of one message each
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    with schema_context("acme"):
        cids = [
            customer_conversation(desk, agent, lines=[("visitor", "hello")]).conversation_id
            for _ in range(CONVERSATIONS)
        ]
    context = browser.new_context()
    name, value = session_cookie(acme, agent).decode().split("=", 1)
    context.add_cookies(
        [{"name": name, "value": value, "url": daphne_server.url("acme.localhost")}]
    )
    page = context.new_page()
    page.goto(daphne_server.url("acme.localhost", "/help/"))
    page.evaluate(OPEN_TAB, {"wsUrl": f"ws://acme.localhost:{daphne_server.port}/ws/agent/"})
    page.wait_for_function("() => window.tab.syncs > 0", timeout=WAIT_MS)

    # when, while it is away, each conversation gets 40 long messages (2.4 MB in all)
    page.evaluate("() => { const c = window.tab.client; c.close(); }")
    with schema_context("acme"):
        for cid in cids:
            Message.objects.bulk_create(
                Message(
                    conversation_id=cid,
                    seq=seq,
                    sender_key=agent.member_key,
                    sender_type=Message.SenderType.AGENT,
                    sender_user_id=agent.pk,
                    sender_name=agent.name,
                    content=f"{seq} {TEXT}",
                    client_msg_id=f"pages-{cid}-{seq}",
                )
                for seq in range(2, MISSED + 2)
            )
            Conversation.objects.filter(pk=cid).update(last_seq=MISSED + 1)
    assert MISSED * CONVERSATIONS * len(TEXT.encode()) > 2 * 1024 * 1024
    assert settings.WEIYU_SYNC_PAGE_BYTES < 1024 * 1024
    # and it comes back
    page.evaluate("() => window.tab.client.connect()")

    # then its second sync.result brings every missed message of every conversation, once
    want = {str(cid): list(range(2, MISSED + 2)) for cid in cids}

    def resumed():
        tab = page.evaluate(
            "() => ({ syncs: window.tab.syncs, handed: window.tab.handed, held: window.tab.held })"
        )
        return tab if tab["syncs"] >= 2 else None

    tab = wait_until(resumed, what="the tab to resume")
    assert {c: sorted(s) for c, s in tab["held"].items()} == want
    assert tab["handed"] == MISSED * CONVERSATIONS
    assert page.evaluate("() => window.tab.client.connected")
    context.close()
