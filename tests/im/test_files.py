"""Files in team chats (IM-3, INT-4, SEC-6): upload checked by content, thumbnails, sending,
membership-checked download with safe headers, size limits, and the S3 path against a real
S3-compatible server (moto's standalone server)."""

from __future__ import annotations

import io
import struct

import boto3
import pytest
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from PIL import Image

from im.models import Attachment, Message, MessagingSettings
from im.senders import Sender
from im.services import groups
from im.services import messages as im_messages
from org.models import User
from tenants.models import Tenant
from tests.conftest import PASSWORD, session_cookie, unique
from tests.servers import free_port
from tests.waits import WAIT_S
from weiyu.errors import ServiceError

HOST = "acme.localhost"
UPLOAD = "/api/v1/im/files"


def _user() -> User:
    name = unique("filer")
    return User.objects.create_user(username=name, password=PASSWORD, display_name=name.title())


def _browser(user: User, schema: str = "acme", host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)
    tenant = Tenant.objects.get(schema_name=schema)
    name, value = session_cookie(tenant, user).decode().split("=", 1)
    client.cookies[name] = value
    return client


def _png(width: int = 800, height: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _ogg_voice() -> bytes:
    """An Ogg page header (what an Ogg/Opus recording starts with) followed by an Opus head."""
    header = b"OggS" + bytes([0, 2]) + struct.pack("<qIII", 0, 1, 0, 0) + bytes([1, 19])
    return header + b"OpusHead" + bytes([1, 1, 0x38, 1]) + struct.pack("<IhB", 48000, 0, 0)


def _named(data: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def _upload(client: Client, cid: int | None, data: bytes, name: str, kind: str, **extra):
    body = {"file": _named(data, name), "kind": kind, **extra}
    if cid is not None:
        body["conversation_id"] = str(cid)
    response = client.post(UPLOAD, data=body)
    return response.status_code, response.json()


@pytest.fixture
def pair(acme):
    with schema_context("acme"):
        ann, ben = _user(), _user()
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
    return ann, ben, chat.pk


def test_image_upload_gets_size_and_thumbnail_and_is_sent_and_shown_inline(pair):
    # given
    ann, ben, cid = pair
    # when Ann uploads a picture and sends it
    status, body = _upload(_browser(ann), cid, _png(), "holiday.png", "image")
    # then
    assert status == 201, body
    assert (body["kind"], body["content_type"], body["width"], body["height"]) == (
        "image",
        "image/png",
        800,
        600,
    )
    assert body["thumbnail_url"].endswith("?thumb=1")
    with schema_context("acme"):
        message, _ = im_messages.message_send(
            conversation_id=cid,
            sender=Sender(key=ann.member_key, type="agent", name=ann.name, user_id=ann.pk),
            msg_type="image",
            attachment_id=body["id"],
            client_msg_id=unique("img"),
        )
        stored = Attachment.objects.get(pk=body["id"])
        assert stored.file.name.startswith("acme/im/")
    assert message.attachment_id == body["id"]
    # Ben sees it inline; the thumbnail is at most 320 px
    response = _browser(ben).get(body["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline;")
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    thumb = _browser(ben).get(body["thumbnail_url"])
    assert thumb.status_code == 200
    assert max(Image.open(io.BytesIO(b"".join(thumb.streaming_content))).size) <= 320


def test_type_comes_from_the_content_not_the_name(pair):
    ann, _ben, cid = pair
    client = _browser(ann)
    # a PNG named .txt is a fine file
    status, body = _upload(client, cid, _png(20, 20), "notes.txt", "file")
    assert status == 201
    assert body["content_type"] == "image/png"
    # an executable renamed .pdf is refused
    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    status, body = _upload(client, cid, exe, "invoice.pdf", "file")
    assert (status, body["error"], body["field"]) == (400, "invalid", "file")
    # HTML is never an image
    status, body = _upload(client, cid, b"<html><script>alert(1)</script></html>", "x.png", "image")
    assert (status, body["error"]) == (400, "invalid")
    # an empty file, an unknown kind
    assert _upload(client, cid, b"", "empty.txt", "file")[0] == 400
    assert _upload(client, cid, b"hello", "a.txt", "hologram")[1]["field"] == "kind"


def test_svg_and_text_are_downloads_never_inline(pair):
    ann, ben, cid = pair
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    status, body = _upload(_browser(ann), cid, svg, "logo.svg", "file")
    assert status == 201
    response = _browser(ben).get(body["url"])
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == "attachment; filename*=UTF-8''logo.svg"
    assert "sandbox" in response["Content-Security-Policy"]


def test_voice_clip_is_accepted_as_voice_and_text_is_not(pair):
    ann, _ben, cid = pair
    status, body = _upload(
        _browser(ann), cid, _ogg_voice(), "clip.ogg", "voice", duration_ms="3200"
    )
    assert status == 201, body
    assert (body["kind"], body["content_type"], body["duration_ms"]) == ("voice", "audio/ogg", 3200)
    status, body = _upload(_browser(ann), cid, b"just text", "clip.ogg", "voice")
    assert status == 400


def test_size_limit_comes_from_the_tenant_settings(pair):
    ann, _ben, cid = pair
    with schema_context("acme"):
        row = MessagingSettings.current()
        before = row.max_file_bytes
        row.max_file_bytes = 2048
        row.save()
    try:
        status, body = _upload(_browser(ann), cid, b"x" * 4096, "big.txt", "file")
        assert (status, body["error"]) == (413, "too_large")
        assert _upload(_browser(ann), cid, b"x" * 1000, "small.txt", "file")[0] == 201
    finally:
        with schema_context("acme"):
            row.max_file_bytes = before
            row.save()


def test_strangers_and_other_tenants_cannot_fetch_or_upload(pair, globex):
    ann, _ben, cid = pair
    status, body = _upload(_browser(ann), cid, b"secret plan", "plan.txt", "file")
    assert status == 201
    with schema_context("acme"):
        stranger = _user()
    response = _browser(stranger).get(body["url"])
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert _upload(_browser(stranger), cid, b"spam", "spam.txt", "file")[0] == 404
    with schema_context("globex"):
        outsider = _user()
    other = _browser(outsider, schema="globex", host="globex.localhost")
    assert other.get(body["url"]).status_code == 404
    anonymous = Client(HTTP_HOST=HOST)
    assert anonymous.get(body["url"]).status_code in (401, 403)


def test_sending_someone_elses_upload_or_a_mismatched_kind_is_refused(pair):
    ann, ben, cid = pair
    status, body = _upload(_browser(ann), cid, b"doc", "a.txt", "file")
    assert status == 201
    with schema_context("acme"):
        before = Message.objects.filter(conversation_id=cid).count()
        for sender, msg_type in ((ben, "file"), (ann, "image")):
            with pytest.raises(ServiceError) as exc:
                im_messages.message_send(
                    conversation_id=cid,
                    sender=Sender(key=sender.member_key, type="agent", name="x", user_id=sender.pk),
                    msg_type=msg_type,
                    attachment_id=body["id"],
                )
            assert exc.value.code == "invalid"
        assert Message.objects.filter(conversation_id=cid).count() == before


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="weiyu-test")
    yield endpoint, s3
    server.stop()


def test_files_go_to_s3_under_the_tenant_prefix_and_download_redirects(pair, s3_server):
    endpoint, s3 = s3_server
    ann, ben, cid = pair
    storages = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "weiyu-test",
                "endpoint_url": endpoint,
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": False,
                "querystring_auth": True,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        status, body = _upload(_browser(ann), cid, _png(64, 64), "s3.png", "image")
        assert status == 201, body
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="weiyu-test")["Contents"]]
        assert any(k.startswith("acme/im/") for k in keys)
        assert any(k.startswith("acme/im-thumbs/") for k in keys)
        response = _browser(ben).get(body["url"])
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(endpoint)
        import urllib.request

        with urllib.request.urlopen(location, timeout=WAIT_S) as fetched:  # noqa: S310 - loopback
            assert fetched.read().startswith(b"\x89PNG")
        stranger_status = _browser(_stranger()).get(body["url"]).status_code
        assert stranger_status == 404


