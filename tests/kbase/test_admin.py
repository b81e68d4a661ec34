"""The knowledge-base back office writes through services: a FAQ item saved there is searchable
at once, an unanswered question answered there becomes a FAQ item, dismissing and deleting work,
and a knowledge base is saved with its categories."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from kbase import search
from kbase.models import Category, FaqItem, KnowledgeBase, RobotQuestion
from org.models import User
from tests.conftest import agent_client, unique


@pytest.fixture(autouse=True)
def _keywords_only(monkeypatch):
    """Keyword search only: test_semantic.py covers embeddings."""
    monkeypatch.setenv("WEIYU_SEMANTIC", "off")


def _client():
    return agent_client(User.objects.get(username="bob"))  # the tenant admin


def test_a_faq_item_saved_in_the_back_office_is_searchable(acme):
    with schema_context(acme.schema_name):
        kb = KnowledgeBase.objects.create(name=unique("kb"))
        client = _client()
    word = unique("zebra")
    added = client.post(
        "/admin/kbase/faqitem/add/",
        {
            "kb": kb.pk,
            "question": f"Do you sell {word} paint?",
            "answer": "Yes.",
            "is_published": "on",
        },
    )
    assert added.status_code == 302
    with schema_context(acme.schema_name):
        item = FaqItem.objects.get(kb=kb)
        hits = search.search(q=word, kb_ids=[kb.pk], mode="keyword")
        assert [hit["id"] for hit in hits] == [item.pk]
    client.post(
        "/admin/kbase/faqitem/",
        {"action": "delete_selected", "_selected_action": [item.pk], "post": "yes"},
    )
    with schema_context(acme.schema_name):
        assert not FaqItem.objects.filter(pk=item.pk).exists()


def test_an_unanswered_question_is_answered_or_dismissed_in_the_back_office(acme):
    with schema_context(acme.schema_name):
        kb = KnowledgeBase.objects.create(name=unique("kb"))
        asked = RobotQuestion.objects.create(
            question="Do you deliver on Sundays?", normalized=unique("q"), reason="unanswered"
        )
        ignored = RobotQuestion.objects.create(
            question="asdf", normalized=unique("q"), reason="unanswered"
        )
        client = _client()
    answered = client.post(
        f"/admin/kbase/robotquestion/{asked.pk}/change/",
        {
            "question": "Do you deliver on Sundays?",
            "status": "open",
            "answer": "Only in Shanghai.",
            "target_kb": kb.pk,
        },
    )
    assert answered.status_code == 302
    client.post(
        "/admin/kbase/robotquestion/",
        {"action": "dismiss", "_selected_action": [ignored.pk]},
    )
    with schema_context(acme.schema_name):
        asked.refresh_from_db()
        assert asked.status == RobotQuestion.Status.ANSWERED
        assert (asked.faq_item.kb_id, asked.faq_item.answer) == (kb.pk, "Only in Shanghai.")
        assert RobotQuestion.objects.get(pk=ignored.pk).status == RobotQuestion.Status.DISMISSED


def test_a_knowledge_base_is_saved_with_its_categories(acme):
    with schema_context(acme.schema_name):
        client = _client()
    name = unique("kb")
    added = client.post(
        "/admin/kbase/knowledgebase/add/",
        {
            "name": name,
            "kind": "faq",
            "description": "",
            "categories-TOTAL_FORMS": 1,
            "categories-INITIAL_FORMS": 0,
            "categories-MIN_NUM_FORMS": 0,
            "categories-MAX_NUM_FORMS": 1000,
            "categories-0-name": "Delivery",
            "categories-0-position": 0,
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    with schema_context(acme.schema_name):
        kb = KnowledgeBase.objects.get(name=name)
        assert list(Category.objects.filter(kb=kb).values_list("name", flat=True)) == ["Delivery"]
    client.post(f"/admin/kbase/knowledgebase/{kb.pk}/delete/", {"post": "yes"})
    with schema_context(acme.schema_name):
        assert not KnowledgeBase.objects.filter(pk=kb.pk).exists()
        assert not Category.objects.filter(kb_id=kb.pk).exists()
