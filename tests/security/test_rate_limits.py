"""Finding 5 of issue 12: the anonymous widget had no limits. Every anonymous path is flooded
here past a (small) limit and refused — HTTP 429 with ``Retry-After`` and the JSON error shape,
or a websocket ``error`` frame ``rate_limited`` with ``retry_after`` — and what was refused is not
stored; other visitors, addresses and tenants keep being served (docs/security.md, "Rate limits").

The suite runs with the limits off (scripts/test.py: every test visitor comes from 127.0.0.1);
each test here turns them on with its own small values and its own client addresses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Attachment, Message
from kbase.models import KnowledgeBase
from kefu.models import Session, Visitor
from org import limits
from org.models import VisitorLimits
from tests.conftest import make_desk, make_visitor, unique
from tests.waits import WAIT_S, fresh_window
from tests.ws import receive_until
from tickets.models import Ticket
from weiyu import dbthreads
from weiyu.asgi import application
from weiyu.asgi_tenancy import TENANT_SHARE, tenant_db

_addresses = itertools.count(1)
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def address() -> str:
    """A client address no other test of the run uses (the counters are per address)."""
    n = next(_addresses)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def limited(**values: int) -> Any:
    """Limits on, with these tenant defaults (the others as configured)."""
    return override_settings(
        WEIYU_RATE_LIMITS=True, WEIYU_VISITOR_LIMITS={**settings.WEIYU_VISITOR_LIMITS, **values}
    )


def client(ip: str, host: str = "acme.localhost") -> Client:
    return Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=ip)


def assert_limited(response: Any) -> dict[str, Any]:
    """429, the JSON error shape with ``retry_after``, and the same ``Retry-After`` header."""
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["detail"]
    assert int(response["Retry-After"]) == body["retry_after"] >= 1
    return body


@pytest.fixture
def desk(acme):
    return make_desk(acme, agents=1)


def _session(web: Client, channel: str) -> Any:
    return web.post("/api/v1/widget/session", {"channel": channel}, content_type="application/json")


def _visitors() -> int:
    with schema_context("acme"):
        return Visitor.objects.count()


@limited(sessions_per_ip_minute=3)
def test_sessions_per_address_are_limited_and_a_refused_one_creates_nothing(desk):
    fresh_window(60)
    flooder, other = client(address()), client(address())
    key = desk.channel.public_key
    for _ in range(3):
        assert _session(flooder, key).status_code == 200
    before = _visitors()
    # when the address asks for a fourth session within the minute
    body = assert_limited(_session(flooder, key))
    # then it is refused before any visitor is made; the message says to wait
    assert _visitors() == before
    assert "wait" in body["detail"]
    assert body["retry_after"] <= 61
    # and another address is served
    assert _session(other, key).status_code == 200


def test_one_tenants_session_flood_does_not_reach_another_tenant(acme, globex):
    acme_desk, globex_desk = make_desk(acme, agents=1), make_desk(globex, agents=1)
    fresh_window(60)
    with (
        limited(),
        override_settings(
            WEIYU_TENANT_LIMITS={**settings.WEIYU_TENANT_LIMITS, "sessions_per_minute": 4}
        ),
    ):
        # given a botnet: every request from another address, all to acme
        statuses = [
            _session(client(address()), acme_desk.channel.public_key).status_code for _ in range(7)
        ]
        # then acme's budget for the minute (4, some maybe spent by the tests before) runs out
        # and everything after is refused
        served = statuses.index(429)
        assert served <= 4
        assert statuses[served:] == [429] * (7 - served)
        # and globex's visitors start chats as usual
        for _ in range(3):
            web = client(address(), "globex.localhost")
            assert _session(web, globex_desk.channel.public_key).status_code == 200


@limited(sessions_per_ip_minute=2)
def test_a_tenant_sets_its_own_limits_in_its_back_office(acme, globex):
    acme_desk, globex_desk = make_desk(acme, agents=1), make_desk(globex, agents=1)
    with schema_context("acme"):
        row = VisitorLimits.current()
        row.sessions_per_ip_minute = 1
        row.save()
    limits.forget("acme")
    try:
        fresh_window(60)
        ip = address()
        # acme allows one session per address and minute, globex the platform default (2)
        assert _session(client(ip), acme_desk.channel.public_key).status_code == 200
        assert_limited(_session(client(ip), acme_desk.channel.public_key))
        for _ in range(2):
            web = client(ip, "globex.localhost")
            assert _session(web, globex_desk.channel.public_key).status_code == 200
        assert_limited(_session(client(ip, "globex.localhost"), globex_desk.channel.public_key))
    finally:
        with schema_context("acme"):
            VisitorLimits.objects.update(sessions_per_ip_minute=None)
        limits.forget("acme")


async def _visitor_socket(token: str, ip: str, host: str = "acme.localhost") -> Any:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/visitor/?token={token}",
        headers=[(b"host", host.encode()), (b"origin", f"http://{host}".encode())],
    )
    communicator.scope["client"] = (ip, 50000)
    connected, _code = await communicator.connect(timeout=WAIT_S)
    assert connected
    return communicator


async def _send(ws: Any, conversation_id: int | None, text: str) -> dict[str, Any]:
    """Send a message and return its answer: ``message.ack`` or ``error``."""
    cmid = unique("c")
    await ws.send_json_to(
        {
            "type": "message.send",
            "ref": cmid,
            "conversation_id": conversation_id,
            "client_msg_id": cmid,
            "content": text,
        }
    )
    while True:
        frame = await ws.receive_json_from(timeout=WAIT_S)
        if frame.get("ref") == cmid and frame["type"] in ("message.ack", "error"):
            return frame


def _stored(visitor_pk: int) -> list[str]:
    with schema_context("acme"):
        key = Visitor.objects.get(pk=visitor_pk).member_key
        return list(
            Message.objects.filter(sender_key=key).order_by("seq").values_list("content", flat=True)
        )


@limited(messages_per_visitor_minute=3)
async def test_messages_per_visitor_are_limited_with_an_error_frame_and_not_stored(acme, globex):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    visitor, token = await database_sync_to_async(make_visitor)(desk)
    await database_sync_to_async(fresh_window)(60)
    ws = await _visitor_socket(token, address())
    await receive_until(ws, "hello")
    try:
        first = await _send(ws, None, "one")
        assert first["type"] == "message.ack"
        cid = first["conversation_id"]
        for text in ("two", "three"):
            assert (await _send(ws, cid, text))["type"] == "message.ack"
        # when the visitor sends a fourth message within the minute
        refused = await _send(ws, cid, "four")
        # then an error frame says so, with when to try again, for that message
        assert refused["type"] == "error"
        assert refused["code"] == "rate_limited"
        assert 1 <= refused["retry_after"] <= 61
        assert refused["client_msg_id"] == refused["ref"]
        assert "too fast" in refused["message"]
        # and it is not stored; the socket stays open for the next minute
        assert await database_sync_to_async(_stored)(visitor.pk) == ["one", "two", "three"]
        pong = unique("p")
        await ws.send_json_to({"type": "ping", "ref": pong})
        assert (await receive_until(ws, "pong"))["ref"] == pong
    finally:
        await ws.disconnect()
    # and a visitor of another tenant is served meanwhile
    other_desk = await database_sync_to_async(make_desk)(globex, agents=1)
    _other, other_token = await database_sync_to_async(make_visitor)(other_desk)
    other = await _visitor_socket(other_token, address(), "globex.localhost")
    await receive_until(other, "hello")
    try:
        assert (await _send(other, None, "hello"))["type"] == "message.ack"
    finally:
        await other.disconnect()


@limited(messages_per_ip_minute=4, messages_per_visitor_minute=100)
async def test_messages_per_address_are_limited_across_visitors(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    ip = address()
    await database_sync_to_async(fresh_window)(60)
    answers = []
    # given five visitors (fresh tokens: a script) from one address, one message each
    for _ in range(5):
        _visitor, token = await database_sync_to_async(make_visitor)(desk)
        ws = await _visitor_socket(token, ip)
        await receive_until(ws, "hello")
        try:
            answers.append(await _send(ws, None, "spam"))
        finally:
            await ws.disconnect()
    # then the fifth is refused
    assert [a["type"] for a in answers] == ["message.ack"] * 4 + ["error"]
    assert answers[-1]["code"] == "rate_limited"


async def test_the_tenants_message_budget_holds_a_botnet_back(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    await database_sync_to_async(fresh_window)(60)
    with (
        limited(),
        override_settings(
            WEIYU_TENANT_LIMITS={**settings.WEIYU_TENANT_LIMITS, "messages_per_minute": 3}
        ),
    ):
        kinds = []
        for _ in range(5):  # every visitor from another address
            _visitor, token = await database_sync_to_async(make_visitor)(desk)
            ws = await _visitor_socket(token, address())
            await receive_until(ws, "hello")
            try:
                answer = await _send(ws, None, "flood")
                kinds.append(answer.get("code", answer["type"]))
            finally:
                await ws.disconnect()
        # at most the budget (3, some maybe spent by the tests before) is served, then refused
        served = kinds.index("rate_limited")
        assert served <= 3
        assert kinds[:served] == ["message.ack"] * served
        assert kinds[served:] == ["rate_limited"] * (5 - served)


@limited(frames_per_visitor_minute=5)
async def test_other_frames_are_limited_per_visitor(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    await database_sync_to_async(fresh_window)(60)
    ws = await _visitor_socket(token, address())
    await receive_until(ws, "hello")
    try:
        # when the visitor floods sync frames (each one reads the database)
        answers = []
        for i in range(7):
            await ws.send_json_to({"type": "sync", "ref": f"s{i}", "cursors": {}})
            while True:
                frame = await ws.receive_json_from(timeout=WAIT_S)
                if frame.get("ref") == f"s{i}":
                    answers.append(frame.get("code") or frame["type"])
                    break
        # then the sixth and later are refused
        assert answers[:5] == ["sync.result"] * 5
        assert answers[5:] == ["rate_limited"] * 2
    finally:
        await ws.disconnect()


@limited(connects_per_ip_minute=2)
async def test_socket_connections_per_address_are_limited(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ip = address()
    await database_sync_to_async(fresh_window)(60)
    sockets = []
    try:
        for _ in range(2):
            ws = await _visitor_socket(token, ip)
            assert (await ws.receive_json_from(timeout=WAIT_S))["type"] == "hello"
            sockets.append(ws)
        # when a third socket opens from that address within the minute
        ws = await _visitor_socket(token, ip)
        error = await ws.receive_json_from(timeout=WAIT_S)
        # then it gets the error frame and is closed with 4429 (not 4401: the token is fine)
        assert (error["type"], error["code"]) == ("error", "rate_limited")
        assert error["retry_after"] >= 1
        assert (await ws.receive_output(timeout=WAIT_S))["code"] == 4429
        # and another address connects
        other = await _visitor_socket(token, address())
        assert (await other.receive_json_from(timeout=WAIT_S))["type"] == "hello"
        sockets.append(other)
    finally:
        for ws in sockets:
            await ws.disconnect()


def _upload(web: Client, token: str, name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return web.post(
        "/api/v1/widget/files",
        {"token": token, "kind": "file", "file": SimpleUploadedFile(name, data)},
    )


def _attachments(name: str) -> int:
    with schema_context("acme"):
        return Attachment.objects.filter(name=name).count()


@limited(uploads_per_ip_hour=3, uploads_per_visitor_hour=100)
def test_uploads_per_address_are_limited_across_visitors(desk):
    ip, name = address(), f"{unique('f')}.pdf"
    fresh_window(3600, need_s=60)
    statuses = []
    for _ in range(4):  # a fresh visitor each time
        _visitor, token = make_visitor(desk)
        statuses.append(_upload(client(ip), token, name, PDF))
    assert [r.status_code for r in statuses] == [201, 201, 201, 429]
    assert_limited(statuses[-1])
    # the refused file is not stored
    assert _attachments(name) == 3


@limited(upload_mb_per_ip_hour=1, uploads_per_ip_hour=100)
def test_upload_bytes_per_address_are_limited(desk):
    ip, name = address(), f"{unique('f')}.pdf"
    big = PDF + b"%" * (600 * 1024)  # 0.6 MB: one fits in the hour's megabyte, two do not
    fresh_window(3600, need_s=60)
    _visitor, token = make_visitor(desk)
    assert _upload(client(ip), token, name, big).status_code == 201
    _visitor, token = make_visitor(desk)
    assert_limited(_upload(client(ip), token, name, big))
    assert _attachments(name) == 1
    # a small file still fits
    assert _upload(client(ip), token, name, PDF).status_code == 201


def _leave_message(web: Client, token: str, body: str) -> Any:
    return web.post(
        "/api/v1/widget/tickets",
        {"token": token, "body": body, "email": "v@example.com"},
        content_type="application/json",
    )


def _tickets(text: str) -> int:
    with schema_context("acme"):
        return Ticket.objects.filter(comments__body=text).distinct().count()


@limited(tickets_per_visitor_hour=2, tickets_per_ip_hour=3)
def test_left_messages_are_limited_per_visitor_and_per_address(desk):
    fresh_window(3600, need_s=60)
    ip, text = address(), unique("please call me ")
    _visitor, token = make_visitor(desk)
    assert _leave_message(client(ip), token, text).status_code == 201
    assert _leave_message(client(ip), token, text).status_code == 201
    # the visitor's third ticket within the hour
    assert_limited(_leave_message(client(ip), token, text))
    # a new visitor from the same address: one more, then the address's hour is spent
    _visitor, token = make_visitor(desk)
    assert _leave_message(client(ip), token, text).status_code == 201
    assert_limited(_leave_message(client(ip), token, text))
    assert _tickets(text) == 3


def _conversation_of(visitor: Visitor) -> int:
    from kefu.services import messages

    with schema_context("acme"):
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        return message.conversation_id


def _transcript(web: Client, token: str, cid: int, email: str) -> Any:
    return web.post(
        "/api/v1/widget/transcript",
        {"token": token, "conversation_id": cid, "email": email},
        content_type="application/json",
    )


@limited(transcripts_per_address_day=2, transcripts_per_visitor_day=10)
def test_transcript_emails_to_one_address_are_limited_per_day(desk):
    # given a script making visitors that each ask for a transcript to the same victim
    victim = f"{unique('victim')}@example.com"
    fresh_window(86400, need_s=120)
    statuses, sessions = [], []
    for _ in range(3):
        visitor, token = make_visitor(desk)
        cid = _conversation_of(visitor)
        statuses.append(_transcript(client(address()), token, cid, victim))
        sessions.append(cid)
    # then the third mail to that address today is refused, and nothing is queued for it
    assert [r.status_code for r in statuses] == [202, 202, 429]
    body = assert_limited(statuses[-1])
    assert "tomorrow" in body["detail"]
    with schema_context("acme"):
        assert Session.objects.get(conversation_id=sessions[-1]).transcript_sent_at is None
    # another address is still served
    visitor, token = make_visitor(desk)
    cid = _conversation_of(visitor)
    other = f"{unique('me')}@example.com"
    assert _transcript(client(address()), token, cid, other).status_code == 202


@limited(transcripts_per_visitor_day=1)
def test_transcript_emails_per_visitor_are_limited_per_day(desk):
    fresh_window(86400, need_s=120)
    visitor, token = make_visitor(desk)
    ip, cid = address(), _conversation_of(visitor)
    assert _transcript(client(ip), token, cid, f"{unique('a')}@example.com").status_code == 202
    # ten minutes later (past the 5-minute resend rule) the visitor asks again, elsewhere
    with schema_context("acme"):
        Session.objects.filter(conversation_id=cid).update(
            transcript_sent_at=timezone.now() - dt.timedelta(minutes=10)
        )
    assert_limited(_transcript(client(ip), token, cid, f"{unique('b')}@example.com"))


@limited(searches_per_ip_minute=2)
def test_help_center_searches_are_limited_per_address(acme):
    with schema_context("acme"):
        KnowledgeBase.objects.get_or_create(name="Public help", defaults={"is_public": True})
    fresh_window(60)
    ip = address()
    for _ in range(2):
        assert client(ip).get("/help/", {"q": "refund"}).status_code == 200
    # the page says why there are no results, in a 429 with Retry-After
    page = client(ip).get("/help/", {"q": "refund"})
    assert page.status_code == 429
    assert int(page["Retry-After"]) >= 1
    assert "Too many searches" in page.content.decode()
    # the JSON search API counts for the same address
    assert_limited(client(ip).get("/api/v1/kbase/search", {"q": "refund"}))
    # the help center without a search is not limited; another address searches
    assert client(ip).get("/help/").status_code == 200
    assert client(address()).get("/help/", {"q": "refund"}).status_code == 200


def test_limits_are_off_when_the_platform_turns_them_off(desk):
    with override_settings(
        WEIYU_RATE_LIMITS=False,
        WEIYU_VISITOR_LIMITS={**settings.WEIYU_VISITOR_LIMITS, "sessions_per_ip_minute": 1},
    ):
        web = client(address())
        for _ in range(3):
            assert _session(web, desk.channel.public_key).status_code == 200


async def test_one_tenants_database_calls_leave_threads_for_the_other_tenants(acme, globex):
    # given a tenant whose sockets keep every database thread busy (slow calls, three per thread)
    def slow() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.5)")

    flood = [asyncio.ensure_future(tenant_db(acme, slow)) for _ in range(dbthreads.THREADS * 3)]
    for _ in range(5):
        await asyncio.sleep(0)  # the flood's calls are taken first
    # when another tenant's socket needs the database
    schema = await tenant_db(globex, lambda: connection.schema_name)
    # then it is served in its schema while most of the flood still waits for its share
    pending = sum(not f.done() for f in flood)
    assert schema == "globex"
    assert pending > len(flood) // 2, (pending, TENANT_SHARE)
    await asyncio.gather(*flood)
