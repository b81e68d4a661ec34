"""Finding 7 of issue 12: the visitor's bearer token (valid a year) sat in URLs (``?token=``) and
so in access logs. The widget now sends it as a websocket subprotocol and an HTTP header
(kefu.widget_auth)."""

from __future__ import annotations

import base64

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.conftest import make_desk, make_visitor
from tests.waits import WAIT_S
from weiyu.asgi import application

HOST = "acme.localhost"


def _protocol(token: str) -> str:
    return "weiyu.token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _files_visitor(files_token: str) -> int:
    from types import SimpleNamespace

    from django_tenants.utils import schema_context

    from kefu.widget_auth import download_visitor

    request = SimpleNamespace(query_params={"ft": files_token}, META={})
    with schema_context("acme"):
        return download_visitor(request).pk


async def _open(subprotocols: list[str]) -> tuple[WebsocketCommunicator, bool, object]:
    communicator = WebsocketCommunicator(
        application,
        "/ws/visitor/",
        headers=[(b"host", HOST.encode()), (b"origin", f"http://{HOST}".encode())],
        subprotocols=subprotocols,
    )
    connected, subprotocol = await communicator.connect(timeout=WAIT_S)
    return communicator, connected, subprotocol


async def test_the_socket_takes_the_token_as_a_subprotocol_and_answers_weiyu(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, connected, subprotocol = await _open(["weiyu", _protocol(token)])
    try:
        assert connected
        assert subprotocol == "weiyu"  # a browser requires one of those it offered
        hello = await ws.receive_json_from(timeout=WAIT_S)
        assert hello["type"] == "hello"
        assert hello["member"]["key"] == visitor.member_key
        # with a files token of this tenant's visitor, for the widget's downloads
        assert await database_sync_to_async(_files_visitor)(hello["files_token"]) == visitor.pk
    finally:
        await ws.disconnect()


async def test_a_forged_subprotocol_token_is_refused(acme):
    ws, connected, _ = await _open(["weiyu", _protocol("forged"), "weiyu.token.%%%"])
    assert connected  # accepted first, then told why and closed (docs/protocol.md)
    error = await ws.receive_json_from(timeout=WAIT_S)
    assert error["code"] == "invalid_token"
    assert (await ws.receive_output(timeout=WAIT_S))["code"] == 4401


def test_the_widgets_http_calls_take_the_token_in_a_header_not_the_url(acme):
    desk = make_desk(acme, agents=1)
    _visitor, token = make_visitor(desk)
    web = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en")
    assert web.get("/api/v1/widget/tickets", HTTP_X_VISITOR_TOKEN=token).status_code == 200
    # in the URL it is no longer read by the JSON API
    assert web.get(f"/api/v1/widget/tickets?token={token}").status_code == 401
    # a POST takes the header too (or the body, which logs do not keep)
    profile = web.post(
        "/api/v1/widget/profile",
        {"name": "Ann"},
        content_type="application/json",
        HTTP_X_VISITOR_TOKEN=token,
    )
    assert profile.status_code == 200
    assert profile.json()["visitor"]["name"] == "Ann"


def test_file_links_carry_a_short_lived_files_token_not_the_visitor_token(acme):
    from django.core.files.uploadedfile import SimpleUploadedFile

    desk = make_desk(acme, agents=1)
    web = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en")
    started = web.post(
        "/api/v1/widget/session",
        {"channel": desk.channel.public_key},
        content_type="application/json",
    ).json()
    token, files_token = started["token"], started["files_token"]
    pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
    uploaded = web.post(
        "/api/v1/widget/files",
        {"kind": "file", "file": SimpleUploadedFile("a.pdf", pdf)},
        HTTP_X_VISITOR_TOKEN=token,
    )
    assert uploaded.status_code == 201
    url = uploaded.json()["url"]
    # the files token downloads the visitor's file
    assert web.get(url, {"ft": files_token}).status_code == 200
    # it is no visitor token: the API refuses it
    assert web.get("/api/v1/widget/tickets", HTTP_X_VISITOR_TOKEN=files_token).status_code == 401
    # a forged one, or one of another tenant's visitor, downloads nothing
    assert web.get(url, {"ft": files_token + "x"}).status_code == 401
    other = Client(HTTP_HOST="globex.localhost").get(url, {"ft": files_token})
    assert other.status_code == 401
    # another visitor's files token gets a 404 for this file
    _stranger, stranger_token = make_visitor(desk)
    stranger = web.post(
        "/api/v1/widget/session",
        {"channel": desk.channel.public_key, "token": stranger_token},
        content_type="application/json",
    ).json()
    assert web.get(url, {"ft": stranger["files_token"]}).status_code == 404
