"""Fixtures of the robot tests: a Celery worker of their own and robot desks."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kbase import services as kb_services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from tests import fake_llm
from tests.channels import channel_worker, vendors  # noqa: F401 (fixtures of kefu.channels)
from tests.conftest import Desk, make_desk, unique
from tests.waits import WAIT_S
from tests.ws import receive_until
from weiyu.celery import app

REFUND_Q = "How do I get a refund for my order?"
REFUND_A = "Open My orders, choose the order and click Request refund. The money is back in 3 days."


@pytest.fixture(scope="module")
def robot_worker():
    """A Celery worker on a queue of its own; the module's tasks go to it."""
    from tests.servers import celery_worker_start

    queue = unique("robot")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    # keyword search only: the worker need not load the sentence model for these tests
    worker = celery_worker_start(
        queue=queue,
        name="robot",
        concurrency=2,
        WEIYU_SEMANTIC="off",
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{fake_llm.PORT}",  # the fake LLM vendor, on loopback
    )
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


def robot_desk(
    tenant, *, mode: str, agents: int = 1, status: str = "online", misses: int = 2
) -> Desk:
    """A desk whose channel is served by the robot from a knowledge base of its own."""
    desk = make_desk(tenant, agents=agents, status=status)
    with schema_context(tenant.schema_name):
        kb = KnowledgeBase.objects.create(name=unique("kb"), is_public=True)
        kb_services.faq_upsert(kb=kb, question=REFUND_Q, answer=REFUND_A, index_later=False)
        kb_services.faq_upsert(
            kb=kb, question="多久发货？", answer="付款后 24 小时内发货。", index_later=False
        )
        Channel.objects.filter(pk=desk.channel.pk).update(
            mode=mode, handover_after_misses=misses, robot_name="Robo"
        )
        desk.channel.refresh_from_db()
        desk.channel.knowledge_bases.add(kb)
    return desk


async def send(ws, content: str, cid: int | None = None, ref: str | None = None) -> dict:
    frame = {"type": "message.send", "client_msg_id": unique("c"), "content": content}
    if cid is not None:
        frame["conversation_id"] = cid
    await ws.send_json_to(frame)
    return await receive_until(ws, "message.ack")


async def next_from(ws, sender_type: str, timeout: float = WAIT_S) -> dict:
    """The next ``message.new`` whose sender is of ``sender_type``."""
    while True:
        frame = await receive_until(ws, "message.new", timeout=timeout)
        if frame["message"]["sender"]["type"] == sender_type:
            return frame["message"]
