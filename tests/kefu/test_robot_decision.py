"""The robot's decision (kefu/robot/decision.py) on a small FAQ, through the real search: the
embedding service in a process of its own for the semantic cases, keywords alone for the rest;
the language the robot speaks to a visitor; the demo FAQ's vectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_tenants.utils import schema_context

from kbase import demo, embeddings, indexing, services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from kefu.robot import persona
from kefu.robot.decision import consider, decide, question_language
from kefu.senders import robot_language
from kefu.services import visitors
from tests.conftest import unique
from tests.kefu.conftest import robot_desk

semantic_only = pytest.mark.skipif(
    not embeddings.available(), reason="requirements-semantic.txt is not installed"
)

#: near-duplicates: a question about delivery times matches all three about as well
DELIVERY = [
    ("eu", "How long does delivery to Europe take?", "Five to eight working days by air."),
    ("us", "How long does delivery to the United States take?", "Seven to ten working days."),
    ("asia", "How long does delivery to Asia take?", "Four to six working days by air."),
]


@pytest.fixture(scope="module")
def embed_server(django_db_setup: None, django_db_blocker) -> Iterator[object]:
    from tests.servers import embed_server_start

    if not embeddings.available():
        yield None
        return
    with django_db_blocker.unblock():
        server = embed_server_start(name="embed-decision")
    yield server
    server.stop()


@pytest.fixture
def shop_kb(acme):
    """The demo FAQ (Chinese + English questions) with vectors."""
    with schema_context("acme"):
        kb = KnowledgeBase.objects.create(name=unique("Shop"), is_public=True)
        ids = [
            services.faq_upsert(
                kb=kb, question=q, answer=a, category=c, external_id=e, index_later=False
            )[0].pk
            for e, c, q, a in demo.FAQ
        ]
        indexing.embed("faq", ids)
    return kb


def _decide(kb: KnowledgeBase, question: str, mode: str):
    """What the robot decides: its search (re-ranked by pieces when semantic), then decide."""
    with schema_context("acme"):
        found, decision = consider(question, kb_ids=[kb.pk], min_confidence=0.5, mode=mode)
        assert found.mode == mode
        return decision


@semantic_only
@pytest.mark.usefixtures("embed_server")
def test_a_paraphrase_is_answered_with_the_right_item(shop_kb):
    decision = _decide(shop_kb, "How long does shipping take?", "hybrid")
    assert decision.action == "answer"
    assert [h["external_id"] for h in decision.hits] == ["shipping"]
    assert decision.confidence >= 0.5


@semantic_only
@pytest.mark.usefixtures("embed_server")
def test_an_out_of_scope_question_is_declined(shop_kb):
    decision = _decide(shop_kb, "Can you recommend a good film for tonight?", "hybrid")
    assert (decision.action, decision.hits, decision.reason) == ("decline", [], "no_match")


@semantic_only
@pytest.mark.usefixtures("embed_server")
def test_close_candidates_are_offered_as_choices(shop_kb):
    with schema_context("acme"):
        ids = [
            services.faq_upsert(kb=shop_kb, question=q, answer=a, external_id=e, index_later=False)[
                0
            ].pk
            for e, q, a in DELIVERY
        ]
        indexing.embed("faq", ids)
    decision = _decide(shop_kb, "how many days until my parcel arrives abroad", "hybrid")
    assert decision.action == "suggest"
    assert len(decision.hits) == 3
    assert {"eu", "us", "asia"} & {h["external_id"] for h in decision.hits}


@semantic_only
@pytest.mark.usefixtures("embed_server")
def test_a_question_in_another_language_is_never_answered(shop_kb):
    for question in ("¿Cuándo enviarán mi pedido a casa?", "注文はいつ発送されますか？"):
        decision = _decide(shop_kb, question, "hybrid")
        assert (decision.action, decision.reason) == ("decline", "language"), question
    assert decision.language == "ja"


def test_by_keywords_every_word_answers_and_half_offers_choices(shop_kb):
    decision = _decide(shop_kb, "怎么申请退款", "keyword")
    assert decision.action == "answer"
    assert decision.hits[0]["external_id"] == "refund"
    assert decision.confidence == 1.0
    decision = _decide(shop_kb, "发货时间", "keyword")
    assert decision.action == "suggest"
    assert decision.hits[0]["external_id"] == "shipping"
    assert _decide(shop_kb, "优惠券", "keyword").action == "decline"


def test_a_chosen_question_is_answered_exactly(shop_kb):
    for question in (
        "When will my order ship?",
        "多久发货？",
        "多久发货？ When will my order ship?",
    ):
        decision = _decide(shop_kb, question, "keyword")
        assert (decision.action, decision.reason) == ("answer", "exact"), question
        assert decision.hits[0]["external_id"] == "shipping"


def _hit(external_id: str, score: float, similarity: float) -> dict:
    return {
        "type": "faq",
        "id": hash(external_id) % 1000,
        "external_id": external_id,
        "title": f"Question {external_id}",
        "text": "An answer.",
        "score": score,
        "similarity": similarity,
    }


def test_the_lead_over_the_second_hit_and_the_channel_threshold_decide():
    clear = [_hit("a", 0.80, 0.70), _hit("b", 0.60, 0.60)]
    close = [_hit("a", 0.80, 0.70), _hit("b", 0.78, 0.69), _hit("c", 0.5, 0.5), _hit("d", 0.4, 0.4)]
    weak = [_hit("a", 0.35, 0.35), _hit("b", 0.10, 0.10)]
    assert decide("installing a heat pump", clear, semantic=True).action == "answer"
    assert decide("installing a heat pump", clear, semantic=True, min_confidence=0.9).action == (
        "suggest"
    )
    unsure = decide("installing a heat pump", close, semantic=True)
    assert (unsure.action, [h["external_id"] for h in unsure.hits]) == ("suggest", ["a", "b", "c"])
    assert decide("installing a heat pump", weak, semantic=True).action == "decline"
    assert decide("installing a heat pump", [], semantic=True).action == "decline"


def test_the_language_of_a_question():
    assert question_language("How long does shipping take?") == "en"
    assert question_language("多久发货") == "zh"
    assert question_language("Hur lång tid tar det att få bygglov?") == "sv"
    assert question_language("パスワードを忘れました") == "ja"
    # another script says it even in two words
    assert question_language("Возврат денег") == "ru"
    # too short to tell: keywords are left to the search
    assert question_language("refund") is None
    assert question_language("demolition permit") is None


def test_the_robot_introduces_itself_in_the_visitor_language(acme):
    desk = robot_desk(acme, mode="workgroup")
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(robot_name="")
        desk.channel.refresh_from_db()
        for language, name, greeting in (
            ("en-US", "Assistant", "Hello! I am the assistant."),
            ("es-ES", "Assistant", "Hello! I am the assistant."),
            ("zh-CN", "智能助理", "您好"),
            ("", "智能助理", "您好"),
        ):
            visitor, _token = visitors.visitor_start(channel=desk.channel, language=language)
            info = persona.widget_info(desk.channel, robot_language(visitor))
            assert info["name"] == name, language
            assert info["greeting"].startswith(greeting), language


@semantic_only
def test_the_demo_faq_gets_the_vectors_it_lacks(acme):
    # given the demo knowledge base made before semantic search was installed (no vectors)
    with schema_context("acme"):
        demo.populate()
        kb = KnowledgeBase.objects.get(name="帮助中心 Help center")
        try:
            kb.faq_items.update(embedding=None)
            # when the demo is set up again
            demo.populate()
            # then every item has its vector, and the robot can judge paraphrases by meaning
            assert not kb.faq_items.filter(embedding__isnull=True).exists()
            assert kb.faq_items.count() == len(demo.FAQ)
        finally:
            kb.delete()
