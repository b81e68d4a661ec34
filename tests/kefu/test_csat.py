"""The satisfaction survey and keyword auto-replies over the visitor's websocket."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kefu.models import AutoReply, Channel, Session
from tests.conftest import make_desk, make_visitor, session_cookie, unique
from tests.kefu.conftest import next_from, send
from tests.ws import connect, receive_until

pytestmark = pytest.mark.asyncio


async def test_the_visitor_rates_an_ended_conversation_once_and_the_agent_sees_it(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    ack = await send(ws, "thanks for the help earlier")
    cid = ack["conversation_id"]
    assigned = await receive_until(ws, "conversation.assigned")
    # the conversation says a rating will be asked for, and none is given yet
    assert assigned["conversation"]["session"]["csat"] == {
        "score": None,
        "comment": "",
        "rated_at": None,
    }

    # rating before the end is refused
    await ws.send_json_to(
        {"type": "csat.submit", "conversation_id": cid, "score": 5, "ref": "early"}
    )
    early = await receive_until(ws, "error")
    assert (early["ref"], early["code"]) == ("early", "conflict")

    # when the agent ends it and the visitor gives four stars and a comment
    await agent_ws.send_json_to({"type": "conversation.close", "conversation_id": cid})
    await receive_until(ws, "conversation.closed")
    for bad, field in [({"score": 6}, "score"), ({"score": "5"}, "score"),
                       ({"score": 4, "comment": "x" * 1001}, "comment")]:  # fmt: skip
        await ws.send_json_to({"type": "csat.submit", "conversation_id": cid, **bad})
        error = await receive_until(ws, "error")
        assert (error["code"], error["field"]) == ("invalid", field)
    await ws.send_json_to(
        {
            "type": "csat.submit",
            "conversation_id": cid,
            "score": 4,
            "comment": "Quick and kind",
            "ref": "r",
        }
    )
    result = await receive_until(ws, "csat.result")
    assert (result["ref"], result["conversation_id"], result["score"]) == ("r", cid, 4)

    # then the agent sees it live, and it is kept
    seen = await receive_until(agent_ws, "csat.submitted")
    assert seen["conversation_id"] == cid
    assert (seen["csat"]["score"], seen["csat"]["comment"]) == (4, "Quick and kind")

    def stored():
        with schema_context("acme"):
            s = Session.objects.get(conversation_id=cid)
            return s.csat_score, s.csat_comment

    assert await database_sync_to_async(stored)() == (4, "Quick and kind")
    # and a second rating is refused
    await ws.send_json_to({"type": "csat.submit", "conversation_id": cid, "score": 1})
    again = await receive_until(ws, "error")
    assert again["code"] == "conflict"
    await agent_ws.disconnect()
    await ws.disconnect()


async def test_no_survey_where_the_channel_does_not_ask(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)

    def switch_off():
        with schema_context("acme"):
            Channel.objects.filter(pk=desk.channel.pk).update(csat_enabled=False)

    await database_sync_to_async(switch_off)()
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    ack = await send(ws, "hello")
    assigned = await receive_until(ws, "conversation.assigned")
    assert assigned["conversation"]["session"]["csat"] is None
    await ws.send_json_to({"type": "conversation.close", "conversation_id": ack["conversation_id"]})
    await receive_until(ws, "conversation.closed")
    await ws.send_json_to(
        {"type": "csat.submit", "conversation_id": ack["conversation_id"], "score": 3}
    )
    error = await receive_until(ws, "error")
    assert error["code"] == "not_found"
    await ws.disconnect()


async def test_a_keyword_auto_reply_answers_at_once(acme):
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    keyword = unique("opening")

    def rule():
        with schema_context("acme"):
            AutoReply.objects.create(
                channel=desk.channel, keyword=keyword, reply="We are open 9:00-21:00 every day."
            )
            from kefu.services import automation

            automation._cache.clear()  # this process read the list before the rule existed

    await database_sync_to_async(rule)()
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    await send(ws, f"What are your {keyword.upper()} hours?")
    reply = await next_from(ws, "robot")
    assert reply["content"] == "We are open 9:00-21:00 every day."
    assert "auto_reply" in reply["meta"]
    await ws.disconnect()
