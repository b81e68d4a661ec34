"""Semantic and hybrid knowledge-base search with the bundled all-MiniLM-L6-v2 model (loaded
offline): item vectors computed here (as the Celery worker does), query vectors by the embedding
service in a process of its own (``manage.py embed_server``), and the keyword-only fallback when
it is turned off."""

from __future__ import annotations

import logging
import os
from importlib import resources
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from kbase import embeddings, indexing, search, services
from kbase.models import FaqItem, KnowledgeBase
from tests.conftest import unique

pytestmark = [
    pytest.mark.skipif(
        not embeddings.available(), reason="requirements-semantic.txt is not installed"
    ),
    pytest.mark.usefixtures("embed_server"),
]


@pytest.fixture
def panel_kb():
    with schema_context("acme"):
        kb = KnowledgeBase.objects.create(name=unique("Electrics"), is_public=True)
        rows = [
            ("panel", "Which electrical panel should I have?", "A modern consumer unit with RCDs."),
            ("roof", "How often should a roof be inspected?", "Every few years, after storms."),
            ("tiles", "Can I lay tiles on a wooden floor?", "Only on a stiff, level subfloor."),
        ]
        ids = [
            services.faq_upsert(kb=kb, question=q, answer=a, external_id=e, index_later=False)[0].pk
            for e, q, a in rows
        ]
        assert indexing.embed("faq", ids) == 3
    return kb


def test_a_paraphrase_is_found_by_meaning(panel_kb):
    with schema_context("acme"):
        item = FaqItem.objects.get(kb=panel_kb, external_id="panel")
        assert len(item.embedding) == embeddings.DIMENSIONS
        query = "what kind of fuse box do I need"
        keyword = search.search(q=query, kb_ids=[panel_kb.pk], mode="keyword")
        assert "panel" not in [h["external_id"] for h in keyword[:1]]
        semantic = search.search(q=query, kb_ids=[panel_kb.pk], mode="semantic")
        assert semantic[0]["external_id"] == "panel"
        hybrid = search.search(q=query, kb_ids=[panel_kb.pk])  # the default when installed
        assert hybrid[0]["external_id"] == "panel"
        assert set(hybrid[0]) >= {"type", "id", "title", "snippet", "score", "kb"}


def test_turned_off_it_says_so_once_and_searches_by_keywords(panel_kb, monkeypatch, caplog):
    monkeypatch.setenv("WEIYU_SEMANTIC", "off")
    with schema_context("acme"), caplog.at_level(logging.WARNING):
        hits = search.search(q="roof inspected", kb_ids=[panel_kb.pk], mode="semantic")
        assert hits[0]["external_id"] == "roof"
    assert not embeddings.available()


def test_import_builds_the_semantic_index():
    kb = unique("ZaragozaSemantic")
    path = resources.files("zaragoza_construction_faq") / "data" / "faq-en.jsonl"
    out = StringIO()
    call_command(
        "kbase_import", str(path), "--tenant", "acme", "--kb", kb, "--create", "--no-progress",
        stdout=out, stderr=StringIO(),
    )  # fmt: skip
    with schema_context("acme"):
        assert not FaqItem.objects.filter(kb__name=kb, embedding__isnull=True).exists()
        kb_id = KnowledgeBase.objects.get(name=kb).pk
        hits = search.search(
            q="for how many years does a building permit stay valid", kb_ids=[kb_id], limit=5
        )
        assert "bbr-pbl-021" in [h["external_id"] for h in hits]


def test_vectors_are_ranked_by_pgvector_when_the_database_has_it(panel_kb, monkeypatch):
    # the migration installs pgvector wherever the server offers it (the embedded PostgreSQL
    # does; tests/kbase/test_pgvector.py runs this module there)
    with schema_context("acme"), connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        offered = cursor.fetchone() is not None
        assert embeddings.has_pgvector("acme") is offered
        if os.environ.get("WEIYU_EXPECT_PGVECTOR") == "1":
            assert offered
        # and both ways of ranking agree on the order and the similarities
        query = embeddings.encode(["what fuse box do I need"])[0]
        scope = FaqItem.objects.filter(kb=panel_kb)
        found = embeddings.nearest(FaqItem, query, scope, 3)
        monkeypatch.setattr(embeddings, "has_pgvector", lambda _schema: False)
        exact = embeddings.nearest(FaqItem, query, scope, 3)
        panel = FaqItem.objects.get(kb=panel_kb, external_id="panel").pk
    assert found[0][0] == panel
    assert [pk for pk, _s in found] == [pk for pk, _s in exact]
    assert all(abs(a - b) < 1e-4 for (_p, a), (_q, b) in zip(found, exact, strict=True))


def test_the_default_mode_is_hybrid_through_the_service(panel_kb):
    # given the embedding service (the module's fixture) is up
    with schema_context("acme"):
        query = "what kind of fuse box do I need"
        # when searching without a mode
        found = search.search_run(q=query, kb_ids=[panel_kb.pk])
        keyword = search.search_run(q=query, kb_ids=[panel_kb.pk], mode="keyword")
    # then the hybrid ranks it, with the service's vector
    assert found.mode == "hybrid"
    assert found.results[0]["external_id"] == "panel"
    assert keyword.mode == "keyword"
    assert [h["id"] for h in found.results] != [h["id"] for h in keyword.results]


def test_the_service_vector_is_the_in_process_one():
    # the service's packed floats are the vector encode() gives here (both rounded to 6
    # decimals; another process may differ in the last digit)
    from kbase import embed_service

    query = "Can I lay tiles on a wooden floor?"
    served = embed_service.query_vector(text=query)
    local = embeddings.encode([query])[0]
    assert served is not None
    assert len(served) == embeddings.DIMENSIONS
    assert all(abs(a - b) < 1e-5 for a, b in zip(served, local, strict=True))
