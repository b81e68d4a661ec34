"""Two colleagues chat in a group in the inbox, in real Chromium: text, a picture, a file, a
recall, "read by", and a Chinese search that jumps to the hit."""

from __future__ import annotations

import io

import pytest
from django_tenants.utils import schema_context
from PIL import Image

from im.models import Conversation, Message
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_agent, unique
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS  # ms, for any one thing to show up on a screen


@pytest.fixture(scope="module")
def office(django_db_setup, django_db_blocker):
    """A fresh tenant with two staff members, Ann and Ben."""
    with django_db_blocker.unblock():
        schema = unique("office")
        tenant = tenant_create(
            name="Office",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        with schema_context(schema):
            ann = make_agent(name="ann", status="offline")
            ben = make_agent(name="ben", status="offline")
        return tenant, ann, ben


def _sign_in(page, url: str, username: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/inbox/", timeout=TIMEOUT)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def _bubble(page, text: str):
    return page.locator("#messages .msg:not(.system) .msg-text", has_text=text)


def test_two_colleagues_in_a_group(daphne_server, browser, office):
    tenant, ann, ben = office
    host = f"{tenant.schema_name}.localhost"
    ann_ctx = browser.new_context(locale="en-US")
    ben_ctx = browser.new_context(locale="en-US")
    try:
        a = ann_ctx.new_page()
        b = ben_ctx.new_page()
        _sign_in(a, daphne_server.url(host, "/inbox/login/"), ann.username)
        _sign_in(b, daphne_server.url(host, "/inbox/login/"), ben.username)

        # given Ann creates a group with Ben from the directory
        a.click("#tab-team")
        a.click("#new-group")
        a.fill("#ng-title", "项目组 Project")
        a.fill("#ng-announcement", "每周五发布 / release on Fridays")
        a.click("#ng-pick")
        a.locator("#people-dialog .person", has_text=ben.name).click(timeout=TIMEOUT)
        a.click("#people-dialog .people-ok")
        assert a.locator("#ng-members").inner_text() == ben.name
        a.click("#ng-create")
        a.locator("#conv-heading", has_text="项目组 Project").wait_for(timeout=TIMEOUT)
        assert "release on Fridays" in a.locator("#announcement").inner_text()
        assert a.locator("#conv-heading-status").text_content() == "2 members"

        # then it appears in Ben's team list live, and he opens it
        b.click("#tab-team")
        b.locator(".conv-item", has_text="项目组 Project").click(timeout=TIMEOUT)
        b.locator("#conv-heading", has_text="项目组 Project").wait_for(timeout=TIMEOUT)

        # when Ann sends text, Ben sees it once; once he has read it, Ann sees "read by everyone"
        a.fill("#composer", "大家好，明天上午十点开会")
        a.click("#send")
        _bubble(b, "大家好，明天上午十点开会").wait_for(timeout=TIMEOUT)
        assert _bubble(b, "大家好，明天上午十点开会").count() == 1
        a.locator("#messages .msg.mine .msg-state", has_text="read by everyone").wait_for(
            timeout=TIMEOUT
        )

        # when Ben sends a picture, Ann sees its thumbnail and can open the full picture
        b.set_input_files(
            "#attach-input",
            files=[{"name": "plan.png", "mimeType": "image/png", "buffer": _png(800, 600)}],
        )
        thumb = a.locator('#messages .msg[data-type="image"] img.msg-image')
        thumb.wait_for(timeout=TIMEOUT)
        a.wait_for_function(
            "() => { const i = document.querySelector('#messages img.msg-image');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=TIMEOUT,
        )
        assert a.evaluate("document.querySelector('#messages img.msg-image').naturalWidth") <= 320
        thumb.click()
        a.locator("#image-preview[open] img").wait_for(timeout=TIMEOUT)
        a.wait_for_function(
            "() => document.querySelector('#image-preview img').naturalWidth === 800",
            timeout=TIMEOUT,
        )
        a.click("#image-preview button")

        # when Ann sends a file, Ben gets a card that downloads exactly those bytes
        notes = "会议纪要 minutes\n".encode() * 50
        a.set_input_files(
            "#attach-input",
            files=[{"name": "minutes.txt", "mimeType": "text/plain", "buffer": notes}],
        )
        card = b.locator("#messages .file-card", has_text="minutes.txt")
        card.wait_for(timeout=TIMEOUT)
        href = card.get_attribute("href")
        body = b.evaluate(
            "async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))",
            href,
        )
        assert bytes(body) == notes

        # when Ann recalls her first message, both see it recalled and the text is gone
        mine = a.locator("#messages .msg.mine", has_text="大家好，明天上午十点开会")
        mine.hover()
        mine.locator(".msg-recall").click()
        a.locator("#messages .msg.recalled .msg-text", has_text="You recalled a message").wait_for(
            timeout=TIMEOUT
        )
        b.locator(
            "#messages .msg.recalled .msg-text", has_text=f"{ann.name} recalled a message"
        ).wait_for(timeout=TIMEOUT)
        assert _bubble(b, "十点开会").count() == 0
        with schema_context(tenant.schema_name):
            group = Conversation.objects.get(title="项目组 Project")
            original = Message.objects.get(conversation=group, recalled_at__isnull=False)
            assert original.content == ""

        # when Ben searches a Chinese phrase, the hit opens in its conversation
        a.fill("#composer", "周五下午三点发布新版本，请大家准备")
        a.click("#send")
        _bubble(b, "周五下午三点发布新版本").wait_for(timeout=TIMEOUT)
        b.fill("#search-input", "发布新版本")
        hit = b.locator("#search-results .search-hit", has_text="发布新版本")
        hit.wait_for(timeout=TIMEOUT)
        assert b.locator("#search-results .search-hit").count() == 1
        assert "项目组 Project" in hit.inner_text()
        b.fill("#search-input", "十点开会")  # recalled: never found
        b.locator("#search-results .search-head", has_text="No messages match").wait_for(
            timeout=TIMEOUT
        )
        b.fill("#search-input", "发布新版本")
        hit.click(timeout=TIMEOUT)
        b.locator("#messages .msg.hit", has_text="发布新版本").wait_for(timeout=TIMEOUT)
    finally:
        ann_ctx.close()
        ben_ctx.close()


def test_direct_chat_mentions_pin_and_archive(daphne_server, browser, office):
    tenant, ann, ben = office
    host = f"{tenant.schema_name}.localhost"
    with schema_context(tenant.schema_name):
        cai = make_agent(name="cai", status="offline")
    ann_ctx = browser.new_context(locale="en-US")
    ben_ctx = browser.new_context(locale="en-US")
    try:
        a = ann_ctx.new_page()
        b = ben_ctx.new_page()
        _sign_in(a, daphne_server.url(host, "/inbox/login/"), ann.username)
        _sign_in(b, daphne_server.url(host, "/inbox/login/"), ben.username)
        a.click("#tab-team")
        b.click("#tab-team")

        # given Ann finds Ben in the directory by name and starts a 1:1 chat
        a.click("#new-chat")
        a.fill("#people-dialog .people-search", ben.name[:4])
        a.locator("#people-dialog .person", has_text=ben.name).click(timeout=TIMEOUT)
        a.locator("#conv-heading", has_text=ben.name).wait_for(timeout=TIMEOUT)
        a.fill("#composer", "Ben, do you have a minute? 有空吗？")
        a.click("#send")
        # then Ben's list shows the chat under Ann's name, with one unread message
        item = b.locator('.conv-item[data-kind="direct"]', has_text=ann.name)
        item.locator(".conv-unread", has_text="1").wait_for(timeout=TIMEOUT)
        assert "有空吗" in item.locator(".conv-preview").inner_text()
        # and once he opens it, Ann's message reads "read"
        item.click()
        a.locator("#messages .msg.mine .msg-state", has_text="read").wait_for(timeout=TIMEOUT)

        # when Ann creates a group with Ben and Cai and @mentions Cai from the list
        a.click("#new-group")
        a.fill("#ng-title", "Launch")
        a.click("#ng-pick")
        a.locator("#people-dialog .person", has_text=ben.name).click(timeout=TIMEOUT)
        a.locator("#people-dialog .person", has_text=cai.name).click(timeout=TIMEOUT)
        a.click("#people-dialog .people-ok")
        a.click("#ng-create")
        a.locator("#conv-heading", has_text="Launch").wait_for(timeout=TIMEOUT)
        a.locator("#composer").press_sequentially("please check @" + cai.name[:3])
        a.locator("#mention-list .mention-option", has_text=cai.name).click(timeout=TIMEOUT)
        assert a.locator("#composer").input_value() == f"please check @{cai.name} "
        a.locator("#composer").press_sequentially("today")
        a.click("#send")

        # then Cai, who was not looking, sees the mention marker and the highlighted @name
        c_ctx = browser.new_context(locale="en-US")
        try:
            c = c_ctx.new_page()
            _sign_in(c, daphne_server.url(host, "/inbox/login/"), cai.username)
            c.click("#tab-team")
            launch = c.locator(".conv-item", has_text="Launch")
            launch.locator(".conv-mention", has_text="[@you]").wait_for(timeout=TIMEOUT)
            launch.click()
            c.locator("#messages .msg.mentions-me .mention", has_text=f"@{cai.name}").wait_for(
                timeout=TIMEOUT
            )
        finally:
            c_ctx.close()
        with schema_context(tenant.schema_name):
            stored = Message.objects.get(content=f"please check @{cai.name} today")
            assert stored.mentions == [cai.member_key]

        # when Ben pins the 1:1 chat it goes to the top of his list
        b.locator(".conv-item", has_text="Launch").click(timeout=TIMEOUT)
        b.locator('.conv-item[data-kind="direct"]', has_text=ann.name).click()
        b.click("#pin-btn")
        b.locator(".conv-item").first.locator(".conv-marks", has_text="📌").wait_for(
            timeout=TIMEOUT
        )
        assert ann.name in b.locator(".conv-item").first.inner_text()
        # when he archives the group it leaves the list until "Show archived" is ticked
        b.locator(".conv-item", has_text="Launch").click()
        b.click("#archive-btn")
        b.locator('.conv-item[data-kind="direct"]', has_text=ann.name).click()
        b.locator(".conv-item", has_text="Launch").wait_for(state="detached", timeout=TIMEOUT)
        b.check("#show-archived")
        b.locator(".conv-item", has_text="Launch").wait_for(timeout=TIMEOUT)
    finally:
        ann_ctx.close()
        ben_ctx.close()
