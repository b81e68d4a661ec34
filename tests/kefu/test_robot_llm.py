"""LLM answers (KB-5) through the robot and agents' drafts, against a local OpenAI-compatible
server (tests/fake_llm.py) and a real Celery worker."""

from __future__ import annotations

import itertools
import json

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kbase.models import LlmProvider, RobotQuestion
from tests.conftest import agent_client, make_visitor, session_cookie
from tests.fake_llm import GOOD_ANSWER, FakeLlm
from tests.kefu.conftest import REFUND_A, REFUND_Q, next_from, robot_desk, send
from tests.ws import collect_until, connect, receive_until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fake_llm():
    server = FakeLlm().start()
    yield server
    server.stop()
    with schema_context("acme"):
        LlmProvider.objects.all().delete()  # other tests of the tenant expect none


def providers(base_url: str, *specs: tuple[str, str, int]) -> None:
    """Configure acme's providers: ``(name, model, timeout_s)`` in priority order."""
    with schema_context("acme"):
        LlmProvider.objects.all().delete()
        for priority, (name, model, timeout_s) in enumerate(specs):
            LlmProvider.objects.create(
                name=name,
                preset=LlmProvider.Preset.CUSTOM,
                base_url=base_url,
                model=model,
                api_key="sk-test",
                timeout_s=timeout_s,
                priority=priority,
            )


async def test_the_robot_streams_a_grounded_answer_that_cites_its_source(
    acme, robot_worker, fake_llm
):
    # given a robot-first channel and an LLM provider
    await database_sync_to_async(providers)(fake_llm.base_url, ("Local", "good", 20))
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup")
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when the visitor asks
    await send(ws, "how can I get my money back for an order? refund please")

    # then the answer streams in, growing, and ends as one message citing the FAQ item
    frames = await collect_until(
        ws,
        lambda fs: any(
            f["type"] == "message.new" and f["message"]["sender"]["type"] == "robot" for f in fs
        ),
        timeout=30,
    )
    streamed = [f["text"] for f in frames if f["type"] == "robot.stream"]
    assert len(streamed) >= 2
    assert all(b.startswith(a) for a, b in itertools.pairwise(streamed))
    assert GOOD_ANSWER.startswith(streamed[0])
    final = next(
        f["message"]
        for f in frames
        if f["type"] == "message.new" and f["message"]["sender"]["type"] == "robot"
    )
    assert final["content"] == GOOD_ANSWER
    robot = final["meta"]["robot"]
    assert robot["llm"] == "Local"
    assert robot["answered"] is True
    assert [s["title"] for s in robot["sources"]] == [REFUND_Q]
    # the streamed frames name the message that replaces them
    assert {f["stream_id"] for f in frames if f["type"] == "robot.stream"} == {
        final["client_msg_id"]
    }

    # and the model was given the knowledge base's answer to ground it, and the question
    request = fake_llm.requests[-1]
    assert request["model"] == "good"
    assert request["stream"] is True
    assert REFUND_A in request["messages"][0]["content"]
    assert request["messages"][-1] == {
        "role": "user",
        "content": "how can I get my money back for an order? refund please",
    }
    await ws.disconnect()


async def test_the_robot_says_it_does_not_know_when_the_model_finds_no_answer(
    acme, robot_worker, fake_llm
):
    await database_sync_to_async(providers)(fake_llm.base_url, ("Local", "unknown", 20))
    desk = await database_sync_to_async(robot_desk)(acme, mode="workgroup", misses=5)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    ack = await send(ws, "refund for a spaceship order?")
    frames = await collect_until(
        ws,
        lambda fs: any(
            f["type"] == "message.new" and f["message"]["sender"]["type"] == "robot" for f in fs
        ),
        timeout=30,
    )
    # nothing of the model's "unknown" reply reaches the visitor
    assert [f for f in frames if f["type"] == "robot.stream"] == []
    reply = next(
        f["message"]
        for f in frames
        if f["type"] == "message.new" and f["message"]["sender"]["type"] == "robot"
    )
    assert reply["meta"]["robot"]["answered"] is False
    assert reply["meta"]["robot"]["llm"] == "Local"
    assert reply["content"].startswith("Sorry, I could not find an answer")

    def collected():
        with schema_context("acme"):
            return RobotQuestion.objects.filter(
                conversation_id=ack["conversation_id"], reason="unanswered"
            ).count()

    assert await database_sync_to_async(collected)() == 1
    await ws.disconnect()


