"""Files in the widget and the embed snippet, in real Chromium (issue 11, items 1 and 5).

A visitor sends a picture (the attach button), a PDF (dropped on the chat) and a pasted picture,
and the agent sees them in the inbox; the agent sends a picture and the visitor sees it — a
picture, not an empty bubble — and downloads it; an agent's voice clip gets a player; a file over the limit and a refused type are explained in the widget;
the download URL refuses another visitor's token and no token. The snippet copied from the back
office, pasted into a page of another origin, loads the widget and chats.
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context
from PIL import Image

from im.attachments import attachment_upload
from im.models import Message, MessagingSettings
from kefu.models import Session
from kefu.services import messages
from tests.conftest import PASSWORD, make_visitor, unique
from tests.e2e.test_live_chat import _sign_in, fresh_desk
from tests.im.test_files import _ogg_voice
from tests.servers import free_port
from tests.waits import WAIT_MS, wait_until

pytestmark = pytest.mark.e2e
TIMEOUT = WAIT_MS
LIMIT = 300 * 1024  # the tenant's file limit in these tests (bytes)


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), color).save(out, "PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def desk(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        desk = fresh_desk("files")
        with schema_context(desk.tenant.schema_name):
            limits = MessagingSettings.current()
            MessagingSettings.objects.filter(pk=limits.pk).update(max_file_bytes=LIMIT)
        return desk


def _open_widget(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.click("#weiyu-launcher")
    widget = page.frame_locator("#weiyu-frame")
    widget.locator("#conn-status[data-state='open']").wait_for(state="attached", timeout=TIMEOUT)
    return page, widget


def _loaded(locator) -> bool:
    """Whether an <img> was fetched and decoded (an empty bubble has none, a refused URL none)."""
    return locator.evaluate("img => img.complete && img.naturalWidth > 0")


def _served_session(desk, *, conversation_id: int | None = None) -> Session:
    """The newest session of the desk's channel (or the one of ``conversation_id``) once an agent
    serves it (assignment follows the first message's commit)."""
    with schema_context(desk.tenant.schema_name):
        sessions = Session.objects.filter(channel=desk.channel, agent__isnull=False).exclude(
            status="closed"
        )
        if conversation_id is not None:
            sessions = sessions.filter(conversation_id=conversation_id)
        return wait_until(
            lambda: sessions.order_by("-id").first(), what="the visitor's conversation served"
        )


def test_visitor_and_agent_exchange_pictures_and_files(daphne_server, browser, desk):
    from playwright.sync_api import expect

    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="en-US", accept_downloads=True)
    agent_ctx = browser.new_context(locale="en-US")
    try:
        # given the widget open on the tenant's site and the agent's inbox
        site, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
        inbox = agent_ctx.new_page()
        _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)

        # when the visitor sends a picture with the attach button
        widget.locator("#file-input").set_input_files(
            files=[{"name": "receipt.png", "mimeType": "image/png", "buffer": _png((200, 40, 40))}]
        )
        mine = widget.locator("#messages .msg.mine[data-type='image'] img.msg-image")
        expect(mine).to_have_count(1, timeout=TIMEOUT)
        # and drops a PDF on the chat
        frame = site.wait_for_selector("#weiyu-frame").content_frame()
        drop = frame.evaluate_handle(
            """(bytes) => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(bytes)], 'invoice.pdf',
                                        {type: 'application/pdf'}));
                return data;
            }""",
            list(PDF),
        )
        frame.locator("#chat").dispatch_event("dragenter", {"dataTransfer": drop})
        frame.locator("#chat").dispatch_event("drop", {"dataTransfer": drop})
        expect(widget.locator("#messages .msg.mine[data-type='file'] .file-name")).to_have_text(
            "invoice.pdf", timeout=TIMEOUT
        )
        # and pastes a picture into the message box
        frame.locator("#composer").evaluate(
            """(box, bytes) => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(bytes)], 'pasted.png',
                                        {type: 'image/png'}));
                box.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data,
                                                               bubbles: true, cancelable: true}));
            }""",
            list(_png((40, 160, 40))),
        )
        expect(mine).to_have_count(2, timeout=TIMEOUT)
        failed = widget.locator("#messages .msg.mine[data-state='failed']")
        expect(failed).to_have_count(0)

        # then the agent sees both in the inbox
        conversation_id = _served_session(desk).conversation_id
        inbox.locator(f'.conv-item[data-id="{conversation_id}"]').click(timeout=TIMEOUT)
        picture = inbox.locator(
            f'#messages .msg[data-conversation="{conversation_id}"] img.msg-image'
        )
        expect(picture).to_have_count(2, timeout=TIMEOUT)
        wait_until(lambda: _loaded(picture.first), what="the visitor's picture in the inbox")
        expect(
            inbox.locator(f'#messages .msg[data-conversation="{conversation_id}"] .file-name')
        ).to_have_text("invoice.pdf", timeout=TIMEOUT)
        wait_until(lambda: _loaded(mine.first), what="the visitor's own picture in the widget")

        # when the agent sends a picture
        inbox.locator("#attach-input").set_input_files(
            files=[{"name": "map.png", "mimeType": "image/png", "buffer": _png((30, 90, 200))}]
        )
        # then the visitor sees the picture, not an empty bubble
        theirs = widget.locator("#messages .msg.theirs[data-type='image'] img.msg-image")
        expect(theirs).to_have_count(1, timeout=TIMEOUT)
        wait_until(lambda: _loaded(theirs), what="the agent's picture in the widget")
        # and opens it and downloads the file
        theirs.click()
        with site.expect_download(timeout=TIMEOUT) as download:
            widget.locator("#image-preview .preview-download").click()
        saved = Path(download.value.path()).read_bytes()
        assert saved.startswith(b"\x89PNG")
        assert Image.open(io.BytesIO(saved)).getpixel((10, 10)) == (30, 90, 200)

        # the download URL refuses no token and another visitor's token (fetched from the
        # widget's own origin, as a browser would)
        src = theirs.get_attribute("src")
        path = src.split("?")[0]
        _, other_token = make_visitor(desk)

        def status(url: str) -> int:
            return frame.evaluate("async (u) => (await fetch(u)).status", url)

        assert status(path) == 401
        assert status(f"{path}?token={other_token}") == 404
        assert status(src) == 200

        # when the agent sends a voice clip, the visitor gets a player fed by its token
        with schema_context(desk.tenant.schema_name):
            clip = attachment_upload(
                conversation_id=conversation_id,
                uploader_key=desk.agents[0].member_key,
                upload=SimpleUploadedFile("clip.ogg", _ogg_voice(), content_type="audio/ogg"),
                kind="voice",
                duration_ms=3000,
            )
            messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=conversation_id,
                msg_type="voice",
                attachment_id=clip.pk,
                client_msg_id=unique("v"),
            )
        player = widget.locator("#messages .msg.theirs[data-type='voice'] audio.msg-audio")
        expect(player).to_have_count(1, timeout=TIMEOUT)
        assert status(player.get_attribute("src")) == 200

        # when the visitor picks a file over the limit, or one of a refused type
        widget.locator("#file-input").set_input_files(
            files=[
                {"name": "huge.pdf", "mimeType": "application/pdf", "buffer": PDF + b"0" * LIMIT}
            ]
        )
        error = widget.locator("#upload-error")
        expect(error).to_contain_text("huge.pdf is larger than", timeout=TIMEOUT)
        widget.locator("#file-input").set_input_files(
            files=[
                {
                    "name": "setup.pdf",
                    "mimeType": "application/pdf",
                    "buffer": b"MZ\x90\x00" + b"\x00" * 512,
                }
            ]
        )
        # then the widget says why, and nothing of it reached the agent
        expect(error).to_contain_text("Files of this type cannot be sent.", timeout=TIMEOUT)
        with schema_context(desk.tenant.schema_name):
            kinds = list(
                Message.objects.filter(conversation_id=conversation_id)
                .exclude(sender_type="system")
                .order_by("seq")
                .values_list("sender_type", "msg_type")
            )
        assert kinds == [
            ("visitor", "image"),
            ("visitor", "file"),
            ("visitor", "image"),
            ("agent", "image"),
            ("agent", "voice"),
        ]
    finally:
        visitor_ctx.close()
        agent_ctx.close()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on another port of 127.0.0.1 (another origin than the tenant's),
    serving the files of a temporary folder."""
    folder = tmp_path
    port = free_port()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_snippet_copied_from_the_back_office_works_on_another_origin(
    daphne_server, browser, desk, other_origin
):
    from playwright.sync_api import expect

    site_url, folder = other_origin
    host = f"{desk.tenant.schema_name}.localhost"
    base = daphne_server.url(host, "").rstrip("/")
    admin_ctx = browser.new_context(locale="en-US")
    admin_ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    visitor_ctx = browser.new_context(locale="en-US")
    try:
        # given the tenant's admin on the channel's page of the back office
        admin = admin_ctx.new_page()
        admin.goto(f"{base}/admin/login/?next=/admin/")
        admin.fill("#id_username", "bob")
        admin.fill("#id_password", PASSWORD)
        admin.click("input[type=submit], button[type=submit]")
        admin.wait_for_url("**/admin/", timeout=TIMEOUT)
        admin.goto(f"{base}/admin/kefu/channel/{desk.channel.pk}/change/")

        # when they copy the snippet with one click
        admin.locator("button[data-copy='weiyu-snippet']").click()
        expect(admin.locator("button[data-copy='weiyu-snippet']")).to_have_text("Copied")
        snippet = admin.evaluate("navigator.clipboard.readText()")
        key = desk.channel.public_key
        assert snippet == f'<script src="{base}/widget.js" data-channel="{key}" async></script>'
        # the preview link opens a page carrying this widget
        preview = admin.locator("#weiyu-snippet-preview")
        assert preview.get_attribute("href") == f"{base}/?channel={key}"

        # and paste it into a page on another origin
        (folder / "index.html").write_text(
            "<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>"
            f"{snippet}</body></html>",
            encoding="utf-8",
        )
        page = visitor_ctx.new_page()
        page.goto(f"{site_url}/index.html")
        page.click("#weiyu-launcher", timeout=TIMEOUT)
        widget = page.frame_locator("#weiyu-frame")
        widget.locator("#conn-status[data-state='open']").wait_for(
            state="attached", timeout=TIMEOUT
        )
        widget.locator("#composer").fill("Hello from the shop page")
        widget.locator("#send").click()

        # then the visitor chats: the message is stored, the agent's answer shows
        with schema_context(desk.tenant.schema_name):
            said = wait_until(
                lambda: Message.objects.filter(content="Hello from the shop page").first(),
                what="the visitor's message",
            )
        session = _served_session(desk, conversation_id=said.conversation_id)
        with schema_context(desk.tenant.schema_name):
            messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                content="Welcome to the shop!",
                client_msg_id=unique("a"),
            )
        expect(widget.locator("#messages .msg.theirs .msg-text")).to_contain_text(
            ["Welcome to the shop!"], timeout=TIMEOUT
        )
    finally:
        admin_ctx.close()
        visitor_ctx.close()
