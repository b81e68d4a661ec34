#!/usr/bin/env python
"""Is the robot right when it answers? Precision and recall of its decision on a held-out set.

    .venv/bin/python bench/robot.py [--set heldout|tuning] [--kb all|demo|zaragoza] [--json]
        [--dump] [--warm]

1. Imports the English zaragoza-construction-faq (503 items) and the demo FAQ of kbase/demo.py
   (Chinese + English) into two knowledge bases of the tenant ``bench`` (``$DATABASE_URL``,
   default ``…/weiyu_bench``), with their vectors, and starts ``manage.py embed_server``.
2. Asks every question of the set (default ``bench/data/robot_heldout.jsonl`` and
   ``robot_heldout_zh.jsonl``: paraphrased, situational, keyword, out-of-scope and
   other-language questions, written for this benchmark and never tuned on; ``--set tuning``:
   the 40 queries of ``zaragoza_queries.jsonl`` plus ``robot_tuning.jsonl`` and
   ``robot_tuning_zh.jsonl``, what the thresholds were tuned on) the way the robot does: the search
   of its knowledge base, then a decision, in two search modes — ``keyword`` (no embedding
   service: what ``run.sh`` installed before) and ``hybrid`` (the embedding service answers).
3. Three decisions: **before** (the best hit when ``max(hybrid score, term coverage) ≥ 0.5``,
   the channel default), **words** (:func:`kefu.robot.decision.consider` with Chinese questions
   judged by their words, as before the multilingual model) and **after**
   (:func:`kefu.robot.decision.consider`: answer, "Did you mean" choices, or decline; Chinese
   questions compared by the multilingual model of :mod:`kbase.multilingual` when installed).

Rows are per knowledge base, language of the question (``zh``: Chinese; ``en``: English and
keywords; ``other``: the other-language questions), mode and decision.

Printed per row: ``right`` / ``wrong`` (questions answered outright with a right / a wrong
item; an out-of-scope question answered is wrong), ``declined`` (answerable questions neither
answered nor offered the right item); ``answered`` (questions answered outright);
``precision``: of those, the share answered with the right item (an out-of-scope question
answered is wrong); ``ans-declined``: of the answerable questions, the share the robot did not
answer and did not offer the right item for (declined, or choices without it) — wrong answers
are not in it, they lower the precision; ``ans-choices``: of the answerable questions, the share
answered by "Did you mean" choices that include the right item; ``oos-declined``: of the
out-of-scope and other-language questions, the share not answered outright (choices count as
not answered); ``oos-silent``: … the share declined without even choices.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import time
from collections import defaultdict
from importlib import resources
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (
    ROOT,
    _ensure_database,
    bench_env,
    bench_tenant,
    pct,
)  # bench/ is not a package

DATA = Path(__file__).resolve().parent / "data"
#: the channel default of ``Channel.min_confidence`` (the decision before)
BEFORE_MIN_CONFIDENCE = 0.5
#: milliseconds per question: the search alone (before) and search + re-rank + decision (after)
TIMINGS: dict[tuple[str, str], list[float]] = defaultdict(list)


def load(which: str) -> list[dict]:
    """The question set: dicts ``{"kb", "kind", "q", "ids"}`` (``ids`` empty: not answerable)."""

    def read(name: str) -> list[dict]:
        lines = (DATA / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    if which == "heldout":
        return read("robot_heldout.jsonl") + read("robot_heldout_zh.jsonl")
    tuned = [
        {"kb": "zaragoza", "kind": "paraphrase", "q": q["q"], "ids": [q["id"]]}
        for q in read("zaragoza_queries.jsonl")
    ]
    return tuned + read("robot_tuning.jsonl") + read("robot_tuning_zh.jsonl")


def language(query: dict) -> str:
    """The row a question is counted in: ``zh`` (Chinese characters), ``other`` (the
    other-language questions) or ``en``."""
    if query["kind"] == "other_language":
        return "other"
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in query["q"]) else "en"


def setup(zaragoza: bool = True) -> dict[str, int]:
    """The two knowledge bases (created or refreshed, with vectors; the zaragoza FAQ only when
    ``zaragoza``); their ids by name."""
    from django.core.management import call_command
    from django_tenants.utils import schema_context

    from kbase import demo, indexing, services
    from kbase.models import FaqItem, KnowledgeBase

    bench_tenant()
    path = resources.files("zaragoza_construction_faq") / "data" / "faq-en.json"
    if zaragoza:
        call_command(
            "kbase_import", str(path), "--tenant", "bench", "--kb", "bench-zaragoza", "--create",
            "--no-progress", stdout=StringIO(),
        )  # fmt: skip
    with schema_context("bench"):
        kb, _ = KnowledgeBase.objects.get_or_create(name="bench-demo-faq")
        KnowledgeBase.objects.filter(name__in=["bench-zaragoza", kb.name]).update(is_public=True)
        for external_id, category, question, answer in demo.FAQ:
            services.faq_upsert(
                kb=kb, question=question, answer=answer, category=category,
                external_id=external_id,
            )  # fmt: skip
        missing = list(
            FaqItem.objects.filter(kb=kb, embedding__isnull=True).values_list("pk", flat=True)
        )
        indexing.embed("faq", missing)
        ids = {"demo": kb.pk}
        if zaragoza:
            ids["zaragoza"] = KnowledgeBase.objects.get(name="bench-zaragoza").pk
        return ids


def before(question: str, hits: list[dict], semantic: bool) -> tuple[str, list[dict]]:
    """The robot's decision before this benchmark (kefu/robot/answers.py at ``361fe0f``)."""
    from kefu.robot.decision import coverage

    if not hits:
        return "decline", []
    best = hits[0]
    sure = max(coverage(question, best), best["score"] if semantic else 0.0)
    if round(min(1.0, sure), 4) >= BEFORE_MIN_CONFIDENCE:
        return "answer", [best]
    return "decline", []


