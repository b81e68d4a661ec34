#!/usr/bin/env python
"""CPU per Redis call on the event loop: redis-py's asyncio client against weiyu.redislink.

    .venv/bin/python bench/redis_calls.py [--calls 5000] [--rounds 3] [--concurrency 50] [--json]

On ``$REDIS_URL`` (default as bench/chat_load.py), this process's CPU time (``time.process_time``)
per call, for the two calls a busy web process makes most often outside the database:

- ``ratelimit``: the rate-limit check a visitor's socket makes for every frame
  (:func:`weiyu.ratelimit.acheck`, one script call), through redis-py (the baseline, what it
  used before) and through its :class:`~weiyu.redislink.RedisLink`;
- ``zpopmin``: the channel layer's pump pop on an empty queue, through redis-py's client and a
  link (what ``BatchingRedisChannelLayer._pump`` now uses).

``--concurrency`` calls are in flight at once (sockets of one process); the two clients
alternate, ``--rounds`` times each, so a loaded machine slows them alike. Printed: µs of CPU per
call for each (median of the rounds) and the link's ratio to redis-py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import ROOT, bench_env  # bench/ is not a package

sys.path.insert(0, str(ROOT))


async def _run(calls: int, concurrency: int, call) -> float:
    """µs of this process's CPU per call of ``call()``, ``concurrency`` at a time."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, 8))))  # warm up
    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return 1e6 * (time.process_time() - start) / (per_worker * concurrency)


async def main(args: argparse.Namespace) -> dict:
    import redis.asyncio
    from django.conf import settings

    from weiyu import ratelimit
    from weiyu.redislink import link_for_host

    limits = [
        ratelimit.Limit(
            name="bench", key="redis_calls", limit=10**9, window_s=60, message=lambda: "no"
        )
    ]
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=15)
    link = link_for_host({"address": settings.REDIS_URL, "socket_timeout": 15})

    async def check_redis_py() -> None:
        ratelimit._async_links[loop] = None
        await ratelimit.acheck(limits)

    loop = asyncio.get_running_loop()
    check_link_of_loop = ratelimit._async_link()

    async def check_link() -> None:
        ratelimit._async_links[loop] = check_link_of_loop
        await ratelimit.acheck(limits)

    key = f"bench:redis_calls:{os.getpid()}"
    shapes = {
        "ratelimit": (check_redis_py, check_link),
        "zpopmin": (lambda: client.zpopmin(key, 200), lambda: link.call("ZPOPMIN", key, 200)),
    }
    results: dict = {}
    for name, (baseline, ours) in shapes.items():
        base_us, link_us = [], []
        for _ in range(args.rounds):
            base_us.append(await _run(args.calls, args.concurrency, baseline))
            link_us.append(await _run(args.calls, args.concurrency, ours))
        results[name] = {
            "redis_py_us": round(statistics.median(base_us), 1),
            "link_us": round(statistics.median(link_us), 1),
            "ratio": round(statistics.median(link_us) / statistics.median(base_us), 2),
            "rounds_redis_py_us": [round(v, 1) for v in base_us],
            "rounds_link_us": [round(v, 1) for v in link_us],
        }
    await client.delete("bench:redis_calls")
    await client.aclose()
    link.close()
    check_link_of_loop.close()
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--json", action="store_true")
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    env = bench_env()
    env["WEIYU_RATE_LIMITS"] = "1"  # the check is what is measured
    os.environ.update(env)
    import django

    django.setup()
    results = asyncio.run(main(args))
    print(f"µs of CPU per call, {args.calls} calls, {args.concurrency} in flight, median of rounds")
    print(f"{'':12}{'redis-py':>10}{'link':>10}{'link / redis-py':>18}")
    for name, r in results.items():
        print(f"{name:12}{r['redis_py_us']:>10}{r['link_us']:>10}{r['ratio']:>18}")
    if args.json:
        print(json.dumps(results))
