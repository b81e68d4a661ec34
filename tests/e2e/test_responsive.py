"""The inbox at phone, tablet and laptop widths (375, 768 and 1366 px), in real Chromium.

One agent's whole round at each width: open a visitor's conversation, answer with a canned
response, reach the side panel (a drawer below 1100 px) and add a tag and a note, see transfer
and blocking, create a ticket from the conversation, come back and close it, and reach the team
tab. Every control is used only after checking that it lies inside the viewport and that a
click at its centre lands on it — present in the page is not enough.

``WEIYU_SCREENSHOT_DIR=docs/img`` also saves ``inbox-<width>.png`` there (the pictures in
docs/inbox.md are made so).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from kefu.management.commands.demo_setup import DEMO_CANNED
from kefu.models import CannedResponse, VisitorNote
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk
from tests.waits import wait_until
from tickets.models import Ticket

pytestmark = pytest.mark.e2e

VIEWPORTS = [(375, 812), (768, 1024), (1366, 768)]
DRAWER_BELOW = 1100  # px: narrower, the side panel is a drawer behind "Details"
ONE_VIEW_BELOW = 700  # px: narrower, the list and the conversation are separate views

# Nothing may be wider than its box: what sticks out of these is cut off for the user.
FITS = """() => ['#app', '.columns', '#conv-pane', '#conversation', '.conv-header',
  '#composer-tools', '#composer-form', '#visitor-panel', '.topbar']
  .map((s) => document.querySelector(s))
  .filter((el) => el && el.offsetParent !== null && getComputedStyle(el).overflowX !== 'auto')
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => `${el.id || el.className}: ${el.scrollWidth} > ${el.clientWidth}`)"""

SCROLL = "(el) => { el.scrollIntoView({ block: 'nearest', inline: 'nearest' }); return true; }"

HIT = """(el) => {
  const r = el.getBoundingClientRect();
  const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
  return !!at && (at === el || el.contains(at));
}"""


def _reachable(page, locator):
    """``locator`` once it is wholly inside the viewport (scrolled into view within its own
    pane, as a user would scroll) and on top where a click would land; returns it."""
    expect(locator).to_be_visible(timeout=TIMEOUT)
    size = page.viewport_size
    box = wait_until(lambda: _in_view(locator, size), what=f"{locator} in the viewport")
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] + 0.5, box
    assert box["y"] >= 0, box
    assert box["y"] + box["height"] <= size["height"] + 0.5, box
    # the page itself never scrolls: only its panes do
    page_scroll = "() => [scrollX, scrollY, document.getElementById('app').scrollTop]"
    assert page.evaluate(page_scroll) == [0, 0, 0]
    assert page.evaluate(FITS) == []
    wait_until(lambda: _attempt(locator.evaluate, HIT), what=f"{locator} to be on top")
    return locator


def _in_view(locator, size):
    """Scroll ``locator`` into view; its box once it is (nearly) all inside the viewport and
    its pane, else None. A drawer still sliding in, or a list redrawn meanwhile (the notes after
    adding one), only means trying again."""
    if not _attempt(locator.evaluate, SCROLL):
        return None
    try:
        # (a fraction of a pixel cut by a pane's edge is no matter)
        expect(locator).to_be_in_viewport(ratio=0.95, timeout=2000)
    except AssertionError:
        return None
    box = locator.bounding_box(timeout=TIMEOUT)
    inside = box is not None and box["x"] + box["width"] <= size["width"] + 0.5
    return box if inside and box["y"] + box["height"] <= size["height"] + 0.5 else None


def _attempt(evaluate, script: str) -> bool:
    """``evaluate(script)``, or False when the element was redrawn in between."""
    try:
        return bool(evaluate(script, timeout=TIMEOUT))
    except PlaywrightError as exc:
        if "not attached" in str(exc) or "detached" in str(exc):
            return False
        raise


@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_the_inbox_works_at_this_width(width, height, daphne_server, browser, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk(f"w{width}")
        with schema_context(desk.tenant.schema_name):
            for shortcut, category, title, content in DEMO_CANNED:
                CannedResponse.objects.create(
                    shortcut=shortcut, category=category, title=title, content=content
                )
    host = f"{desk.tenant.schema_name}.localhost"
    drawer, one_view = width < DRAWER_BELOW, width < ONE_VIEW_BELOW
    visitor_ctx = browser.new_context(locale="zh-CN")
    agent_ctx = browser.new_context(
        locale="en-US", viewport={"width": width, "height": height}, has_touch=one_view
    )
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
        # (the visitor is routed to agents whose inbox is connected)
        inbox.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
        _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        _say(widget, "你好，我的订单什么时候发货？")

        # given a visitor's conversation in the list, the agent opens it
        _reachable(inbox, inbox.locator(".conv-item").first).click()
        if one_view:
            expect(inbox.locator("#conv-list")).to_be_hidden(timeout=TIMEOUT)
        _reachable(inbox, inbox.locator("#conv-heading"))

        # when they answer with a canned response picked by "/ship" and Send
        composer = _reachable(inbox, inbox.locator("#composer"))
        composer.click()
        composer.press_sequentially("/ship")
        _reachable(inbox, inbox.locator("#canned-list .canned-option", has_text="/ship-en"))
        composer.press("Enter")
        expect(composer).to_have_value("付款后 24 小时内发货，节假日顺延；订单满 ¥99 包邮。")
        _reachable(inbox, inbox.locator("#send")).click()
        widget.locator("#messages .msg-text", has_text="24 小时内发货").wait_for(timeout=TIMEOUT)

        # then the side panel is there (behind "Details" on narrow screens) with all it offers
        if drawer:
            expect(inbox.locator("#visitor-panel")).not_to_be_in_viewport(timeout=TIMEOUT)
            _reachable(inbox, inbox.locator("#details-btn")).click()
        else:
            expect(inbox.locator("#details-btn")).to_be_hidden()
        panel = inbox.locator("#visitor-panel")
        _reachable(inbox, panel.locator("#v-name"))
        _reachable(inbox, panel.locator("#tag-name")).fill("VIP")
        inbox.locator("#tag-name").press("Enter")
        panel.locator("#v-tags .tag-chip", has_text="VIP").wait_for(timeout=TIMEOUT)
        _reachable(inbox, panel.locator("#note-text")).fill("Asked about shipping")
        _reachable(inbox, panel.locator("#note-form button[type=submit]")).click()
        _reachable(inbox, panel.locator("#v-notes li", has_text="Asked about shipping"))
        _reachable(inbox, panel.locator("#transfer-target"))
        _reachable(inbox, panel.locator("#transfer-btn"))
        _reachable(inbox, panel.locator("#block-btn"))
        with schema_context(desk.tenant.schema_name):
            assert VisitorNote.objects.filter(text="Asked about shipping").count() == 1
        if not one_view:
            _screenshot(inbox, width)
        if drawer:
            _reachable(inbox, panel.locator("#details-close")).click()
            expect(panel).not_to_be_in_viewport(timeout=TIMEOUT)
        if one_view:
            _screenshot(inbox, width)

        # and a ticket is made from the conversation
        _reachable(inbox, inbox.locator("#make-ticket")).click()
        dialog = inbox.locator("#ticket-dialog")
        _reachable(inbox, dialog.locator("#nt-subject")).fill(f"Shipping at {width} px")
        _reachable(inbox, dialog.locator("#nt-body")).fill("Order not shipped yet")
        _reachable(inbox, dialog.locator("#nt-create")).click()
        heading = _reachable(inbox, inbox.locator("#ticket-heading"))
        with schema_context(desk.tenant.schema_name):
            ticket = Ticket.objects.get(subject=f"Shipping at {width} px")
        expect(heading).to_contain_text(f"#{ticket.number}")
        _reachable(inbox, inbox.locator("#ticket-reply-send"))

        # and, back in the conversation, the agent closes it
        if one_view:
            _reachable(inbox, inbox.locator("#ticket-back")).click()
        _reachable(inbox, inbox.locator("#tab-customers")).click()
        _reachable(inbox, inbox.locator(".conv-item").first).click()
        _reachable(inbox, inbox.locator("#close-conv")).click()
        widget.locator("#messages .msg.ended").wait_for(timeout=TIMEOUT)
        expect(inbox.locator("#close-conv")).to_be_disabled(timeout=TIMEOUT)

        # and the team tab is a tap away (from the list, on a phone)
        if one_view:
            _reachable(inbox, inbox.locator("#back")).click()
        _reachable(inbox, inbox.locator("#tab-team")).click()
        _reachable(inbox, inbox.locator("#new-chat"))
        _reachable(inbox, inbox.locator("#canned-link"))
    finally:
        visitor_ctx.close()
        agent_ctx.close()


def _screenshot(page, width: int) -> None:
    """With ``WEIYU_SCREENSHOT_DIR`` set: the screen as ``inbox-<width>.png`` there, in 128
    colours (far smaller, and still sharp for a flat interface)."""
    folder = os.environ.get("WEIYU_SCREENSHOT_DIR")
    if not folder:
        return
    page.locator("#visitor-panel").evaluate("(el) => { el.scrollTop = 0; }")
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    picture.quantize(colors=128).save(Path(folder) / f"inbox-{width}.png", optimize=True)