def evaluate(queries: list[dict], kb_ids: dict[str, int], mode: str, dump: bool) -> dict:
    """Counts per (kb, decision): see the module docstring."""
    from django_tenants.utils import schema_context

    from kbase.search import search_run
    from kefu.robot.decision import TOP_HITS, consider, coverage

    counts: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with schema_context("bench"):
        for query in queries:
            kb = [kb_ids[query["kb"]]]
            started = time.perf_counter()
            plain = search_run(q=query["q"], kb_ids=kb, public_only=True, limit=TOP_HITS, mode=mode)
            middle = time.perf_counter()
            found, decided = consider(
                query["q"], kb_ids=kb, min_confidence=BEFORE_MIN_CONFIDENCE, mode=mode
            )
            done = time.perf_counter()
            _words_found, by_words = consider(
                query["q"], kb_ids=kb, min_confidence=BEFORE_MIN_CONFIDENCE, mode=mode,
                meaning=False,
            )  # fmt: skip
            assert plain.mode == found.mode == mode, "the embedding service did not answer"
            lang = language(query)
            TIMINGS[(mode, lang, "before")].append((middle - started) * 1000)
            TIMINGS[(mode, lang, "after")].append((done - middle) * 1000)
            outcomes = {
                "before": before(query["q"], plain.results, mode != "keyword"),
                "words": (by_words.action, by_words.hits),
                "after": (decided.action, decided.hits),
            }
            for name, (action, hits) in outcomes.items():
                c = counts[(query["kb"], lang, name)]
                ids = [h["external_id"] for h in hits]
                right = bool(set(ids) & set(query["ids"]))
                answerable = bool(query["ids"])
                c["answerable" if answerable else "oos"] += 1
                c[f"{action}_{'right' if right else 'wrong'}"] += 1
                if answerable:
                    c[f"ans_{action}_{'right' if right else 'wrong'}"] += 1
                else:
                    c[f"oos_{action}"] += 1
            if dump:
                print(
                    json.dumps(
                        {
                            "mode": mode,
                            "kb": query["kb"],
                            "kind": query["kind"],
                            "q": query["q"],
                            "ids": query["ids"],
                            "action": decided.action,
                            "language": decided.language,
                            "top": [
                                [h["external_id"], h.get("similarity"), h["score"],
                                 round(coverage(query["q"], h), 3), h.get("meaning")]
                                for h in found.results
                            ],
                        },
                        ensure_ascii=False,
                    )
                )  # fmt: skip
    return counts