async def test_failing_and_slow_providers_are_skipped_in_order(acme, robot_worker, fake_llm):
    # given a provider that fails, one slower than its timeout, and a good one last
    await database_sync_to_async(providers)(
        fake_llm.base_url, ("Broken", "broken", 20), ("Slow", "slow", 1), ("Good", "good", 20)
    )
    desk = await database_sync_to_async(robot_desk)(acme, mode="robot")
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    await send(ws, "I want a refund for my order")

    answer = await next_from(ws, "robot", timeout=30)
    assert answer["content"] == GOOD_ANSWER
    assert answer["meta"]["robot"]["llm"] == "Good"
    assert [r["model"] for r in fake_llm.requests[-3:]] == ["broken", "slow", "good"]
    await ws.disconnect()


async def test_every_provider_down_falls_back_to_the_knowledge_base(acme, robot_worker, fake_llm):
    await database_sync_to_async(providers)(fake_llm.base_url, ("Broken", "broken", 20))
    desk = await database_sync_to_async(robot_desk)(acme, mode="robot")
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    await send(ws, "how do I get a refund for my order")

    answer = await next_from(ws, "robot", timeout=30)
    assert answer["content"] == REFUND_A
    assert answer["meta"]["robot"]["llm"] is None
    await ws.disconnect()


async def test_an_agent_gets_an_ai_draft_streamed_to_the_inbox(acme, robot_worker, fake_llm):
    # given an agent serving a visitor on a human-only channel
    from tests.conftest import make_desk

    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    agent = desk.agents[0]
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, agent)
    agent_ws, _ = await connect("/ws/agent/", "acme.localhost", cookie=cookie)
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    client = await database_sync_to_async(agent_client)(agent)

    async def draft(body) -> tuple[int, dict]:
        def post():
            r = client.post(
                "/api/v1/kefu/drafts", json.dumps(body), content_type="application/json"
            )
            return r.status_code, r.json()

        return await database_sync_to_async(post)()

    await send(ws, "How do I get a refund?")
    assigned = await receive_until(agent_ws, "conversation.assigned")
    cid = assigned["conversation"]["id"]

    # without a provider, the agent is told why there is no draft
    status, body = await draft({"conversation_id": cid})
    assert (status, body["error"]) == (409, "not_configured")
    assert "AI provider" in body["detail"]

    # with one, the draft streams to the agent's inbox
    await database_sync_to_async(providers)(fake_llm.base_url, ("Local", "good", 20))
    status, body = await draft({"conversation_id": cid})
    assert status == 202
    frames = await collect_until(
        agent_ws, lambda fs: any(f["type"] == "assist.draft" and f["done"] for f in fs), timeout=30
    )
    drafts = [f for f in frames if f["type"] == "assist.draft"]
    assert {f["request_id"] for f in drafts} == {body["request_id"]}
    assert drafts[-1]["text"] == GOOD_ANSWER
    assert drafts[-1]["error"] is None
    # the visitor sees nothing of it
    assert not [
        f
        for f in await collect_until(ws, lambda fs: True, quiet=0.5)
        if f["type"] == "assist.draft"
    ]

    # someone else's conversation, or a bad id, is refused
    status, body = await draft({"conversation_id": cid + 10_000})
    assert status == 404
    status, body = await draft({"conversation_id": "x"})
    assert status == 400
    await agent_ws.disconnect()
    await ws.disconnect()
