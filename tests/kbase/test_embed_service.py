"""The embedding service (kbase.embed_service, ``manage.py embed_server``): web processes never
load the sentence model, and a search without the service answers by keywords within its
deadline."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from kbase import embed_service, embeddings, indexing, search, services
from kbase.models import KnowledgeBase
from tests.conftest import unique
from tests.servers import ROOT, database_url, embed_server_start

pytestmark = pytest.mark.skipif(
    not embeddings.available(), reason="requirements-semantic.txt is not installed"
)

#: a web process as daphne starts it: import the ASGI module, then serve requests through it
WEB_PROCESS = r"""
import asyncio, json, sys

import weiyu.asgi
from channels.testing import HttpCommunicator

HEAVY = ("torch", "sentence_transformers")
loaded_at_start = [m for m in HEAVY if m in sys.modules]


async def get(path):
    request = HttpCommunicator(
        weiyu.asgi.application, "GET", path, headers=[(b"host", b"acme.localhost")]
    )
    return await request.get_response(timeout=60)


api = asyncio.run(get(sys.argv[1]))
help_center = asyncio.run(get(sys.argv[2]))
print(json.dumps({
    "loaded_at_start": loaded_at_start,
    "loaded_after_search": [m for m in HEAVY if m in sys.modules],
    "api_status": api["status"],
    "api": json.loads(api["body"]),
    "help_status": help_center["status"],
}))
"""


@pytest.fixture
def fuse_kb():
    with schema_context("acme"):
        kb = KnowledgeBase.objects.create(name=unique("Fuses"), is_public=True)
        rows = [
            ("panel", "Which electrical panel should I have?", "A modern consumer unit with RCDs."),
            ("roof", "How often should a roof be inspected?", "Every few years, after storms."),
        ]
        ids = [
            services.faq_upsert(kb=kb, question=q, answer=a, external_id=e, index_later=False)[0].pk
            for e, q, a in rows
        ]
        assert indexing.embed("faq", ids) == 2
    return kb


@pytest.fixture
def fresh_prefix(settings):
    """Keys of the embedding service under a prefix of this test's own: no other test's service
    answers it."""
    settings.REDIS_KEY_PREFIX = unique(f"{settings.REDIS_KEY_PREFIX}x")
    yield settings.REDIS_KEY_PREFIX
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*(client.keys(f"{settings.REDIS_KEY_PREFIX}:embed:*") or ["-"]))


def run_web_process(path: str) -> dict:
    environment = {
        "DJANGO_SETTINGS_MODULE": "weiyu.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": settings.REDIS_KEY_PREFIX,
        "SECRET_KEY": settings.SECRET_KEY,
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, path, "/help/?q=fuse+box"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_web_process_never_loads_the_model(embed_server, fuse_kb):
    # given the embedding service is up
    # when a web process starts and serves a semantic search (API and help center)
    out = run_web_process(f"/api/v1/kbase/search?q=what+fuse+box+do+I+need&kb={fuse_kb.pk}")
    # then it ranked by meaning with the service's vector, without torch in the process
    assert out["loaded_at_start"] == []
    assert out["loaded_after_search"] == []
    assert out["api_status"] == 200
    assert out["help_status"] == 200
    assert out["api"]["mode"] == "hybrid"
    assert out["api"]["results"][0]["external_id"] == "panel"


def test_a_stopped_service_means_keyword_search_at_once(fresh_prefix, fuse_kb, caplog):
    # given a service under this test's prefix that answered, then was stopped
    server = embed_server_start(name="embed-stopped")
    try:
        with schema_context("acme"):
            before = search.search_run(q="what fuse box do I need", kb_ids=[fuse_kb.pk])
    finally:
        server.stop()
    assert before.mode == "hybrid"
    # when searching in every mode
    with schema_context("acme"), caplog.at_level(logging.WARNING, logger="kbase.embed_service"):
        started = time.monotonic()
        found = [
            search.search_run(q="roof inspected", kb_ids=[fuse_kb.pk], mode=mode)
            for mode in ("semantic", "hybrid", None)
        ]
        elapsed = time.monotonic() - started
        keyword = search.search_run(q="roof inspected", kb_ids=[fuse_kb.pk], mode="keyword")
    # then keywords answer without waiting for the deadline, and the log says so once
    assert [f.mode for f in found] == ["keyword"] * 3
    assert all(f.results == keyword.results for f in found)
    assert found[0].results[0]["external_id"] == "roof"
    assert elapsed < embed_service.timeout_s()
    warnings = [r for r in caplog.records if "semantic search unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_a_silent_service_costs_the_deadline_then_keywords(fresh_prefix, fuse_kb, settings):
    # given a service that announced itself and then hung (its key is there, nobody answers)
    settings.WEIYU_EMBED_TIMEOUT_S = 0.5
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(f"{fresh_prefix}:embed:alive", "0", ex=30)
    # when searching semantically
    with schema_context("acme"):
        started = time.monotonic()
        found = search.search_run(q="roof inspected", kb_ids=[fuse_kb.pk], mode="semantic")
        elapsed = time.monotonic() - started
    # then the answer is by keywords, after about the deadline
    assert found.mode == "keyword"
    assert found.results[0]["external_id"] == "roof"
    assert 0.5 <= elapsed < 1.5
    # and the request expires for a service that wakes up later (it will not encode it)
    queued = client.lrange(f"{fresh_prefix}:embed:requests", 0, -1)
    assert [json.loads(r)["expires"] < time.time() for r in queued] == [True]


def test_without_semantic_search_the_service_idles_until_stopped(tmp_path):
    # given semantic search turned off for the service (as on a machine without the extra)
    log = tmp_path / "embed.log"
    environment = {
        "DJANGO_SETTINGS_MODULE": "weiyu.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "WEIYU_SEMANTIC": "off",
        "PATH": "/usr/bin:/bin",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "embed_server"],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # when it has started, it says so and stays up (honcho stops everything when one exits)
            deadline = time.monotonic() + 60
            while "idling" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.1)
            assert process.poll() is None
            # then SIGTERM stops it promptly
            process.terminate()
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def test_pieces_are_encoded_once_and_kept_in_redis(fresh_prefix):
    # given a service under this test's prefix
    server = embed_server_start(name="embed-pieces")
    try:
        # when the vectors of two texts are asked for together
        texts = ["Which electrical panel should I have?", "A modern consumer unit with RCDs."]
        first = embed_service.vectors(texts=texts)
        # then each is the vector a query of the same text gets
        assert first is not None
        assert len(first) == 2
        alone = embed_service.query_vector(text=texts[0])
        assert sum(a * b for a, b in zip(first[0], alone, strict=True)) > 0.999
    finally:
        server.stop()
    # and with the service gone they are still there, kept in Redis
    assert embed_service.vectors(texts=texts) == first
    # while a text never encoded gets none
    assert embed_service.vectors(texts=[*texts, "Something new"]) is None