def summary(c: dict[str, int]) -> dict[str, float | int]:
    """Rates of one row of :func:`evaluate` (the module docstring says what they mean)."""
    answered = c["answer_right"] + c["answer_wrong"]
    answerable, oos = c["answerable"], c["oos"]
    return {
        "right": c["answer_right"],
        "wrong": c["answer_wrong"],
        "declined": c["ans_decline_right"] + c["ans_decline_wrong"] + c["ans_suggest_wrong"],
        "answered": answered,
        "precision": c["answer_right"] / answered if answered else 1.0,
        "ans_declined": (c["ans_decline_right"] + c["ans_decline_wrong"] + c["ans_suggest_wrong"])
        / answerable
        if answerable
        else 0.0,
        "ans_choices": c["ans_suggest_right"] / answerable if answerable else 0.0,
        "oos_declined": (oos - c["oos_answer"]) / oos if oos else 1.0,
        "oos_silent": c["oos_decline"] / oos if oos else 1.0,
        "answerable": answerable,
        "oos": oos,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=["heldout", "tuning"], default="heldout")
    p.add_argument("--json", action="store_true")
    p.add_argument("--dump", action="store_true", help="print each question's outcome")
    p.add_argument(
        "--warm", action="store_true", help="time a second pass (the pieces' vectors kept)"
    )
    p.add_argument(
        "--kb", choices=["all", "demo", "zaragoza"], default="all",
        help="only the questions of one knowledge base",
    )  # fmt: skip
    args = p.parse_args()
    env = bench_env()
    # quality, not latency: a busy machine must not turn a question into a keyword search
    env.setdefault("WEIYU_EMBED_TIMEOUT_S", "10")
    os.environ.update(env)
    _ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_schemas", interactive=False, verbosity=0)
    from embed_rtt import start_embed_server, wait_for_embed_server

    (ROOT / ".data").mkdir(exist_ok=True)
    server = start_embed_server(env, ROOT / ".data" / "bench-embed.log")
    atexit.register(server.terminate)
    wait_for_embed_server(server)
    kb_ids = setup(zaragoza=args.kb != "demo")
    queries = [q for q in load(args.set) if args.kb in ("all", q["kb"])]
    if args.warm:
        # every question once, untimed: the pieces' vectors are then kept (Redis, this process)
        for mode in ("keyword", "hybrid"):
            evaluate(queries, kb_ids, mode, dump=False)
        TIMINGS.clear()
    results = {}
    for mode in ("keyword", "hybrid"):
        counted = evaluate(queries, kb_ids, mode, args.dump)
        for (kb, lang, name), counts in sorted(counted.items(), key=lambda kv: kv[0][:2]):
            results[f"{kb}/{lang}/{mode}/{name}"] = summary(counts)
    # the run's pieces' vectors (under its own key prefix) are not left in Redis
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    for kind in ("text", "e5"):
        for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:embed:{kind}:*", count=1000):
            client.delete(key)
    print(f"\nThe robot's decision on {args.set} ({len(queries)} questions)")
    print(
        f"{'kb/language/mode/decision':32} {'ans':>4} {'oos':>4} {'right':>5} {'wrong':>5} "
        f"{'declined':>8} {'answered':>8} {'precision':>9} {'ans-declined':>12} "
        f"{'ans-choices':>11} {'oos-declined':>12} {'oos-silent':>10}"
    )
    for key, r in results.items():
        print(
            f"{key:32} {r['answerable']:>4} {r['oos']:>4} {r['right']:>5} {r['wrong']:>5} "
            f"{r['declined']:>8} {r['answered']:>8} {r['precision']:>9.0%} "
            f"{r['ans_declined']:>12.0%} {r['ans_choices']:>11.0%} {r['oos_declined']:>12.0%} "
            f"{r['oos_silent']:>10.0%}"
        )
    print(
        "\nms per question, p50 / p95 (before: the search; after: search, re-rank, decision; "
        + (
            "the pieces' vectors kept from a first pass)"
            if args.warm
            else "pieces encoded on first use)"
        )
    )
    for (mode, lang, name), values in sorted(TIMINGS.items()):
        print(f"{mode:8} {lang:5} {name:7} {pct(values, 50):7.1f} {pct(values, 95):7.1f}")
    rss = next(
        (
            int(line.split()[1]) // 1024
            for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        ),
        None,
    )
    print(f"\nembedding service (manage.py embed_server): {rss} MB resident after the run")
    if args.json:
        print(json.dumps({"results": results, "embed_rss_mb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
