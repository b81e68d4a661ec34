#!/usr/bin/env python
"""Routing benchmark: many visitors arriving at once, assigned to 100 agents.

    .venv/bin/python bench/routing.py [--agents 100] [--visitors 10000] [--threads 8]
                                      [--strategy least_busy] [--json]

What it does (docs/benchmarks.md, "Routing"):

1. In the tenant ``bench`` of ``$DATABASE_URL`` (default ``…/weiyu_bench``), a fresh workgroup
   with ``--agents`` online agents whose caps add up to the visitors (so every visitor can be
   served), using ``--strategy``; ``--visitors`` visitors of its channel.
2. **Open loop**: for each of ``--rates`` (visitors/s), an equal share of the visitors arrive at
   that steady rate, served by ``--threads`` threads (each its own database connection, like
   daphne's worker threads) that send each visitor's *first* message through
   ``kefu.services.messages.visitor_message_send`` — the real path: session and conversation created,
   message stored, an agent claimed (directly, or by the queue's dispatch under the workgroup's
   row lock), the agent joined, system line posted, ``conversation.assigned`` published to
   Redis. Each call is made as the widget's socket makes it (``weiyu.asgi_tenancy``): its events
   are collected (``weiyu.realtime.deferred``) and sent in order once it returns, here through
   the process's publisher loop. **Assignment latency** = from the arrival instant to those
   events having been sent (the visitor is assigned and told), waiting for a free thread
   included. Prints p50/p99 per rate and the highest rate whose p99 is under
   100 ms.
3. **Closed loop**: the last share arrives all at once (``--threads`` in flight): the most the
   router assigns per second. **Baseline** in the same run: the same threads send a *second*
   message of each of those visitors to their now open conversation (no routing).
4. Checks: every session open, no agent over their cap, loads match the sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (  # bench/ is no package
    ROOT,
    _ensure_database,
    agent_present,
    bench_env,
    bench_tenant,
)
from chat_load import pct as _pct


def pct(values: list[float], q: float) -> float | None:
    value = _pct(values, q)
    return None if value is None else round(value, 1)


def provision(agents: int, visitors: int, strategy: str) -> dict:
    from django_tenants.utils import schema_context

    from kefu.models import AgentState, Channel, Workgroup
    from kefu.services import agents as kefu_agents
    from kefu.services import visitors as kefu_visitors
    from org.models import User

    tenant = bench_tenant()
    stamp = int(time.time())
    with schema_context(tenant.schema_name):
        workgroup = Workgroup.objects.create(name=f"routing-{stamp}", strategy=strategy)
        channel = Channel.objects.create(name=f"routing-{stamp}", workgroup=workgroup)
        cap = -(-visitors // agents)
        staff = []
        for n in range(agents):
            user = User.objects.create_user(
                username=f"rt{stamp}_{n}", password=None, role="agent", display_name=f"Agent {n}"
            )
            AgentState.objects.create(user=user, max_concurrent=cap)
            staff.append(user)
        workgroup.agents.add(*staff)
        for user in staff:
            agent_present(user)
            kefu_agents.agent_status_set(user=user, status=AgentState.Status.ONLINE)
        people = [
            kefu_visitors.visitor_start(channel=channel, language="en")[0] for _ in range(visitors)
        ]
    return {"schema": tenant.schema_name, "workgroup": workgroup, "visitors": people, "cap": cap}


def send_as_socket(**kwargs):
    """``visitor_message_send(**kwargs)`` as the widget's socket calls it: the events it
    publishes are collected and sent together, in order, once it returns (also when it raised:
    parts may have committed)."""
    import asyncio

    from kefu.services import messages
    from weiyu import realtime

    batch: realtime.Batch = []
    try:
        with realtime.deferred(batch):
            return messages.visitor_message_send(**kwargs)
    finally:
        if batch:
            asyncio.run_coroutine_threadsafe(
                realtime.send_batch(batch), realtime._publisher_loop()
            ).result()


def run(schema: str, visitors: list, threads: int, *, second: bool) -> tuple[list[float], float]:
    """Send one message per visitor from ``threads`` threads; (latencies ms, wall seconds)."""
    from django.db import connection
    from django_tenants.utils import schema_context

    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [visitors[n::threads] for n in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(chunk: list) -> None:
        mine = []
        try:
            with schema_context(schema):
                barrier.wait()
                for visitor in chunk:
                    t = time.perf_counter()
                    send_as_socket(
                        visitor=visitor,
                        conversation_id=visitor.bench_cid if second else None,
                        content="again" if second else "hello, anyone there?",
                        client_msg_id=f"rt{'b' if second else 'a'}{visitor.pk}",
                    )
                    mine.append((time.perf_counter() - t) * 1000)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return latencies, wall


def run_at_rate(
    schema: str, visitors: list, rate: float, threads: int
) -> tuple[list[float], float]:
    """Open loop: visitor ``i`` arrives at ``start + i / rate`` whatever happened before; a pool
    of ``threads`` serves arrivals in order. Latency (ms) runs from the arrival instant to the
    return of the routed send — time spent waiting for a free thread included, as a visitor
    would wait for a busy server. Returns (latencies, wall seconds)."""
    from django.db import connection
    from django_tenants.utils import schema_context

    latencies: list[float] = []
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter() + 0.2
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with schema_context(schema):
                while True:
                    with lock:
                        i = next_index[0]
                        next_index[0] += 1
                    if i >= len(visitors):
                        return
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    visitor = visitors[i]
                    send_as_socket(
                        visitor=visitor,
                        conversation_id=None,
                        content="hello, anyone there?",
                        client_msg_id=f"rta{visitor.pk}",
                    )
                    elapsed = (time.perf_counter() - due) * 1000
                    with lock:
                        latencies.append(elapsed)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return latencies, time.perf_counter() - start


def check(schema: str, workgroup, visitors: list, cap: int) -> dict:
    from django.db.models import Count
    from django_tenants.utils import schema_context

    from kefu.models import AgentState, Session

    with schema_context(schema):
        sessions = Session.objects.filter(workgroup=workgroup)
        by_status = dict(sessions.values_list("status").annotate(n=Count("pk")))
        per_agent = dict(
            sessions.filter(status="open").values_list("agent_id").annotate(n=Count("pk"))
        )
        states = dict(
            AgentState.objects.filter(user_id__in=list(per_agent)).values_list(
                "user_id", "open_count"
            )
        )
        for visitor in visitors:
            visitor.bench_cid = sessions.get(visitor=visitor).conversation_id
    return {
        "sessions": by_status,
        "max_load": max(per_agent.values(), default=0),
        "cap": cap,
        "loads_consistent": all(states.get(a) == n for a, n in per_agent.items()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--visitors", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument(
        "--strategy", default="least_busy", choices=["round_robin", "least_busy", "skill", "sticky"]
    )
    p.add_argument(
        "--rates",
        default="5,10,15,20",
        help="open-loop arrival rates (visitors/s), comma-separated",
    )
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
    t = time.perf_counter()
    setup = provision(args.agents, args.visitors, args.strategy)
    setup_s = time.perf_counter() - t
    rates = [float(r) for r in args.rates.split(",")]
    per_step = len(setup["visitors"]) // (len(rates) + 1)
    steps = []
    offset = 0
    for rate in rates:
        chunk = setup["visitors"][offset : offset + per_step]
        offset += per_step
        lat, wall = run_at_rate(setup["schema"], chunk, rate, args.threads)
        steps.append({
            "rate": rate, "visitors": len(chunk), "per_s": round(len(lat) / wall, 1),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": round(max(lat), 1),
        })  # fmt: skip
    rest = setup["visitors"][offset:]
    routed, routed_wall = run(setup["schema"], rest, args.threads, second=False)
    checks = check(setup["schema"], setup["workgroup"], setup["visitors"], setup["cap"])
    plain, plain_wall = run(setup["schema"], rest, args.threads, second=True)
    good = [s["rate"] for s in steps if s["p99_ms"] is not None and s["p99_ms"] < 100]
    result = {
        "agents": args.agents,
        "visitors": args.visitors,
        "threads": args.threads,
        "strategy": args.strategy,
        "setup_s": round(setup_s, 1),
        "open_loop": steps,
        "max_rate_p99_under_100ms": max(good) if good else None,
        "routing": {
            "visitors": len(routed),
            "per_s": round(len(routed) / routed_wall, 1),
            "p50_ms": pct(routed, 50),
            "p99_ms": pct(routed, 99),
            "max_ms": round(max(routed), 1),
        },
        "baseline_second_message": {
            "per_s": round(len(plain) / plain_wall, 1),
            "p50_ms": pct(plain, 50),
            "p99_ms": pct(plain, 99),
        },
        "checks": checks,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r, b = result["routing"], result["baseline_second_message"]
        print(
            f"\nRouting {args.visitors} visitors to {args.agents} agents ({args.strategy}, "
            f"{args.threads} threads, caps {setup['cap']})"
        )
        print(f"{'open loop, arrivals/s':24}{'served/s':>10}{'p50':>10}{'p99':>10}{'max':>10}")
        for st in steps:
            print(
                f"{st['rate']:<24}{st['per_s']:>10}{st['p50_ms']:>8}ms{st['p99_ms']:>8}ms"
                f"{st['max_ms']:>8}ms"
            )
        print(f"highest arrival rate with p99 < 100 ms: {result['max_rate_p99_under_100ms']}/s")
        print(f"\nclosed loop ({r['visitors']} visitors, {args.threads} at once)")
        print(f"{'':28}{'per s':>9}{'p50':>10}{'p99':>10}")
        print(f"{'first message (routed)':28}{r['per_s']:>9}{r['p50_ms']:>8}ms{r['p99_ms']:>8}ms")
        print(
            f"{'second message (baseline)':28}{b['per_s']:>9}{b['p50_ms']:>8}ms{b['p99_ms']:>8}ms"
        )
        print(
            f"throughput ratio routed/baseline: {r['per_s'] / b['per_s']:.2f}   "
            f"sessions {checks['sessions']}   max load {checks['max_load']} / cap {checks['cap']}"
            f"   loads consistent: {checks['loads_consistent']}"
        )
    ok = checks["sessions"] == {"open": args.visitors} and checks["max_load"] <= checks["cap"]
    return 0 if ok and checks["loads_consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
