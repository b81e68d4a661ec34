"""The robot and robot-first service modes over the websocket protocol, answered by a real Celery
worker: answers with their source, ratings, collected questions, hand-over with the transcript.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kbase import services as kb_services
from kbase.models import RobotQuestion
from kefu.models import Session
from tests.conftest import make_visitor, session_cookie
from tests.kefu.conftest import REFUND_A, REFUND_Q, next_from, robot_desk, send
from tests.ws import collect, connect, receive_until

pytestmark = pytest.mark.asyncio


async def test_robot_first_answers_with_source_then_hands_over_with_the_transcript(
    acme, robot_worker
):
    # given a robot-first channel with an online agent, and a visitor (widget open)
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup")
    agent = desk.agents[0]
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when the visitor asks a question of the FAQ in other words
    ack = await send(ws, "how can I get a refund?")
    cid = ack["conversation_id"]

    # then the robot answers with the FAQ answer and names its source
    answer = await next_from(ws, "robot")
    assert answer["content"] == REFUND_A
    assert answer["sender"]["name"] == "Robo"
    robot = answer["meta"]["robot"]
    assert robot["answered"] is True
    assert robot["reply_to"] == ack["seq"]
    assert [s["title"] for s in robot["sources"]] == [REFUND_Q]
    assert robot["confidence"] >= 0.5
    # and no agent was bothered
    assert await agent_ws.receive_nothing(timeout=0.5)

    # when the visitor rates it not helpful
    await ws.send_json_to(
        {"type": "robot.feedback", "message_id": answer["id"], "helpful": False, "ref": "f1"}
    )
    rated = await receive_until(ws, "robot.feedback.result")
    assert rated == {
        "type": "robot.feedback.result",
        "ref": "f1",
        "message_id": answer["id"],
        "feedback": "not_helpful",
    }

    # then the question is collected for the admins, with the answer that did not help
    def collected():
        with schema_context("acme"):
            return list(
                RobotQuestion.objects.filter(conversation_id=cid).values(
                    "question", "reason", "answer_title", "count"
                )
            )

    assert await database_sync_to_async(collected)() == [
        {
            "question": "how can I get a refund?",
            "reason": "not_helpful",
            "answer_title": REFUND_Q,
            "count": 1,
        }
    ]

    # when the visitor asks for a person
    await send(ws, "转人工", cid)

    # then they are told, and the agent gets the conversation
    line = await next_from(ws, "system")
    assert line["meta"] == {"handover": "asked"}
    assigned = await receive_until(agent_ws, "conversation.assigned")
    assert assigned["conversation"]["id"] == cid
    assert assigned["conversation"]["session"]["handover_reason"] == "asked"

    # and the agent reads the whole transcript: the question, the answer and its source
    await agent_ws.send_json_to(
        {"type": "history.fetch", "conversation_id": cid, "limit": 50, "ref": "h"}
    )
    history = await receive_until(agent_ws, "history.result")
    by_sender = [(m["sender"]["type"], m["content"]) for m in history["messages"]]
    assert ("visitor", "how can I get a refund?") in by_sender
    assert ("robot", REFUND_A) in by_sender
    assert ("visitor", "转人工") in by_sender
    robot_seen = next(m for m in history["messages"] if m["sender"]["type"] == "robot")
    assert robot_seen["meta"]["robot"]["sources"][0]["title"] == REFUND_Q
    assert robot_seen["meta"]["robot"]["feedback"] == "not_helpful"

    # and from now on the agent answers, not the robot
    await send(ws, "还有别的问题", cid)
    later = await collect(ws, quiet=2)
    assert not [
        f for f in later if f["type"] == "message.new" and f["message"]["sender"]["type"] == "robot"
    ]
    await agent_ws.disconnect()
    await ws.disconnect()


async def test_the_robot_hands_over_by_itself_after_misses(acme, robot_worker):
    # given a robot-first channel that hands over after two unanswered questions
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup", misses=2)
    agent = desk.agents[0]
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when the visitor asks something the knowledge base does not cover
    ack = await send(ws, "Do you sell purple elephants?")
    cid = ack["conversation_id"]

    # then the robot says it does not know, and offers a person
    first = await next_from(ws, "robot")
    assert first["meta"]["robot"]["answered"] is False
    assert first["meta"]["robot"]["sources"] == []
    assert "Talk to a person" in first["content"]
    assert await agent_ws.receive_nothing(timeout=0.5)

    # when a second question misses too
    await send(ws, "What colour is the sky on Mars?", cid)

    # then the conversation goes to the agent without the visitor asking
    second = await next_from(ws, "robot")
    assert second["meta"]["robot"]["answered"] is False
    assigned = await receive_until(agent_ws, "conversation.assigned")
    assert assigned["conversation"]["id"] == cid
    assert assigned["conversation"]["session"]["handover_reason"] == "misses"

    # and both questions wait for the admins
    def open_questions():
        with schema_context("acme"):
            return set(
                RobotQuestion.objects.filter(
                    conversation_id=cid, reason="unanswered", status="open"
                ).values_list("question", flat=True)
            )

    assert await database_sync_to_async(open_questions)() == {
        "Do you sell purple elephants?",
        "What colour is the sky on Mars?",
    }
    await agent_ws.disconnect()
    await ws.disconnect()


async def test_a_robot_only_channel_never_hands_over(acme, robot_worker):
    # given a robot-only channel (agents online all the same)
    desk = await database_sync_to_async(robot_desk)(acme, mode="robot", misses=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk, language="zh-CN")
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when the visitor asks in Chinese, then asks for a person
    ack = await send(ws, "请问多久发货")
    cid = ack["conversation_id"]
    answer = await next_from(ws, "robot")
    assert answer["content"] == "付款后 24 小时内发货。"
    await send(ws, "人工", cid)

    # then the robot answers the phrase like any question, in the visitor's language
    reply = await next_from(ws, "robot")
    assert reply["meta"]["robot"]["answered"] is False
    assert "抱歉" in reply["content"]

    # and the hand-over button is refused with a reason
    await ws.send_json_to({"type": "robot.handover", "conversation_id": cid, "ref": "h1"})
    error = await receive_until(ws, "error")
    assert error["ref"] == "h1"
    assert error["code"] == "forbidden"

    def status():
        with schema_context("acme"):
            return Session.objects.get(conversation_id=cid).status

    assert await database_sync_to_async(status)() == "robot"
    await ws.disconnect()


async def test_hand_over_with_nobody_online_offers_a_message(acme, robot_worker):
    # given a robot-first channel whose agents are all offline
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup", status="offline")
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    ack = await send(ws, REFUND_Q)
    cid = ack["conversation_id"]
    await next_from(ws, "robot")

    # when the visitor presses "Talk to a person"
    await ws.send_json_to({"type": "robot.handover", "conversation_id": cid, "ref": "h"})
    result = await receive_until(ws, "robot.handover.result")

    # then the robot says nobody is there, offers to leave a message, and keeps serving
    assert result["result"] == "offline"
    notice = await next_from(ws, "robot")
    assert notice["meta"]["robot"] == {"offline": True}
    await send(ws, "how do I get a refund", cid)
    again = await next_from(ws, "robot")
    assert again["content"] == REFUND_A
    await ws.disconnect()


async def test_bad_robot_frames_get_errors(acme, robot_worker):
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup")
    other_desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup")
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    _other, other_token = await database_sync_to_async(make_visitor)(other_desk)
    other_ws, _ = await connect(f"/ws/visitor/?token={other_token}", "acme.localhost")
    await send(other_ws, REFUND_Q)
    someone_elses = await next_from(other_ws, "robot")
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    for frame, code in [
        ({"type": "robot.feedback", "message_id": "7", "helpful": True}, "invalid"),
        (
            {"type": "robot.feedback", "message_id": someone_elses["id"], "helpful": "yes"},
            "invalid",
        ),
        (
            {"type": "robot.feedback", "message_id": someone_elses["id"], "helpful": True},
            "not_found",
        ),
        (
            {"type": "robot.handover", "conversation_id": someone_elses["conversation_id"]},
            "not_found",
        ),
        ({"type": "robot.handover", "conversation_id": None}, "invalid"),
    ]:
        await ws.send_json_to({**frame, "ref": "x"})
        error = await receive_until(ws, "error")
        assert error["code"] == code, frame
    await ws.disconnect()
    await other_ws.disconnect()


def _delivery_items(desk) -> None:
    """Two items that a vague question about delivery matches equally (half its words)."""
    with schema_context("acme"):
        kb = desk.channel.knowledge_bases.get()
        for region, days in (("Europe", "five to eight"), ("Asia", "four to six")):
            kb_services.faq_upsert(
                kb=kb,
                question=f"How long does delivery to {region} take?",
                answer=f"Parcels to {region} arrive in {days} working days.",
                index_later=False,
            )


async def test_when_unsure_the_robot_offers_choices_and_answers_the_one_chosen(acme, robot_worker):
    # given a robot-first channel whose FAQ has two items about delivery
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup", misses=1)
    await database_sync_to_async(_delivery_items)(desk)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when the visitor asks something both could answer
    ack = await send(ws, "delivery abroad")
    cid = ack["conversation_id"]

    # then the robot does not pick one: it offers both, and it is no miss
    unsure = await next_from(ws, "robot")
    robot = unsure["meta"]["robot"]
    assert robot["answered"] is False
    assert unsure["content"] == "I am not sure I understood. Did you mean one of these?"
    titles = [s["title"] for s in robot["suggestions"]]
    assert set(titles) == {
        "How long does delivery to Europe take?",
        "How long does delivery to Asia take?",
    }

    # when the visitor chooses one (the widget sends its question)
    await send(ws, "How long does delivery to Asia take?", cid)

    # then the robot answers with that item, and the session stayed with the robot
    answer = await next_from(ws, "robot")
    assert answer["content"] == "Parcels to Asia arrive in four to six working days."
    assert answer["meta"]["robot"]["answered"] is True
    assert answer["meta"]["robot"]["suggestions"] == []

    def status():
        with schema_context("acme"):
            return Session.objects.get(conversation_id=cid).status

    assert await database_sync_to_async(status)() == "robot"
    await ws.disconnect()


async def test_a_question_in_a_language_the_robot_cannot_read_goes_to_a_person(acme, robot_worker):
    # given a robot-first channel with an online agent, and a Spanish-speaking visitor
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup", misses=3)
    cookie = await database_sync_to_async(session_cookie)(acme, desk.agents[0])
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    _visitor, token = await database_sync_to_async(make_visitor)(desk, language="es-ES")
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when they ask in Spanish (about a refund, which the FAQ answers in English)
    ack = await send(ws, "¿Cómo puedo obtener un reembolso de mi pedido?")

    # then the robot does not guess: it says so in English (it has no Spanish), and hands over
    reply = await next_from(ws, "robot")
    assert reply["meta"]["robot"]["answered"] is False
    assert reply["meta"]["robot"]["declined"] == "language"
    assert reply["content"] == "Sorry, I can only answer questions in English or Chinese."
    assigned = await receive_until(agent_ws, "conversation.assigned")
    assert assigned["conversation"]["id"] == ack["conversation_id"]
    assert assigned["conversation"]["session"]["handover_reason"] == "language"
    await agent_ws.disconnect()
    await ws.disconnect()
