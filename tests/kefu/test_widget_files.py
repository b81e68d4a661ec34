"""Files in the widget (KF-1): a visitor uploads with its widget token (the staff upload's limits,
type checks and storage), sends it, and downloads only the files of its own conversations —
never another visitor's, never an internal note's; the anonymous path is rate limited (429 with
``Retry-After``); uploads nobody sent expire (the beat task)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client, override_settings
from django.utils import timezone
from django_tenants.utils import schema_context
from PIL import Image

from im.attachments import attachment_orphans_purge
from im.models import Attachment, MessagingSettings
from im.tasks import attachment_orphans_purge_task
from kefu.models import Session
from kefu.services import messages
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tests.waits import fresh_window
from weiyu.errors import ServiceError

HOST = "acme.localhost"
FILES = "/api/v1/widget/files"


def _client() -> Client:
    return Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _named(data: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def _upload(token: str | None, data: bytes, name: str, kind: str, cid: int | None = None):
    body = {"file": _named(data, name), "kind": kind}
    if token is not None:
        body["token"] = token
    if cid is not None:
        body["conversation_id"] = str(cid)
    response = _client().post(FILES, data=body)
    return response


def _download(url: str, token: str | None) -> object:
    sep = "&" if "?" in url else "?"
    return _client().get(url + (f"{sep}token={token}" if token else ""))


@pytest.fixture
def chat(acme):
    """A visitor served by an agent, with one text message already in their conversation."""
    desk = make_desk(acme, agents=1)
    visitor, token = make_visitor(desk)
    with schema_context("acme"):
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
        session = Session.objects.get(conversation_id=message.conversation_id)
        assert session.agent_id == desk.agents[0].pk
    return desk, visitor, token, message.conversation_id


def test_visitor_uploads_a_picture_before_its_first_message_and_the_agent_gets_it(acme):
    # given a visitor who has not written yet
    desk = make_desk(acme, agents=1)
    visitor, token = make_visitor(desk)

    # when it uploads a picture and sends it as its first message
    response = _upload(token, _png(), "receipt.png", "image")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["content_type"], body["width"], body["height"]) == (
        "image",
        "image/png",
        640,
        480,
    )
    assert body["url"] == f"{FILES}/{body['id']}"
    assert body["thumbnail_url"] == f"{FILES}/{body['id']}?thumb=1"
    with schema_context("acme"):
        message, created = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content=None,
            client_msg_id=unique("c"),
            msg_type="image",
            attachment_id=body["id"],
        )
        stored = Attachment.objects.get(pk=body["id"])

    # then the conversation is opened with it, the file joined it, in the staff upload's path
    assert created
    assert (message.msg_type, message.attachment_id) == ("image", body["id"])
    assert stored.conversation_id == message.conversation_id
    assert stored.file.name.startswith("acme/im/")
    # the agent serving it downloads it with the staff login, the visitor with its token
    staff = agent_client(desk.agents[0]).get(f"/api/v1/im/files/{body['id']}")
    assert staff.status_code == 200
    mine = _download(body["url"], token)
    assert mine.status_code == 200
    assert mine["Content-Type"] == "image/png"
    assert mine["X-Content-Type-Options"] == "nosniff"
    assert b"".join(mine.streaming_content).startswith(b"\x89PNG")
    thumb = _download(body["thumbnail_url"], token)
    assert thumb.status_code == 200
    assert max(Image.open(io.BytesIO(b"".join(thumb.streaming_content))).size) <= 320


def test_visitor_sends_a_pdf_into_its_conversation(chat):
    # given
    _desk, visitor, token, cid = chat
    # when
    response = _upload(token, PDF, "invoice.pdf", "file", cid)
    assert response.status_code == 201, response.json()
    with schema_context("acme"):
        message, _ = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=cid,
            content="my invoice",
            client_msg_id=unique("c"),
            msg_type="file",
            attachment_id=response.json()["id"],
        )
    # then it is a file message with a caption, served as a download
    assert (message.msg_type, message.content) == ("file", "my invoice")
    fetched = _download(response.json()["url"], token)
    assert fetched.status_code == 200
    assert fetched["Content-Disposition"].startswith("attachment;")
    assert fetched["Content-Type"] == "application/octet-stream"


def test_a_file_uploaded_before_the_conversation_was_known_joins_it(chat, acme):
    # given a file uploaded while the widget knew no conversation, then sent into the one the
    # visitor's first message opened meanwhile
    _desk, visitor, token, cid = chat
    up = _upload(token, PDF, "early.pdf", "file")
    assert up.status_code == 201
    # when another visitor tries to send it into its own conversation, nothing moves
    other, _ = make_visitor(make_desk(acme, agents=1))
    with schema_context("acme"):
        theirs, _ = messages.visitor_message_send(
            visitor=other, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        with pytest.raises(ServiceError):
            messages.visitor_message_send(
                visitor=other,
                conversation_id=theirs.conversation_id,
                content=None,
                client_msg_id=unique("c"),
                msg_type="file",
                attachment_id=up.json()["id"],
            )
        assert Attachment.objects.get(pk=up.json()["id"]).conversation_id is None
        # nor can the visitor push it into a conversation it is not in
        with pytest.raises(ServiceError):
            messages.visitor_message_send(
                visitor=visitor,
                conversation_id=theirs.conversation_id,
                content=None,
                client_msg_id=unique("c"),
                msg_type="file",
                attachment_id=up.json()["id"],
            )
        assert Attachment.objects.get(pk=up.json()["id"]).conversation_id is None
        # when the visitor sends it into its own conversation
        message, created = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=cid,
            content=None,
            client_msg_id=unique("c"),
            msg_type="file",
            attachment_id=up.json()["id"],
        )
    # then it is sent there and belongs to it
    assert created
    assert message.conversation_id == cid
    with schema_context("acme"):
        assert Attachment.objects.get(pk=up.json()["id"]).conversation_id == cid


def test_agents_picture_reaches_the_visitor_but_not_others_nor_anonymous(chat, acme):
    # given an agent who sends a picture to the visitor
    desk, _visitor, token, cid = chat
    agent = desk.agents[0]
    staff = agent_client(agent)
    up = staff.post(
        "/api/v1/im/files",
        data={"file": _named(_png(), "map.png"), "kind": "image", "conversation_id": str(cid)},
    )
    assert up.status_code == 201
    attachment_id = up.json()["id"]
    with schema_context("acme"):
        messages.agent_message_send(
            user=agent,
            conversation_id=cid,
            msg_type="image",
            attachment_id=attachment_id,
            client_msg_id=unique("a"),
        )
    _other, other_token = make_visitor(make_desk(acme, agents=1))
    url = f"{FILES}/{attachment_id}"

    # when / then: the visitor downloads it with its token
    assert _download(url, token).status_code == 200
    # another visitor's token, no token, a forged token: refused
    assert _download(url, other_token).status_code == 404
    refused = _download(url, None)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert _download(url, token[:-2] + "xx").status_code == 401
    # the staff download does not take a visitor token
    assert _client().get(f"/api/v1/im/files/{attachment_id}?token={token}").status_code == 403


def test_internal_notes_files_and_unsent_agent_uploads_stay_hidden(chat):
    # given an agent's file sent as an internal note, and one uploaded and never sent
    desk, _visitor, token, cid = chat
    agent = desk.agents[0]
    staff = agent_client(agent)

    def staff_upload(name: str) -> int:
        response = staff.post(
            "/api/v1/im/files",
            data={"file": _named(PDF, name), "kind": "file", "conversation_id": str(cid)},
        )
        assert response.status_code == 201
        return response.json()["id"]

    note_file, unsent = staff_upload("notes.pdf"), staff_upload("draft.pdf")
    with schema_context("acme"):
        messages.agent_message_send(
            user=agent,
            conversation_id=cid,
            msg_type="file",
            attachment_id=note_file,
            internal=True,
            client_msg_id=unique("n"),
        )
    # when / then the visitor can fetch neither
    assert _download(f"{FILES}/{note_file}", token).status_code == 404
    assert _download(f"{FILES}/{unsent}", token).status_code == 404
    # while the agent can
    assert staff.get(f"/api/v1/im/files/{note_file}").status_code == 200


def test_a_visitor_that_left_the_conversation_cannot_download_any_more(chat):
    # given the visitor's own file in its conversation
    _desk, visitor, token, cid = chat
    up = _upload(token, PDF, "a.pdf", "file", cid).json()
    assert _download(up["url"], token).status_code == 200
    # when it is no longer a participant
    with schema_context("acme"):
        from im.models import Participant

        Participant.objects.filter(conversation_id=cid, member_key=visitor.member_key).update(
            left_at=timezone.now()
        )
    # then
    assert _download(up["url"], token).status_code == 404


def test_refused_types_sizes_and_conversations(chat, acme):
    _desk, _visitor, token, cid = chat
    # an executable renamed .pdf
    exe = _upload(token, b"MZ\x90\x00" + b"\x00" * 200, "invoice.pdf", "file", cid)
    assert exe.status_code == 400
    assert exe.json()["error"] == "invalid"
    # a text file claimed to be a picture
    fake = _upload(token, b"hello there", "photo.png", "image", cid)
    assert fake.status_code == 400
    # larger than the tenant's limit
    with schema_context("acme"):
        limits = MessagingSettings.current()
        MessagingSettings.objects.filter(pk=limits.pk).update(max_file_bytes=100)
    try:
        big = _upload(token, PDF + b"0" * 200, "big.pdf", "file", cid)
    finally:
        with schema_context("acme"):
            MessagingSettings.objects.filter(pk=limits.pk).update(
                max_file_bytes=limits.max_file_bytes
            )
    assert big.status_code == 413
    assert big.json()["error"] == "too_large"
    # someone else's conversation
    other_desk = make_desk(acme, agents=1)
    other, _ = make_visitor(other_desk)
    with schema_context("acme"):
        theirs, _ = messages.visitor_message_send(
            visitor=other, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
    assert _upload(token, PDF, "x.pdf", "file", theirs.conversation_id).status_code == 404
    # no token
    assert _upload(None, PDF, "x.pdf", "file", cid).status_code == 401
    # a file of another visitor cannot be sent as one's own
    foreign = _upload(token, PDF, "mine.pdf", "file", cid).json()
    with schema_context("acme"), pytest.raises(ServiceError) as refused:
        messages.visitor_message_send(
            visitor=other,
            conversation_id=theirs.conversation_id,
            content=None,
            client_msg_id=unique("c"),
            msg_type="file",
            attachment_id=foreign["id"],
        )
    assert refused.value.code == "invalid"


@override_settings(
    WEIYU_RATE_LIMITS=True,
    WEIYU_VISITOR_LIMITS={**settings.WEIYU_VISITOR_LIMITS, "uploads_per_visitor_hour": 2},
)
def test_uploads_per_visitor_and_hour_are_limited_with_retry_after(chat):
    _desk, _visitor, token, cid = chat
    fresh_window(3600, need_s=60)
    # given two uploads this hour (a refused one does not count)
    assert _upload(token, b"MZ\x90\x00" + b"\x00" * 200, "x.exe", "file", cid).status_code == 400
    for _ in range(2):
        assert _upload(token, PDF, "a.pdf", "file", cid).status_code == 201
    # when a third comes
    response = _upload(token, PDF, "a.pdf", "file", cid)
    # then 429 with Retry-After (seconds, within the hour) and a JSON body that says why
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited"
    assert "2 files this hour" in body["detail"]
    assert 1 <= int(response["Retry-After"]) <= 3600 + 1
    assert body["retry_after"] == int(response["Retry-After"])


@override_settings(
    WEIYU_RATE_LIMITS=True,
    WEIYU_VISITOR_LIMITS={**settings.WEIYU_VISITOR_LIMITS, "upload_mb_per_visitor_hour": 1},
)
def test_bytes_per_visitor_and_hour_are_limited(chat, acme):
    _desk, _visitor, token, cid = chat
    fresh_window(3600, need_s=60)
    big = PDF + b"%" * (400 * 1024)  # 0.4 MB: two fit in the hour's megabyte, not three
    assert _upload(token, big, "a.pdf", "file", cid).status_code == 201
    assert _upload(token, big, "b.pdf", "file", cid).status_code == 201
    refused = _upload(token, big, "c.pdf", "file", cid)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.has_header("Retry-After")
    # another visitor has its own allowance
    _other, other_token = make_visitor(make_desk(acme, agents=1))
    assert _upload(other_token, big, "d.pdf", "file").status_code == 201


def test_orphan_uploads_expire_and_sent_ones_stay(chat):
    # given a sent file, an old unsent one, a recent unsent one
    _desk, visitor, token, cid = chat
    sent = _upload(token, PDF, "sent.pdf", "file", cid).json()["id"]
    old = _upload(token, _png(), "old.png", "image", cid).json()["id"]
    recent = _upload(token, PDF, "recent.pdf", "file", cid).json()["id"]
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=visitor,
            conversation_id=cid,
            content=None,
            client_msg_id=unique("c"),
            msg_type="file",
            attachment_id=sent,
        )
        two_days_ago = timezone.now() - dt.timedelta(days=2)
        Attachment.objects.filter(pk__in=[sent, old]).update(created_at=two_days_ago)
        old_row = Attachment.objects.get(pk=old)
        old_files = [old_row.file.name, old_row.thumbnail.name]
        assert all(default_storage.exists(name) for name in old_files)

    # when the beat's task runs for the tenant
    attachment_orphans_purge_task("acme")

    # then only the old unsent one is gone, with its file and thumbnail
    with schema_context("acme"):
        left = set(
            Attachment.objects.filter(pk__in=[sent, old, recent]).values_list("pk", flat=True)
        )
        assert left == {sent, recent}
        assert not any(default_storage.exists(name) for name in old_files)
        # and a second pass finds nothing more to do
        assert attachment_orphans_purge(older_than=dt.timedelta(hours=24)) == 0


def test_ticket_comment_files_are_not_orphans(acme):
    # given an old file on a ticket comment (the widget's "leave a message"), and an old loose one
    desk = make_desk(acme, agents=1)
    _visitor, token = make_visitor(desk)
    client = _client()
    ticket = client.post(
        "/api/v1/widget/tickets",
        data={"token": token, "body": "my order", "email": "v@example.com"},
        content_type="application/json",
    )
    assert ticket.status_code == 201, ticket.json()
    tid = ticket.json()["id"]
    kept = client.post(
        f"/api/v1/widget/tickets/{tid}/attachments",
        data={"token": token, "file": _named(PDF, "order.pdf")},
    ).json()["id"]
    comment = client.post(
        f"/api/v1/widget/tickets/{tid}/comments",
        data={"token": token, "body": "the order", "attachment_ids": [kept]},
        content_type="application/json",
    )
    assert comment.status_code == 201, comment.json()
    loose = _upload(token, PDF, "loose.pdf", "file").json()["id"]
    with schema_context("acme"):
        Attachment.objects.filter(pk__in=[kept, loose]).update(
            created_at=timezone.now() - dt.timedelta(days=3)
        )
        # when
        attachment_orphans_purge(older_than=dt.timedelta(hours=24))
        # then
        left = Attachment.objects.filter(pk__in=[kept, loose]).values_list("pk", flat=True)
        assert set(left) == {kept}


def test_beat_schedule_runs_the_purge():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["im-orphan-uploads"]
    assert entry["task"] == "im.tasks.attachment_orphans_purge_all_task"
    assert attachment_orphans_purge_task.name == "im.tasks.attachment_orphans_purge_task"


def test_the_widget_offers_files_and_emoji_in_both_languages(acme):
    # given a channel
    desk = make_desk(acme, agents=1)
    url = f"/widget/frame/?channel={desk.channel.public_key}&lang="
    # when the frame opens in Chinese and in English
    zh = _client().get(url + "zh-CN").content.decode()
    en = _client().get(url + "en-US").content.decode()
    catalog = _client().get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then the attach button, the emoji button and the upload limits are there
    assert 'aria-label="发送图片或文件"' in zh
    assert 'aria-label="Send a picture or file"' in en
    assert 'id="emoji-btn"' in en
    assert '"files_url": "/api/v1/widget/files"' in en
    # and the widget's messages about files are translated
    assert "正在上传".encode("unicode_escape").decode() in catalog
