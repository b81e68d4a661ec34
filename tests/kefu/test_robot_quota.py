"""The plan's AI answers (TEN-3, tenants.quotas): a tenant whose answers of the month are used up,
or whose plan has none, gets the knowledge base's answer without the language model. A real
Celery worker and a local OpenAI-compatible server (tests/fake_llm.py)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from kbase.models import LlmProvider
from tenants import quotas, services
from tenants.models import Plan
from tests.conftest import PASSWORD, make_visitor, unique
from tests.fake_llm import GOOD_ANSWER, FakeLlm
from tests.kefu.conftest import REFUND_A, REFUND_Q, next_from, robot_desk, send
from tests.tenants.test_quotas import usage_reset
from tests.waits import wait_until_async
from tests.ws import connect

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def thrifty(django_db_setup, django_db_blocker):
    """A tenant whose plan allows one AI answer a month."""
    with django_db_blocker.unblock():
        schema = unique("thrifty")
        tenant = services.tenant_create(
            name="Thrifty",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        tenant.plan = Plan.objects.create(
            code=unique("ai"), name="One answer", ai_answers_per_month=1
        )
        tenant.save()
        usage_reset(schema)
        return tenant


@pytest.fixture
def fake_llm():
    server = FakeLlm().start()
    yield server
    server.stop()


def provider(schema: str, base_url: str) -> None:
    with schema_context(schema):
        LlmProvider.objects.create(
            name="Local",
            preset=LlmProvider.Preset.CUSTOM,
            base_url=base_url,
            model="good",
            api_key="sk-test",
            timeout_s=20,
        )


async def test_the_robot_answers_without_the_model_once_the_plans_ai_answers_are_used_up(
    thrifty, robot_worker, fake_llm
):
    schema = thrifty.schema_name
    host = f"{schema}.localhost"
    await database_sync_to_async(provider)(schema, fake_llm.base_url)
    desk = await database_sync_to_async(robot_desk)(thrifty, mode="robot")

    # given a first visitor whose question the model answers: the plan's one AI answer
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", host)
    await send(ws, "I want a refund for my order")
    first = await next_from(ws, "robot", timeout=60)
    assert first["content"] == GOOD_ANSWER
    assert first["meta"]["robot"]["llm"] == "Local"
    await ws.disconnect()
    await wait_until_async(
        lambda: quotas.used("ai_answers", schema=schema) == 1, what="the AI answer counted"
    )
    asked = len(fake_llm.requests)

    # when the next visitor asks, the month's AI answers are used up
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", host)
    await send(ws, REFUND_Q)
    second = await next_from(ws, "robot", timeout=60)

    # then the robot still answers, from the knowledge base, and the model is not asked
    assert second["content"] == REFUND_A
    assert second["meta"]["robot"]["llm"] is None
    assert second["meta"]["robot"]["answered"] is True
    assert len(fake_llm.requests) == asked
    assert quotas.used("ai_answers", schema=schema) == 1
    await ws.disconnect()
