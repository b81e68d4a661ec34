#!/usr/bin/env python
"""Beat fan-out benchmark: one pass of each periodic per-tenant task over many tenants, against
its interval, before and after skipping the idle tenants (tenants/fanout.py).

    .venv/bin/python bench/beat_fanout.py [--tenants 1000] [--busy 10] [--json] [--keep]

What it does (docs/benchmarks.md, "Beat fan-out"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_beatbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does; then ``--tenants``
   tenants made cheaply: each schema a copy of the template (``schema_clone``), their rows in one
   ``bulk_create`` (no domain, no administrator). ``--busy`` of them get real work through the
   services: an agent, a workgroup and channel, a conversation waiting in the queue (the service timers' and
   queue dispatch's work) and a ticket whose SLA clock runs (the SLA scanner's).
2. Per periodic task, one pass timed in this process, doing what the workers do (their sum is the
   worker time a pass costs; several workers share it):

   - **baseline** (the fan-out before): the per-tenant body for every active tenant, one task
     message each;
   - **after**: :func:`tenants.fanout.due_schemas` (the live set between two sweeps) and the
     chunk bodies (:func:`tenants.fanout.chunk_run`) for those tenants, one message per 50;
     for the tasks without a live set (statistics, usage, webhooks, retention…) the same
     tenants as the baseline, chunked.

   Also timed: publishing the pass's messages to a queue nobody reads (then deleted), 1 per
   tenant vs 1 per chunk, and a sweep pass (every active tenant, chunked), which the live-set
   tasks run once per ``WEIYU_FANOUT_SWEEP_S``.
3. Prints per task: interval, tenants visited, pass time (ms) and its share of the interval,
   baseline vs after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import scratch_database, tenants_clone  # bench/ is not a package: on sys.path

PREFIX = "bf_"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=10, help="tenants with real work")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    os.environ.setdefault("CHANNEL_PREFIX", f"beatbench{os.getpid()}")
    with scratch_database("beatbench", keep=args.keep):
        result = _measure(args.tenants, args.busy)
    _report(result, as_json=args.json)
    return 0


def _make_work(schemas: list[str]) -> None:
    """In each schema: an agent, a workgroup, a channel, a queued conversation and a ticket
    whose first-response clock started an hour ago (due in a day: nothing fires)."""
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from kefu.models import Channel, Workgroup
    from kefu.services import visitors
    from kefu.services.messages import visitor_message_send
    from tickets.models import SlaPolicy, SlaTarget, Ticket
    from tickets.services import clocks

    for schema in schemas:
        with schema_context(schema), transaction.atomic():
            agent = get_user_model().objects.create_user(
                username="ann", password=None, role="agent"
            )
            workgroup = Workgroup.objects.create(name="Support")
            workgroup.agents.add(agent)
            channel = Channel.objects.create(name="Site", workgroup=workgroup)
            visitor, _token = visitors.visitor_start(channel=channel, language="en")
            visitor_message_send(
                visitor=visitor, conversation_id=None, content="Hello?", client_msg_id="c1"
            )
            policy = SlaPolicy.objects.create(name="day", is_default=True)
            SlaTarget.objects.create(policy=policy, priority="normal", first_response_s=86400)
            ticket = Ticket.objects.create(
                number=1, subject="Order", source=Ticket.Source.API, assignee=agent
            )
            clocks.sla_clocks_start(ticket=ticket, now=timezone.now() - dt.timedelta(hours=1))


def _old_bodies() -> dict:
    """Per task: (beat entry, interval s, live kind or None, the per-tenant body before,
    the per-tenant task's name now)."""
    import datetime as dt

    from django.conf import settings
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from im.tasks import attachment_orphans_purge_task
    from kefu.services import agents, automation, queue, scheduled, snooze, transfers
    from kefu.tasks import (
        channel_events_prune_task,
        exports_purge_task,
        queue_dispatch_task,
        retention_task,
        stats_rollup_task,
    )
    from org.webhooks.tasks import webhook_due_scan_task
    from tenants.tasks import usage_rollup_task
    from tickets.services import sla

    schedule = settings.CELERY_BEAT_SCHEDULE
    today = timezone.localdate()
    days = [today.isoformat(), (today - dt.timedelta(days=1)).isoformat()]

    def sla_scan(schema: str) -> None:
        with schema_context(schema):
            sla.sla_scan(now=timezone.now())

    def timers(schema: str) -> None:
        with schema_context(schema):
            queue.queue_wait_scan()
            transfers.expire_scan()
            automation.timers_scan()
            agents.offline_scan()
            snooze.snooze_wake_scan()
            scheduled.scheduled_due_send()

    def stats(schema: str) -> None:
        for day in days:
            stats_rollup_task.run(schema, day)

    def retention(schema: str) -> None:
        retention_task.run(schema)
        exports_purge_task.run(schema)

    def interval(entry: str) -> float:
        return float(schedule[entry]["schedule"])

    return {
        "SLA scan": ("tickets-sla-scan", "sla", sla_scan, "tickets.tasks.sla_scan_task", ()),
        "service timers": ("kefu-timers", "timers", timers, "kefu.tasks.timers_scan_task", ()),
        "queue dispatch": (
            "kefu-queue-dispatch", "timers", queue_dispatch_task.run,
            "kefu.tasks.queue_dispatch_task", (),
        ),
        "webhooks due": (
            "webhooks-due", None, webhook_due_scan_task.run,
            "org.webhooks.tasks.webhook_due_scan_task", (),
        ),
        "statistics roll-up": (
            "kefu-stats", None, stats, "kefu.tasks.stats_rollup_task", tuple(days),
        ),
        "usage roll-up": (
            "tenants-usage-rollup", None, usage_rollup_task.run,
            "tenants.tasks.usage_rollup_task", (),
        ),
        "channel events prune": (
            "kefu-channel-events-prune", None, channel_events_prune_task.run,
            "kefu.tasks.channel_events_prune_task", (),
        ),
        "orphan uploads": (
            "im-orphan-uploads", None, attachment_orphans_purge_task.run,
            "im.tasks.attachment_orphans_purge_task", (),
        ),
        "retention": (
            "kefu-retention", None, retention, "kefu.tasks.retention_task", (),
        ),
    } | {"_interval": interval}  # fmt: skip


def _publish_ms(messages: int) -> float:
    """Publishing ``messages`` small task messages to a queue nobody reads (deleted after)."""
    from weiyu.celery import app

    queue = f"beatbench-{uuid.uuid4().hex[:8]}"
    task = app.tasks["tenants.tasks.fanout_chunk_task"]
    started = time.monotonic()
    for n in range(messages):
        task.apply_async(("im.tasks.attachment_orphans_purge_task", [f"{PREFIX}{n:04d}"], []),
                         queue=queue)  # fmt: skip
    elapsed = (time.monotonic() - started) * 1000
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)
    return round(elapsed, 1)


