"""The smaller items of finding 7 of the security review (issue 12): a deeply nested JSON frame,
the websocket Origin check and ports, blocked upload types written to slip through, and the
platform admin's sign-in without ``next``."""

from __future__ import annotations

import io

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_tenants.utils import schema_context

from im.services import groups
from org.models import User
from tests.conftest import PASSWORD, make_agent, session_cookie, unique
from tests.waits import WAIT_S
from tests.ws import connect, receive_until
from weiyu.asgi import application

HOST = "acme.localhost"


async def test_a_deeply_nested_frame_is_a_bad_frame_and_the_socket_stays_open(acme):
    agent = await database_sync_to_async(lambda: _in_acme(make_agent))()
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    ws, _hello = await connect("/ws/agent/", HOST, cookie=cookie)
    try:
        # when a 3 KB frame nests 1,500 arrays
        await ws.send_to(text_data="[" * 1500 + "]" * 1500)
        error = await receive_until(ws, "error")
        # then it is refused as a bad frame
        assert error["code"] == "bad_frame"
        # and the socket still answers
        await ws.send_json_to({"type": "no.such.frame", "ref": "after"})
        after = await receive_until(ws, "error")
        assert (after["code"], after["ref"]) == ("unknown_type", "after")
    finally:
        await ws.disconnect()


@pytest.mark.parametrize(
    ("host", "origin", "accepted"),
    [
        ("acme.localhost:8000", "http://acme.localhost:8000", True),
        ("acme.localhost", "https://acme.localhost", True),
        ("acme.localhost", "http://acme.localhost:80", True),
        # another port of the same host is another origin (another web application)
        ("acme.localhost:8000", "http://acme.localhost:9999", False),
        ("acme.localhost:8000", "http://acme.localhost", False),
        ("acme.localhost", "http://acme.localhost:8080", False),
        ("acme.localhost:8000", "http://evil.example:8000", False),
    ],
)
async def test_the_origin_must_match_host_and_port(acme, host, origin, accepted):
    # a refused origin is closed before authentication (4403); an accepted one, having no
    # cookie, is turned away by the consumer afterwards, which the handshake result tells apart
    communicator = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"host", host.encode()), (b"origin", origin.encode())]
    )
    connected, code = await communicator.connect(timeout=WAIT_S)
    await communicator.disconnect()
    if accepted:
        assert code != 4403
    else:
        assert (connected, code) == (False, 4403)


def _in_acme(make):
    with schema_context("acme"):
        return make()


@pytest.mark.parametrize(
    "name",
    [
        "invoice.exe.",
        "invoice.exe. . ",
        "invoice.exe::$DATA",
        "help.hta",
        "shortcut.lnk",
        "settings.reg",
        "panel.cpl",
        "macro.vbs",
        "script.ps1",
        "INVOICE.EXE",
    ],
)
def test_blocked_file_types_do_not_slip_through(acme, name):
    with schema_context("acme"):
        ann = User.objects.create_user(username=unique("ann"), password=PASSWORD)
        ben = User.objects.create_user(username=unique("ben"), password=PASSWORD)
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
    client = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en")
    cookie_name, value = session_cookie(acme, ann).decode().split("=", 1)
    client.cookies[cookie_name] = value
    upload = io.BytesIO(b"just some text\\r\\n")
    upload.name = name
    response = client.post(
        "/api/v1/im/files", {"file": upload, "kind": "file", "conversation_id": str(chat.pk)}
    )
    assert response.status_code == 400, (name, response.content)
    assert response.json()["detail"] == "Files of this type cannot be sent."


def test_the_platform_admin_sign_in_without_next_lands_on_its_index():
    with schema_context("public"):
        root = User.objects.create_user(
            username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
        )
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    response = client.post("/admin/login/", {"username": root.username, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
