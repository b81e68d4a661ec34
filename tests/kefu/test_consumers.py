"""The visitor and agent websocket endpoints end to end, through the tenant middleware."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django_tenants.utils import schema_context

from org import services as org_services
from tests.conftest import make_desk, make_visitor, session_cookie
from tests.waits import WAIT_S
from tests.ws import collect, connect, receive_until
from weiyu.asgi import application


@pytest.mark.asyncio
async def test_visitor_and_agent_chat_live(acme):
    # given an online agent with an open inbox and a visitor with the widget open
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    agent_ws, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    assert hello["type"] == "hello"
    assert hello["member"]["key"] == f"u:{agent.pk}"
    assert hello["agent"]["status"] == "online"
    visitor_ws, vhello = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    assert vhello["member"]["key"] == f"v:{visitor.pk}"

    # when the visitor sends a first message
    await visitor_ws.send_json_to(
        {"type": "message.send", "client_msg_id": "v-1", "content": "你好", "ref": "r1"}
    )
    ack = await receive_until(visitor_ws, "message.ack")
    assert ack["ref"] == "r1"
    assert ack["seq"] == 1
    assert ack["duplicate"] is False

    # then the agent is assigned the conversation live, carrying the message
    assigned = await receive_until(agent_ws, "conversation.assigned")
    conversation = assigned["conversation"]
    assert conversation["session"]["visitor"]["name"] == visitor.name
    assert conversation["session"]["agent"]["id"] == agent.pk
    cid = conversation["id"]
    assert conversation["last_seq"] >= 1

    # when the agent replies
    await agent_ws.send_json_to(
        {
            "type": "message.send",
            "conversation_id": cid,
            "client_msg_id": "a-1",
            "content": "您好！",
        }
    )
    agent_ack = await receive_until(agent_ws, "message.ack")

    # then the visitor sees it live, with sender and time
    new = await receive_until(visitor_ws, "message.new")
    while new["message"]["sender"]["type"] != "agent":
        new = await receive_until(visitor_ws, "message.new")
    assert new["message"]["content"] == "您好！"
    assert new["message"]["sender"]["name"] == agent.name
    assert new["message"]["seq"] == agent_ack["seq"]

    # when the visitor reports it delivered and read, the agent sees the receipt
    await visitor_ws.send_json_to(
        {"type": "read.update", "conversation_id": cid, "read_seq": agent_ack["seq"]}
    )
    receipt = await receive_until(agent_ws, "read.state")
    assert receipt["member"]["key"] == f"v:{visitor.pk}"
    assert receipt["read_seq"] == agent_ack["seq"]
    assert receipt["delivered_seq"] == agent_ack["seq"]

    # when the agent closes the conversation, the visitor is told it ended
    await agent_ws.send_json_to({"type": "conversation.close", "conversation_id": cid})
    closed = await receive_until(visitor_ws, "conversation.closed")
    assert closed["conversation_id"] == cid
    assert closed["closed_by"]["type"] == "agent"

    await agent_ws.disconnect()
    await visitor_ws.disconnect()


@pytest.mark.asyncio
async def test_reconnect_sync_returns_only_what_was_missed(acme):
    # given a conversation with three messages, of which the client holds the first
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    for n in range(3):
        await ws.send_json_to(
            {"type": "message.send", "client_msg_id": f"s-{n}", "content": f"line {n}"}
        )
        await receive_until(ws, "message.ack")
    await collect(ws)
    await ws.disconnect()

    # when the client reconnects with its cursor at seq 1
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    await ws.send_json_to({"type": "sync", "cursors": {}, "ref": "s0"})
    first = await receive_until(ws, "sync.result")
    cid = first["conversations"][0]["id"]
    last_seq = first["conversations"][0]["last_seq"]
    await ws.send_json_to({"type": "sync", "cursors": {str(cid): 1}})
    result = await receive_until(ws, "sync.result")

    # then it receives every later message once, in order
    seqs = [m["seq"] for m in result["messages"]]
    assert seqs == list(range(2, last_seq + 1))
    contents = [m["content"] for m in result["messages"] if m["sender"]["type"] == "visitor"]
    assert contents == ["line 1", "line 2"]
    await ws.disconnect()


@pytest.mark.asyncio
async def test_bad_frames_get_error_frames_and_lose_nothing(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    await ws.send_to(text_data="not json")
    assert (await ws.receive_json_from(timeout=WAIT_S))["code"] == "bad_frame"
    await ws.send_json_to({"type": "nope", "ref": "x"})
    err = await ws.receive_json_from(timeout=WAIT_S)
    assert (err["code"], err["ref"]) == ("unknown_type", "x")
    await ws.send_to(text_data='{"type":"message.send","content":"' + "a" * 70000 + '"}')
    assert (await ws.receive_json_from(timeout=WAIT_S))["code"] == "frame_too_large"
    await ws.send_json_to({"type": "message.send", "client_msg_id": "ok-1", "content": "   "})
    err = await ws.receive_json_from(timeout=WAIT_S)
    assert (err["code"], err["field"], err["client_msg_id"]) == ("invalid", "content", "ok-1")
    await ws.send_json_to(
        {
            "type": "message.send",
            "conversation_id": 999999,
            "client_msg_id": "ok-2",
            "content": "hi",
        }
    )
    assert (await ws.receive_json_from(timeout=WAIT_S))["code"] == "not_found"
    await ws.send_json_to({"type": "message.send", "client_msg_id": "ok-n", "content": "a\x00b"})
    assert (await ws.receive_json_from(timeout=WAIT_S))["code"] == "bad_frame"

    # and a good message afterwards is stored as usual
    await ws.send_json_to(
        {"type": "message.send", "client_msg_id": "ok-3", "content": "still here"}
    )
    ack = await receive_until(ws, "message.ack")
    assert ack["seq"] == 1
    await ws.disconnect()


@pytest.mark.asyncio
async def test_agent_socket_without_session_is_refused(acme):
    ws, frame = await connect("/ws/agent/", "acme.localhost")
    assert frame == {"type": "error", "code": "unauthorized", "message": frame["message"]}
    assert (await ws.receive_output(timeout=WAIT_S))["code"] == 4401


async def _not_found_message(cookie: bytes, accept_language: bytes) -> str:
    headers = [
        (b"host", b"acme.localhost"),
        (b"origin", b"http://acme.localhost"),
        (b"cookie", cookie),
        (b"accept-language", accept_language),
    ]
    ws = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    connected, _code = await ws.connect(timeout=WAIT_S)
    assert connected
    await receive_until(ws, "hello")
    await ws.send_json_to(
        {"type": "message.send", "conversation_id": 999999, "client_msg_id": "l-1", "content": "x"}
    )
    error = await receive_until(ws, "error")
    await ws.disconnect()
    return error["message"]


@pytest.mark.asyncio
async def test_the_agent_socket_speaks_the_agents_language(acme):
    # given an agent in a browser that asks for Chinese
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    # then by default their socket's errors are in Chinese, as their pages are
    assert await _not_found_message(cookie, b"zh-CN,zh;q=0.9,en;q=0.5") == "会话不存在。"
    assert await _not_found_message(cookie, b"en-GB") == "No such conversation."

    # and once they chose English in the inbox, in English whatever the browser asks for
    def choose_english() -> None:
        with schema_context("acme"):
            org_services.user_language_set(user=agent, language="en")

    await database_sync_to_async(choose_english)()
    assert await _not_found_message(cookie, b"zh-CN") == "No such conversation."
