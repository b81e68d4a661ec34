"""The demo robot as ``run.sh`` runs it now: the worker answers, the embedding service encodes
the questions (and the hits' pieces), daphne never loads the model. A paraphrase is answered, a
near miss gets choices — over the websocket, with a real worker and embedding service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kbase import demo, embeddings, indexing
from kbase import services as kb_services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from tests.conftest import make_desk, make_visitor, unique
from tests.kefu.conftest import next_from, send
from tests.ws import connect
from weiyu.celery import app

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(
        not embeddings.available(), reason="requirements-semantic.txt is not installed"
    ),
]


@pytest.fixture(scope="module")
def semantic_robot(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """The embedding service and a worker with semantic search on, on a queue of their own."""
    from tests.servers import celery_worker_start, embed_server_start

    queue = unique("robot-semantic")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    with django_db_blocker.unblock():
        server = embed_server_start(name="embed-robot")
    worker = celery_worker_start(queue=queue, name="robot-semantic", concurrency=1)
    yield
    worker.stop()
    server.stop()
    app.conf.task_default_queue = previous


def demo_desk(tenant):
    """A robot-first channel answering from the demo FAQ (with its vectors)."""
    desk = make_desk(tenant, agents=1)
    with schema_context(tenant.schema_name):
        kb = KnowledgeBase.objects.create(name=unique("Demo FAQ"), is_public=True)
        ids = [
            kb_services.faq_upsert(
                kb=kb, question=q, answer=a, category=c, external_id=e, index_later=False
            )[0].pk
            for e, c, q, a in demo.FAQ
        ]
        indexing.embed("faq", ids)
        Channel.objects.filter(pk=desk.channel.pk).update(
            mode=Channel.Mode.WORKGROUP, handover_after_misses=3, robot_name=""
        )
        desk.channel.refresh_from_db()
        desk.channel.knowledge_bases.add(kb)
    return desk


@pytest.mark.usefixtures("semantic_robot")
async def test_the_demo_robot_answers_a_paraphrase(acme):
    # given the demo FAQ behind a robot-first channel, and an English-speaking visitor
    desk = await database_sync_to_async(demo_desk)(acme)
    _visitor, token = await database_sync_to_async(make_visitor)(desk, language="en-GB")
    ws, _ = await connect(f"/ws/visitor/?token={token}", "acme.localhost")

    # when they ask in other words than the FAQ's "When will my order ship?"
    ack = await send(ws, "How long does shipping take?")

    # then the robot answers with that item, in English, and cites it
    answer = await next_from(ws, "robot")
    robot = answer["meta"]["robot"]
    assert robot["answered"] is True
    assert answer["content"].startswith("付款后 24 小时内发货")
    assert [s["title"] for s in robot["sources"]] == ["多久发货？ When will my order ship?"]
    assert answer["sender"]["name"] == "Assistant"

    # when they ask something the shop's FAQ does not cover
    await send(ws, "Can you recommend a good film for tonight?", ack["conversation_id"])

    # then the robot says so instead of answering with the closest item
    miss = await next_from(ws, "robot")
    assert miss["meta"]["robot"]["answered"] is False
    assert miss["meta"]["robot"]["declined"] == "no_match"
    assert miss["meta"]["robot"]["suggestions"] == []
    await ws.disconnect()
