#!/usr/bin/env python
"""Query-vector round trip: where a web process gets the vector of a search query.

    .venv/bin/python bench/embed_rtt.py [--runs 300] [--json]

Needs requirements-semantic.txt. Starts, on ``$REDIS_URL`` (default as bench/chat_load.py):

- ``service``: ``manage.py embed_server`` (kbase.embed_service: a Redis request list and a reply
  key, what the product uses), asked through :func:`kbase.embed_service.query_vector`;
- ``celery``: a Celery worker (``--pool solo``, one process) on the ``embed`` queue with a Redis
  result backend (bench/embed_celery.py), asked with ``encode_task.delay(q).get()``;

and compares them with ``in-process`` encoding (:func:`kbase.embeddings.encode` in this process,
what web processes did before). The three are measured interleaved, one query each in turn, so
a shared, loaded machine slows them alike; p50/p95 in milliseconds, and each one's p50 over
in-process. Queries: the paraphrases of bench/data/zaragoza_queries.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import ROOT, bench_env, pct  # bench/ is not a package

QUERIES = Path(__file__).resolve().parent / "data" / "zaragoza_queries.jsonl"


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {timeout:.0f} s")
        time.sleep(0.2)


def start_embed_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``manage.py embed_server`` with ``env`` (not yet ready: :func:`wait_for_embed_server`)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "embed_server"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for_embed_server(server: subprocess.Popen[bytes]) -> None:
    """Wait until ``server`` has loaded the model and announced itself (Django set up)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    alive = f"{settings.REDIS_KEY_PREFIX}:embed:alive"
    wait_for(lambda: client.get(alive) == str(server.pid).encode(), "embed_server")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=300, help="queries per way (default 300)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = p.parse_args()
    env = bench_env()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from kbase import embed_service, embeddings

    if not embeddings.available():
        print("requirements-semantic.txt is not installed: nothing to measure")
        return 1
    queries = [json.loads(line)["q"] for line in QUERIES.read_text().splitlines() if line.strip()]
    logs = ROOT / ".data"
    logs.mkdir(exist_ok=True)
    procs = []
    try:
        server = start_embed_server(env, logs / "bench-embed.log")
        procs.append(server)
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "embed_celery", "worker", "-Q", "embed",
                "--pool", "solo", "-n", f"embedbench-{os.getpid()}@bench", "-l", "warning",
                "--without-gossip", "--without-mingle",
            ],
            cwd=Path(__file__).resolve().parent, env=env,
            stdout=(logs / "bench-embed-celery.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(worker)
        wait_for_embed_server(server)
        from embed_celery import encode_task

        encode_task.delay("warm-up").get(timeout=300)  # the worker loads its model
        embeddings.encode(["warm-up"])

        ways = {
            "in-process": lambda q: embeddings.encode([q])[0],
            "service": lambda q: embed_service.query_vector(text=q),
            "celery": lambda q: encode_task.delay(q).get(timeout=10),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        misses = dict.fromkeys(ways, 0)
        for i in range(args.runs):
            q = f"{queries[i % len(queries)]} {i}"  # never the same text twice
            for name, way in ways.items():
                started = time.perf_counter()
                vector = way(q)
                times[name].append((time.perf_counter() - started) * 1000)
                misses[name] += vector is None
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    base = pct(times["in-process"], 50) or 1.0
    figures = {
        name: {
            "p50_ms": round(pct(values, 50), 2),
            "p95_ms": round(pct(values, 95), 2),
            "p99_ms": round(pct(values, 99), 2),
            "p50_over_in_process": round(pct(values, 50) / base, 2),
            "misses": misses[name],
        }
        for name, values in times.items()
    }
    load = os.getloadavg()
    print(f"\nQuery vector, {args.runs} queries per way, interleaved (load average {load[0]:.1f})")
    print(f"{'way':12} {'p50':>9} {'p95':>9} {'p99':>9} {'p50/in-process':>15} {'misses':>7}")
    for name, f in figures.items():
        print(
            f"{name:12} {f['p50_ms']:>7.1f}ms {f['p95_ms']:>7.1f}ms {f['p99_ms']:>7.1f}ms "
            f"{f['p50_over_in_process']:>15.2f} {f['misses']:>7}"
        )
    if args.json:
        print(json.dumps({"runs": args.runs, "load": load[0], "ways": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
