#!/usr/bin/env python
"""SLA scanner benchmark: many open tickets across many tenants, a real Celery beat and worker.

    .venv/bin/python bench/sla_scan.py [--tenants 100] [--tickets 1000] [--window 60]

What it does (docs/benchmarks.md, "SLA scanner"):

1. Provisions, in ``$DATABASE_URL`` (default ``…/weiyu_bench``) and through the project's own
   services, ``--tenants`` tenants ``slabench_NNN`` (created once, reused), each with an agent, a
   workgroup and an SLA policy; then replaces their tickets with ``--tickets`` open tickets each.
   ``--due`` of them in all (spread over the tenants) have a first-response clock that falls due
   at a random instant in the ``--window`` seconds starting ``--lead`` seconds after provisioning
   ends (warning ``--lead``/2 s before); the others are due in 30 days. So the scanner watches
   every open ticket while a steady stream of breaches happens.
2. **Idle pass** (in this process, before anything is due): one :func:`tickets.services.sla.sla_scan`
   per tenant, timed, next to the **baseline**: the bare visit of each tenant schema (switch the
   search path, ``SELECT 1``). The ratio is what the scanner's own queries cost.
3. **Live run**: starts ``celery beat`` (``SLA_SCAN_INTERVAL_S`` = ``--interval``, default 10 s)
   and ``celery worker`` (``--concurrency``, default 2) on the same database and ``$REDIS_URL``,
   waits until every clock due in the window has its breach notification (or ``--timeout``), and
   reads from the database, for each, the **breach detection latency** = ``breach_notified_at -
   due_at``.
   Prints p50/p99/max, the number of clocks never notified, and duplicated notifications (must be
   0: exactly once).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (  # bench/ is not a package: found through sys.path
    PYTHON,
    ROOT,
    _ensure_database,
    bench_env,
    pct,
)

PREFIX = "slabench_"


def _django(env: dict[str, str]) -> None:
    os.environ.update(env)
    _ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def provision(args: argparse.Namespace) -> list[str]:
    """Create the tenants once; give each ``args.tickets`` fresh open tickets. Returns schemas."""
    import datetime as dt

    from django.core.management import call_command
    from django.db import connection
    from django.db.models import F
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from kefu.models import Workgroup
    from org.models import User
    from tenants.models import Tenant
    from tenants.services import public_tenant_ensure, tenant_create
    from tickets.models import Notification, SlaClock, SlaPolicy, Ticket, TicketCounter

    if not args.skip_migrate:
        call_command("migrate_schemas", "--shared", interactive=False, verbosity=0)
    connection.set_schema_to_public()
    public_tenant_ensure(domains=["localhost", "127.0.0.1"])
    have = set(
        Tenant.objects.filter(schema_name__startswith=PREFIX).values_list("schema_name", flat=True)
    )
    schemas = [f"{PREFIX}{i:03d}" for i in range(args.tenants)]
    started = time.monotonic()
    for schema in schemas:
        if schema not in have:
            tenant_create(
                name=schema,
                schema_name=schema,
                domain=f"{schema.replace('_', '-')}.localhost",
                admin_username="bench_admin",
                admin_password=os.urandom(12).hex(),
            )
    created = time.monotonic() - started
    rng = random.Random(args.seed)
    base = timezone.now()  # due times are shifted to start after provisioning, below
    warn_gap = dt.timedelta(seconds=args.lead / 2)
    for schema in schemas:
        with schema_context(schema):
            agent, _ = User.objects.get_or_create(
                username="bench_agent", defaults={"role": "agent", "display_name": "Agent"}
            )
            workgroup, _ = Workgroup.objects.get_or_create(name="bench", defaults={"lead": agent})
            policy, _ = SlaPolicy.objects.get_or_create(name="bench")
            policy.workgroups.add(workgroup)
            Notification.objects.all().delete()
            SlaClock.objects.all().delete()
            Ticket.objects.all().delete()
            TicketCounter.objects.update_or_create(pk=1, defaults={"last": args.tickets})
            tickets = Ticket.objects.bulk_create(
                (
                    Ticket(
                        number=n,
                        subject=f"bench {n}",
                        source=Ticket.Source.API,
                        assignee=agent,
                        workgroup=workgroup,
                        sla_policy=policy,
                    )
                    for n in range(1, args.tickets + 1)
                ),
                batch_size=2000,
            )
            clocks = []
            due_here = args.due // len(schemas) + (
                1 if schemas.index(schema) < args.due % len(schemas) else 0
            )
            for i, t in enumerate(tickets):
                if i < due_here:
                    due = base + dt.timedelta(seconds=rng.uniform(0, args.window))
                else:
                    due = base + dt.timedelta(days=30, seconds=rng.uniform(0, 86400))
                clocks.append(
                    SlaClock(
                        ticket=t,
                        kind=SlaClock.Kind.FIRST_RESPONSE,
                        target_s=3600,
                        started_at=due - dt.timedelta(hours=1),
                        running_since=due - dt.timedelta(hours=1),
                        warn_at=due - warn_gap,
                        due_at=due,
                    )
                )
            SlaClock.objects.bulk_create(clocks, batch_size=2000)
    shift = timezone.now() + dt.timedelta(seconds=args.lead) - base
    for schema in schemas:
        with schema_context(schema):
            SlaClock.objects.update(
                due_at=F("due_at") + shift,
                warn_at=F("warn_at") + shift,
                started_at=F("started_at") + shift,
                running_since=F("running_since") + shift,
            )
    connection.set_schema_to_public()
    print(
        f"provisioned {len(schemas)} tenants ({len(schemas) - len(have & set(schemas))} new in "
        f"{created:.0f} s), {args.tickets} open tickets each; first due in {args.lead} s",
        file=sys.stderr,
    )
    return schemas


def idle_pass(schemas: list[str], rounds: int) -> dict[str, float]:
    """Time a scan of every tenant with nothing due, against visiting every schema bare."""
    from django.db import connection
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from tickets.services.sla import sla_scan

    def bare() -> None:
        for schema in schemas:
            with schema_context(schema), connection.cursor() as cursor:
                cursor.execute("SELECT 1")

    def scan() -> None:
        for schema in schemas:
            with schema_context(schema):
                done = sla_scan(now=timezone.now())
                assert not any(done.values()), f"{schema}: something was due already"

    result = {}
    for name, fn in (("baseline", bare), ("scan", scan)):
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        result[name] = sorted(times)[len(times) // 2]
    connection.set_schema_to_public()
    return result


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def live_run(args: argparse.Namespace, env: dict[str, str], schemas: list[str]) -> dict:
    """Beat + worker until every clock is notified; latencies from the database."""
    import datetime as dt

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from tickets.models import Notification, SlaClock

    logdir = Path(tempfile.mkdtemp(prefix="sla-bench-"))
    child_env = dict(
        env, SLA_SCAN_INTERVAL_S=str(args.interval), DJANGO_SETTINGS_MODULE="weiyu.settings"
    )
    worker = _start(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "weiyu",
            "worker",
            "-c",
            str(args.concurrency),
            "-l",
            "warning",
        ],
        child_env,
        logdir / "worker.log",
    )
    beat = _start(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "weiyu",
            "beat",
            "-l",
            "warning",
            "-s",
            str(logdir / "beat-schedule"),
        ],
        child_env,
        logdir / "beat.log",
    )
    total = args.due
    soon = timezone.now() + dt.timedelta(days=1)  # the clocks due in the window
    deadline = time.monotonic() + args.lead + args.window + args.timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(2)
            pending = 0
            for schema in schemas:
                with schema_context(schema):
                    pending += SlaClock.objects.filter(
                        breach_notified_at__isnull=True, due_at__lt=soon
                    ).count()
            print(f"  {total - pending}/{total} breaches notified", file=sys.stderr)
            if pending == 0:
                break
    finally:
        for proc in (beat, worker):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (beat, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    latencies: list[float] = []
    missing = duplicated = 0
    for schema in schemas:
        with schema_context(schema):
            for due, notified in SlaClock.objects.filter(due_at__lt=soon).values_list(
                "due_at", "breach_notified_at"
            ):
                if notified is None:
                    missing += 1
                else:
                    latencies.append((notified - due).total_seconds())
            duplicated += (
                Notification.objects.values("clock_id", "kind")
                .annotate(n=Count("id"))
                .filter(n__gt=1)
                .count()
            )
    connection.set_schema_to_public()
    return {
        "clocks": total,
        "p50_s": pct(latencies, 50),
        "p99_s": pct(latencies, 99),
        "max_s": max(latencies) if latencies else None,
        "missing": missing,
        "duplicated": duplicated,
        "logs": str(logdir),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--tickets", type=int, default=1000, help="open tickets per tenant")
    p.add_argument("--due", type=int, default=3000, help="clocks falling due in the window")
    p.add_argument("--window", type=float, default=120, help="due times spread over (s)")
    p.add_argument("--lead", type=float, default=45, help="first due time after provisioning (s)")
    p.add_argument("--interval", type=float, default=10, help="beat interval (s)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes")
    p.add_argument("--rounds", type=int, default=3, help="idle passes (median reported)")
    p.add_argument("--timeout", type=float, default=120, help="extra wait after the window (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-migrate", action="store_true")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    env = bench_env()
    _django(env)
    schemas = provision(args)
    idle = idle_pass(schemas, args.rounds)
    live = live_run(args, env, schemas)
    print(
        f"\nSLA scanner: {args.tenants} tenants × {args.tickets} open tickets, {args.due} falling "
        f"due over {args.window:g} s; beat every {args.interval:g} s, {args.concurrency} workers"
    )
    print(f"{'':48} {'value':>12}")
    print(f"{'idle pass over all tenants, scanner (ms)':48} {idle['scan']:>12.0f}")
    print(f"{'idle pass over all tenants, bare schema visit (ms)':48} {idle['baseline']:>12.0f}")
    print(f"{'scanner / bare visit':48} {idle['scan'] / idle['baseline']:>11.2f}×")
    for label, key in (
        ("breach detection latency p50 (s)", "p50_s"),
        ("breach detection latency p99 (s)", "p99_s"),
        ("breach detection latency max (s)", "max_s"),
    ):
        value = live[key]
        print(f"{label:48} {'—' if value is None else f'{value:.1f}':>12}")
    print(
        f"{'clocks never notified / notified twice':48} {live['missing']:>6} / {live['duplicated']}"
    )
    if args.json:
        print(json.dumps({"args": vars(args), "idle_ms": idle, "live": live}))
    return 1 if live["missing"] or live["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