def _stranger() -> User:
    with schema_context("acme"):
        return _user()


def test_tenant_admin_manages_stickers_messaging_settings_and_sees_files(pair):
    ann, _ben, cid = pair
    status, _body = _upload(_browser(ann), cid, b"minutes", "minutes.txt", "file")
    assert status == 201
    admin = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en")
    _admin_login(admin)
    # a sticker added in the back office is offered to everyone
    sticker = io.BytesIO(_png(64, 64))
    sticker.name = "thumbs-up.png"
    response = admin.post(
        "/admin/im/sticker/add/",
        {"name": "Thumbs up", "pack": "Basics", "position": 1, "is_active": "on", "image": sticker},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    listed = _browser(ann).get("/api/v1/im/stickers").json()["stickers"]
    mine = [s for s in listed if s["name"] == "Thumbs up"]
    assert mine
    image = _browser(ann).get(mine[0]["url"])
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    pages = {
        path: admin.get(path)
        for path in ("/admin/im/messagingsettings/", "/admin/im/sticker/", "/admin/im/attachment/")
    }
    assert {p: r.status_code for p, r in pages.items()} == dict.fromkeys(pages, 200)
    assert "minutes.txt" in pages["/admin/im/attachment/"].content.decode()
    assert "500" in pages["/admin/im/messagingsettings/"].content.decode()


def _admin_login(client: Client) -> None:
    with schema_context("acme"):
        bob = User.objects.get(username="bob")
    name, value = session_cookie(Tenant.objects.get(schema_name="acme"), bob).decode().split("=", 1)
    client.cookies[name] = value
