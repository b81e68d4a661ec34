#!/usr/bin/env python
"""Knowledge-base search benchmark: quality on the zaragoza FAQ and latency at 500 and 100,000
items.

    .venv/bin/python bench/kb_search.py [--large 100000] [--runs 200] [--json]

1. Imports the English zaragoza-construction-faq (503 Q&As) into the knowledge base
   ``bench-zaragoza`` of the tenant ``bench`` (``$DATABASE_URL``, default ``…/weiyu_bench``).
2. **Quality**: every query of ``bench/data/zaragoza_queries.jsonl`` (paraphrases written for
   this benchmark, not the stored questions) is searched; hit@1 / hit@5 = share of queries whose
   expected item is first / among the first five, for the ``keyword``, ``semantic`` and
   ``hybrid`` modes of kbase.search (the last two when requirements-semantic.txt is installed).
3. **Latency** of one search, p50/p99 over ``--runs`` queries, at 503 items and after adding
   ``--large`` synthetic items (variations of the real answers) to another knowledge base of the
   same tenant, searched together (their vectors: the source item's, slightly perturbed), in each
   mode. Baseline in the same run: the naive ``ILIKE '%word%'`` scan over the same rows.

The semantic modes get their query vectors from the embedding service, as web processes do: the
benchmark starts ``manage.py embed_server`` for the run and fails if a search fell back to
keywords. bench/embed_rtt.py measures that round trip alone.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (  # bench/ is not a package
    ROOT,
    _ensure_database,
    bench_env,
    bench_tenant,
    pct,
)

QUERIES = Path(__file__).resolve().parent / "data" / "zaragoza_queries.jsonl"


def setup(large: int) -> tuple[int, int]:
    """Create/refresh the two knowledge bases; return their ids."""
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import schema_context

    from kbase.models import FaqItem, KnowledgeBase

    bench_tenant()
    path = resources.files("zaragoza_construction_faq") / "data" / "faq-en.json"
    call_command(
        "kbase_import", str(path), "--tenant", "bench", "--kb", "bench-zaragoza", "--create",
        "--no-progress", stdout=open(os.devnull, "w"),  # noqa: SIM115
    )  # fmt: skip
    with schema_context("bench"):
        real = KnowledgeBase.objects.get(name="bench-zaragoza")
        synthetic, _ = KnowledgeBase.objects.get_or_create(name="bench-synthetic")
        have = FaqItem.objects.filter(kb=synthetic).count()
        if have != large:
            FaqItem.objects.filter(kb=synthetic).delete()
            answers = list(FaqItem.objects.filter(kb=real).values_list("question", "answer"))
            rng = random.Random(11)
            batch = []
            for n in range(large):
                q, a = answers[n % len(answers)]
                words = a.split()
                rng.shuffle(words)
                batch.append(
                    FaqItem(kb=synthetic, question=f"{q} (variant {n})", answer=" ".join(words))
                )
                if len(batch) == 5000:
                    FaqItem.objects.bulk_create(batch)
                    batch = []
            FaqItem.objects.bulk_create(batch)
            with connection.cursor() as cursor:  # English only: the simple parser = our tokens
                cursor.execute(
                    "UPDATE kbase_faqitem SET search_vector = "
                    "setweight(to_tsvector('simple', question), 'A') || "
                    "setweight(to_tsvector('simple', answer), 'B') WHERE kb_id = %s",
                    [synthetic.pk],
                )
                cursor.execute("ANALYZE kbase_faqitem")
        return real.pk, synthetic.pk


def synthetic_vectors(real_id: int, synthetic_id: int) -> None:
    """Give the synthetic items vectors: their source item's, slightly perturbed (embedding 100k
    texts would take the model minutes and measure the model, not the search)."""
    import numpy as np
    from django_tenants.utils import schema_context

    from kbase.models import FaqItem

    with schema_context("bench"):
        if not FaqItem.objects.filter(kb_id=synthetic_id, embedding__isnull=True).exists():
            return
        source = dict(FaqItem.objects.filter(kb_id=real_id).values_list("question", "embedding"))
        rng = np.random.default_rng(5)
        batch = []
        for item in (
            FaqItem.objects.filter(kb_id=synthetic_id).only("pk", "question").iterator(2000)
        ):
            base = np.asarray(source[item.question.rsplit(" (variant", 1)[0]], dtype=np.float32)
            v = base + rng.normal(0, 0.02, base.shape).astype(np.float32)
            item.embedding = [round(float(x), 6) for x in v / np.linalg.norm(v)]
            batch.append(item)
            if len(batch) == 2000:
                FaqItem.objects.bulk_update(batch, ["embedding"])
                batch = []
        FaqItem.objects.bulk_update(batch, ["embedding"])


def quality(real_id: int, mode: str) -> dict[str, float]:
    from django.db.models import Q
    from django_tenants.utils import schema_context

    from kbase import search
    from kbase.models import FaqItem

    queries = [
        json.loads(line) for line in QUERIES.read_text(encoding="utf-8").splitlines() if line
    ]
    hit1 = hit5 = 0
    with schema_context("bench"):
        assert FaqItem.objects.filter(
            Q(kb_id=real_id), Q(external_id__in=[q["id"] for q in queries])
        ).count() == len(queries)
        for query in queries:
            found = search.search_run(q=query["q"], kb_ids=[real_id], limit=5, mode=mode)
            assert found.mode == mode, "the embedding service did not answer"
            ids = [r["external_id"] for r in found.results]
            hit1 += bool(ids[:1] == [query["id"]])
            hit5 += query["id"] in ids
    n = len(queries)
    return {"queries": n, "hit@1": hit1 / n, "hit@5": hit5 / n}


def latency(kb_ids: list[int], runs: int, mode: str = "keyword") -> dict[str, float | None]:
    from django.db import connection
    from django_tenants.utils import schema_context

    from kbase import search

    queries = [
        json.loads(line)["q"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line
    ]
    fts, naive = [], []
    with schema_context("bench"):
        for i in range(runs):
            q = queries[i % len(queries)]
            t = time.perf_counter()
            found = search.search_run(q=q, kb_ids=kb_ids, limit=10, mode=mode)
            assert found.mode == mode, "the embedding service did not answer"
            fts.append((time.perf_counter() - t) * 1000)
            word = max(q.split(), key=len)
            t = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM kbase_faqitem WHERE kb_id = ANY(%s) AND "
                    "(question ILIKE %s OR answer ILIKE %s) LIMIT 10",
                    [kb_ids, f"%{word}%", f"%{word}%"],
                )
                cursor.fetchall()
            naive.append((time.perf_counter() - t) * 1000)
    return {
        "p50_ms": pct(fts, 50), "p99_ms": pct(fts, 99),
        "naive_p50_ms": pct(naive, 50), "naive_p99_ms": pct(naive, 99),
        "mean_ms": statistics.fmean(fts),
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large", type=int, default=100_000, help="synthetic items for the big run")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env = bench_env()
    os.environ.update(env)
    _ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_schemas", interactive=False, verbosity=0)
    from kbase import embeddings

    real_id, synthetic_id = setup(args.large)
    modes = ["keyword", "semantic", "hybrid"] if embeddings.available() else ["keyword"]
    if len(modes) > 1:
        from embed_rtt import start_embed_server, wait_for_embed_server

        server = start_embed_server(env, ROOT / ".data" / "bench-embed.log")
        atexit.register(server.terminate)
        wait_for_embed_server(server)
        synthetic_vectors(real_id, synthetic_id)
    scores = {mode: quality(real_id, mode) for mode in modes}
    timings = {
        mode: (
            latency([real_id], args.runs, mode),
            latency([real_id, synthetic_id], args.runs, mode),
        )
        for mode in modes
    }
    print("\nKnowledge-base search on the zaragoza FAQ (English, 503 items)")
    print(f"{'mode':12} {'hit@1':>7} {'hit@5':>7}   ({scores['keyword']['queries']} paraphrases)")
    for mode in ("keyword", "semantic", "hybrid"):
        if mode in scores:
            print(f"{mode:12} {scores[mode]['hit@1']:>7.2f} {scores[mode]['hit@5']:>7.2f}")
        else:
            print(f"{mode:12} {'—':>7} {'—':>7}   (requirements-semantic.txt not installed)")
    head = f"{'mode':9} {'items':>8} {'p50':>9} {'p99':>8} {'ILIKE p50':>10} {'p99':>8}"
    print("\n" + head)
    for mode, (small, big) in timings.items():
        for n, r in ((503, small), (503 + args.large, big)):
            print(
                f"{mode:9} {n:>8} {r['p50_ms']:>7.1f}ms {r['p99_ms']:>6.1f}ms "
                f"{r['naive_p50_ms']:>8.1f}ms {r['naive_p99_ms']:>6.1f}ms"
            )
    if args.json:
        print(json.dumps({"quality": scores, "latency": timings, "large": args.large}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