def _measure(tenants: int, busy: int) -> dict:
    import django

    django.setup()
    import importlib

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    for module in (
        "im.tasks",
        "kefu.tasks",
        "org.webhooks.tasks",
        "tenants.tasks",
        "tickets.tasks",
    ):
        importlib.import_module(module)  # the per-tenant tasks, registered by name
    from tenants import fanout
    from tenants.services import public_tenant_ensure
    from weiyu.celery import app  # the app the tasks are registered with: current from here on

    app.set_current()

    started = time.monotonic()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    deploy_s = time.monotonic() - started
    public_tenant_ensure(domains=["localhost"])
    client = fanout._redis()
    for kind in fanout.KINDS:
        client.delete(fanout._key(kind))
        client.set(fanout._key(kind, "sweep"), "1", ex=3600)  # between two sweeps
    create_s = tenants_clone(tenants, prefix=PREFIX)
    schemas = fanout.active_schemas()
    busy_schemas = schemas[:: max(1, len(schemas) // busy)][:busy] if busy else []
    _make_work(busy_schemas)
    connection.set_schema_to_public()
    chunk = settings.WEIYU_FANOUT_CHUNK
    tasks = _old_bodies()
    interval = tasks.pop("_interval")
    rows = []
    for label, (entry, kind, old_body, task_name, args) in tasks.items():
        t0 = time.monotonic()
        for schema in fanout.active_schemas():
            old_body(schema)
        baseline_ms = (time.monotonic() - t0) * 1000
        connection.set_schema_to_public()
        t0 = time.monotonic()
        due, sweep = fanout.due_schemas(kind)
        assert not sweep or kind is None
        for arg in args or [None]:
            extra = [arg] if arg is not None else []
            for start in range(0, len(due), chunk):
                fanout.chunk_run(task_name, due[start : start + chunk], extra)
        after_ms = (time.monotonic() - t0) * 1000
        connection.set_schema_to_public()
        sweep_ms = None
        if kind is not None:
            t0 = time.monotonic()
            everyone = fanout.active_schemas()
            for start in range(0, len(everyone), chunk):
                fanout.chunk_run(task_name, everyone[start : start + chunk], [])
            sweep_ms = round((time.monotonic() - t0) * 1000, 1)
            connection.set_schema_to_public()
            assert set(fanout.due_schemas(kind)[0]) == set(busy_schemas), label
        every = interval(entry)
        messages_before = len(schemas) * max(1, len(args))
        messages_after = -(-len(due) // chunk) * max(1, len(args))
        rows.append(
            {
                "task": label,
                "interval_s": every,
                "tenants_before": len(schemas),
                "tenants_after": len(due),
                "baseline_ms": round(baseline_ms, 1),
                "after_ms": round(after_ms, 1),
                "baseline_pct": round(baseline_ms / 10 / every, 1),
                "after_pct": round(after_ms / 10 / every, 1),
                "sweep_ms": sweep_ms,
                "messages_before": messages_before,
                "messages_after": messages_after,
            }
        )
    publish = {"per_tenant_ms": _publish_ms(len(schemas)),
               "per_chunk_ms": _publish_ms(-(-len(schemas) // chunk))}  # fmt: skip
    return {
        "tenants": len(schemas),
        "busy": len(busy_schemas),
        "chunk": chunk,
        "sweep_s": settings.WEIYU_FANOUT_SWEEP_S,
        "migrate_schemas_s": round(deploy_s, 1),
        "create_tenants_s": round(create_s, 1),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "publish_all_tenants": publish,
        "rows": rows,
    }


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['tenants']} tenants ({result['busy']} with work), made in "
        f"{result['create_tenants_s']} s; chunks of {result['chunk']}; sweep every "
        f"{result['sweep_s']:.0f} s; {result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    print(
        f"{'task':22} {'every s':>8} {'tenants':>9} {'baseline ms':>12} {'%':>6} "
        f"{'after ms':>9} {'%':>6} {'sweep ms':>9} {'messages':>10}"
    )
    for row in result["rows"]:
        tenants = f"{row['tenants_before']}→{row['tenants_after']}"
        messages = f"{row['messages_before']}→{row['messages_after']}"
        print(
            f"{row['task']:22} {row['interval_s']:>8.0f} {tenants:>9} {row['baseline_ms']:>12} "
            f"{row['baseline_pct']:>6} {row['after_ms']:>9} {row['after_pct']:>6} "
            f"{row['sweep_ms']!s:>9} {messages:>10}"
        )
    publish = result["publish_all_tenants"]
    print(
        f"publishing a pass to every tenant: one message per tenant {publish['per_tenant_ms']} ms,"
        f" one per chunk {publish['per_chunk_ms']} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
