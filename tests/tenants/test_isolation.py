"""Tenants never meet: credentials, events and channel keys of one tenant are useless on another.

The twin desks below have the *same numeric ids* in ``acme`` and ``globex`` (workgroup, agent,
channel, visitor, conversation), so any lookup that forgot the tenant would find the twin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import Visitor
from kefu.services import messages as kefu_messages
from kefu.services import visitors as kefu_visitors
from org.models import User
from tenants.models import Tenant
from tests.conftest import Desk, make_desk, make_visitor, session_cookie
from tests.waits import WAIT_S
from tests.ws import collect_until, connect, has_types, receive_until
from weiyu.asgi import application
from weiyu.realtime import capture_events, member_group

TWIN_TABLES = (
    "kefu_workgroup",
    "org_user",
    "kefu_channel",
    "kefu_visitor",
    "im_conversation",
    "kefu_session",
)


@dataclass
class Twin:
    desk: Desk
    agent: User
    visitor: Visitor
    token: str
    conversation_id: int


def _align_ids(schemas: tuple[str, ...] = ("acme", "globex")) -> None:
    """Make the next id of every twin table the same in each schema."""
    for table in TWIN_TABLES:
        nexts = []
        for schema in schemas:
            with schema_context(schema), connection.cursor() as cursor:
                cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
                nexts.append(cursor.fetchone()[0])
        for schema in schemas:
            with schema_context(schema), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, max(nexts)]
                )


def _twin(tenant: Tenant) -> Twin:
    desk = make_desk(tenant, agents=1)
    visitor, token = make_visitor(desk)
    with schema_context(tenant.schema_name):
        message, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id="twin-1"
        )
    return Twin(desk, desk.agents[0], visitor, token, message.conversation_id)


def make_twins(acme: Tenant, globex: Tenant) -> tuple[Twin, Twin]:
    """One desk with an agent chatting with a visitor in each tenant, ids identical."""
    with capture_events():
        _align_ids()
        a, g = _twin(acme), _twin(globex)
    assert (a.desk.workgroup.pk, a.agent.pk, a.desk.channel.pk) == (
        g.desk.workgroup.pk,
        g.agent.pk,
        g.desk.channel.pk,
    )
    assert (a.visitor.pk, a.conversation_id) == (g.visitor.pk, g.conversation_id)
    return a, g


async def _refused(communicator: WebsocketCommunicator) -> int:
    """The close code of a socket that must be closed right after its error frame."""
    output = await communicator.receive_output(timeout=WAIT_S)
    assert output["type"] == "websocket.close"
    return output["code"]


@pytest.mark.asyncio
async def test_visitor_token_of_one_tenant_is_refused_on_another(acme, globex):
    # given a visitor of acme whose numeric id also exists in globex
    a, _g = await database_sync_to_async(make_twins)(acme, globex)

    # when the acme token is used on globex's host
    ws, frame = await connect(f"/ws/visitor/?token={a.token}", "globex.localhost")

    # then globex refuses it and closes the socket
    assert frame["type"] == "error"
    assert frame["code"] == "invalid_token"
    assert await _refused(ws) == 4401

    # while the same token works on acme itself
    ok, hello = await connect(f"/ws/visitor/?token={a.token}", "acme.localhost")
    assert hello["type"] == "hello"
    assert hello["member"]["key"] == f"v:{a.visitor.pk}"
    await ok.disconnect()


@pytest.mark.asyncio
async def test_agent_session_of_one_tenant_is_refused_on_another(acme, globex):
    # given a signed-in acme agent whose user id also exists in globex
    a, _g = await database_sync_to_async(make_twins)(acme, globex)
    cookie = await database_sync_to_async(session_cookie)(acme, a.agent)

    # when the acme session cookie is presented to globex's host
    ws, frame = await connect("/ws/agent/", "globex.localhost", cookie=cookie)

    # then globex does not know that session
    assert frame["type"] == "error"
    assert frame["code"] == "unauthorized"
    assert await _refused(ws) == 4401

    # while on acme it signs the agent in
    ok, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["member"]["key"] == f"u:{a.agent.pk}"
    await ok.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["nobody.localhost", "localhost"])
async def test_socket_on_a_host_without_tenant_is_refused_at_the_handshake(acme, host):
    # given a host that is no tenant's (unknown, or the public site)
    communicator = WebsocketCommunicator(
        application,
        "/ws/visitor/?token=x",
        headers=[(b"host", host.encode()), (b"origin", f"http://{host}".encode())],
    )

    # when a socket is opened there
    connected, code = await communicator.connect(timeout=WAIT_S)

    # then the handshake is refused
    assert connected is False
    assert code == 4404


@pytest.mark.asyncio
async def test_events_of_one_tenant_never_reach_sockets_of_another(acme, globex):
    # given twin agents and visitors (same ids) connected in both tenants
    a, g = await database_sync_to_async(make_twins)(acme, globex)
    a_cookie = await database_sync_to_async(session_cookie)(acme, a.agent)
    g_cookie = await database_sync_to_async(session_cookie)(globex, g.agent)
    a_agent, _ = await connect("/ws/agent/", "acme.localhost", cookie=a_cookie)
    a_visitor, _ = await connect(f"/ws/visitor/?token={a.token}", "acme.localhost")
    g_agent, g_hello = await connect("/ws/agent/", "globex.localhost", cookie=g_cookie)
    g_visitor, _ = await connect(f"/ws/visitor/?token={g.token}", "globex.localhost")
    assert g_hello["member"]["key"] == f"u:{a.agent.pk}"  # the same member key in both tenants
    cid = a.conversation_id

    # when the acme pair chats: messages both ways, typing, receipts, status, closing
    await a_visitor.send_json_to(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": "i-1", "content": "hi"}
    )
    await receive_until(a_visitor, "message.ack")
    await a_agent.send_json_to({"type": "typing.start", "conversation_id": cid})
    await a_agent.send_json_to(
        {"type": "message.send", "conversation_id": cid, "client_msg_id": "i-2", "content": "yo"}
    )
    ack = await receive_until(a_agent, "message.ack")
    await a_visitor.send_json_to(
        {"type": "read.update", "conversation_id": cid, "read_seq": ack["seq"]}
    )
    await a_agent.send_json_to({"type": "agent.status", "status": "away"})
    await a_agent.send_json_to({"type": "conversation.close", "conversation_id": cid})

    # then the acme sockets see all of it
    await collect_until(a_visitor, has_types("message.new", "typing", "conversation.closed"))
    await collect_until(
        a_agent, has_types("message.new", "read.state", "agent.status", "conversation.closed")
    )

    # and the globex twins receive nothing at all
    assert await g_agent.receive_nothing(timeout=1.0)
    assert await g_visitor.receive_nothing(timeout=0.2)

    for ws in (a_agent, a_visitor, g_agent, g_visitor):
        await ws.disconnect()


def test_member_groups_are_prefixed_with_the_tenant_schema(acme, globex):
    # given twin conversations with the same ids in both tenants
    a, g = make_twins(acme, globex)

    # when the globex agent replies in its conversation
    with schema_context("globex"), capture_events() as events:
        kefu_messages.agent_message_send(
            user=g.agent, conversation_id=g.conversation_id, content="hi", client_msg_id="grp-1"
        )

    # then the event goes to globex's groups only, which differ from acme's for the same keys
    assert member_group("acme", "u:7") == "acme.u.7"
    assert member_group("globex", "v:12") == "globex.v.12"
    assert [(event["type"], sorted(groups)) for event, groups in events] == [
        ("message.new", sorted([f"globex.u.{g.agent.pk}", f"globex.v.{g.visitor.pk}"]))
    ]
    assert member_group("acme", a.agent.member_key) != member_group("globex", g.agent.member_key)


def _post_session(host: str, body: dict) -> tuple[int, dict]:
    response = Client().post(
        "/api/v1/widget/session",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_HOST=host,
    )
    return response.status_code, response.json()


def test_widget_session_with_another_tenants_channel_key_is_not_found(acme, globex):
    # given acme's widget channel
    a, _g = make_twins(acme, globex)
    key = a.desk.channel.public_key

    # when a page on globex's host starts a session with acme's channel key
    status, body = _post_session("globex.localhost", {"channel": key})

    # then globex answers 404 in the API's error shape
    assert status == 404
    assert body["error"] == "not_found"
    assert body["detail"]
    # while acme serves it
    assert _post_session("acme.localhost", {"channel": key})[0] == 200


def test_widget_session_with_another_tenants_token_gets_a_new_visitor(acme, globex):
    # given an acme visitor's token, naming a visitor id (and channel id) that globex also has
    a, g = make_twins(acme, globex)
    with schema_context("globex"):
        before = Visitor.objects.count()

    # when globex's widget is started with that token
    status, body = _post_session(
        "globex.localhost", {"channel": g.desk.channel.public_key, "token": a.token}
    )

    # then globex creates a new visitor of its own rather than resuming its twin
    assert status == 200
    assert body["token"] != a.token
    assert body["visitor"]["id"] != g.visitor.pk
    with schema_context("globex"):
        assert Visitor.objects.count() == before + 1
        assert kefu_visitors.visitor_from_token(body["token"]).pk == body["visitor"]["id"]
