#!/usr/bin/env python
"""Team-chat benchmark: group fan-out and 1:1 throughput over the real websocket stack.

    .venv/bin/python bench/im_load.py [--members 500] [--rounds 20] [--pairs 50] [--messages 40]

What it does (docs/benchmarks.md explains how to read the figures):

1. Provisions, in a subprocess and through the project's services, ``--members`` staff users
   ``bench_member_NNN`` in the tenant ``bench`` (``bench.localhost``, shared with
   bench/chat_load.py), one group holding all of them, ``--pairs`` 1:1 conversations (members
   2i and 2i+1), and one session cookie per member. Everything is reused between runs.
2. Starts ``daphne weiyu.asgi:application``, connects one ``/ws/agent/`` socket per member and
   sends ``sync`` with each member's conversations at their current ``seq``.
3. **Fan-out**: member 0 sends ``--rounds`` messages to the group, one at a time; each round
   waits until every other member's socket has the ``message.new`` (or ``--timeout`` s).
   Measured per round: time from the send to the *last* member's receipt; and every single
   delivery's latency. Reported as p50/p99 (ms).
4. **1:1 throughput**: in every pair the even member sends ``--messages`` messages to the odd one
   with up to ``--window`` unacknowledged at a time. Measured: delivered msgs/s at the receivers
   (distinct messages ÷ time from the first send to the last receipt) and send → receipt
   latency p50/p99. Every message is stored in PostgreSQL before it is acked and delivered.
5. Runs the same client against ``bench/echo_asgi.py`` (no Django, database or Redis: the bare
   ASGI baseline on the same daphne binary) and prints both with the ratios ours/baseline.

Exit status 1 when a message was lost (not delivered within the timeout) or a socket failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (  # bench/ is not a package: found through sys.path
    DOMAIN,
    PYTHON,
    ROOT,
    _ensure_database,
    _kill_children,
    _ws_kwargs,
    bench_env,
    bench_tenant,
    pct,
    raise_fd_limit,
    session_cookie,
    start_daphne,
    wait_healthy,
)


def provision(members: int, pairs: int, migrate: bool) -> dict[str, Any]:
    """Create or reuse the members, the group and the pairs; return cookies and conversations."""
    import os

    _ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    if migrate:
        call_command("migrate_schemas", interactive=False, verbosity=0)

    from im.models import Conversation, MessagingSettings, Participant
    from im.services import groups
    from org.models import User

    tenant = bench_tenant()
    with tenant_context(tenant):
        names = [f"bench_member_{i:03d}" for i in range(members)]
        have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        password = make_password(os.urandom(16).hex())
        User.objects.bulk_create(
            [
                User(username=n, password=password, role="agent", display_name=f"Member {n[-3:]}")
                for n in names
                if n not in have
            ]
        )
        by_name = User.objects.in_bulk(names, field_name="username")
        users = [by_name[n] for n in names]
        limits = MessagingSettings.current()
        if limits.group_max_members < members:
            limits.group_max_members = members
            limits.save(update_fields=["group_max_members"])
        title = f"bench fan-out {members}"
        group = Conversation.objects.filter(
            kind="group", title=title, closed_at__isnull=True
        ).first()
        if group is None:
            group = groups.group_create(
                creator=users[0], title=title, member_ids=[u.pk for u in users[1:]]
            )
        inside = set(
            Participant.objects.filter(conversation=group, left_at__isnull=True).values_list(
                "member_key", flat=True
            )
        )
        missing = [u.pk for u in users if u.member_key not in inside]
        if missing:
            groups.group_members_add(actor=users[0], conversation_id=group.pk, user_ids=missing)
        directs = [
            groups.direct_get_or_create(user=users[2 * i], other_user_id=users[2 * i + 1].pk).pk
            for i in range(pairs)
        ]
        seqs = dict(
            Conversation.objects.filter(pk__in=[group.pk, *directs]).values_list("pk", "last_seq")
        )
        cookies = [session_cookie(user) for user in users]
    connection.set_schema_to_public()
    return {
        "cookies": cookies,
        "group": group.pk,
        "directs": directs,
        "seqs": {str(k): v or 0 for k, v in seqs.items()},
    }


def run_provision(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [PYTHON, __file__, "--provision", "--members", str(args.members)]
    cmd += ["--pairs", str(args.pairs)]
    if args.skip_migrate:
        cmd.append("--skip-migrate")
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"provisioning failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class Member:
    """One member's socket and what it received (content → monotonic receipt time)."""

    index: int
    ws: Any = None
    got: dict[str, float] = field(default_factory=dict)
    acks: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    reader: Any = None
    ack_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async for raw in self.ws:
            now = time.monotonic()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message.new":
                self.got.setdefault(frame["message"]["content"], now)
            elif kind == "message.ack":
                self.acks[frame["client_msg_id"]] = now
                self.ack_event.set()
            elif kind == "error":
                self.errors += 1
                self.ack_event.set()

    async def send(self, conversation_id: int, cmid: str, content: str) -> None:
        await self.ws.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": conversation_id,
                    "client_msg_id": cmid,
                    "content": content,
                }
            )
        )


async def connect_all(port: int, world: dict[str, Any], members: list[Member]) -> None:
    from websockets.asyncio.client import connect

    cursors_of: dict[int, dict[str, int]] = {}
    group = str(world["group"])
    for m in members:
        cursors_of[m.index] = {group: world["seqs"][group]}
    for i, cid in enumerate(world["directs"]):
        for idx in (2 * i, 2 * i + 1):
            cursors_of[idx][str(cid)] = world["seqs"][str(cid)]
    gate = asyncio.Semaphore(50)

    async def one(m: Member) -> None:
        async with gate:
            m.ws = await connect(
                f"ws://{DOMAIN}:{port}/ws/agent/",
                port=port,
                additional_headers={"Cookie": world["cookies"][m.index]},
                **_ws_kwargs(port),
            )
            hello = json.loads(await asyncio.wait_for(m.ws.recv(), 30))
            assert hello["type"] == "hello", hello
            await m.ws.send(json.dumps({"type": "sync", "ref": 1, "cursors": cursors_of[m.index]}))
            while json.loads(await asyncio.wait_for(m.ws.recv(), 60))["type"] != "sync.result":
                pass
            m.reader = asyncio.ensure_future(m.read())

    await asyncio.gather(*(one(m) for m in members))


async def fan_out(args: argparse.Namespace, world: dict[str, Any], members: list[Member]) -> dict:
    sender, others = members[0], members[1:]
    to_last: list[float] = []
    each: list[float] = []
    lost = 0
    for r in range(args.rounds):
        content = f"fan {args.tag} {r}"
        t0 = time.monotonic()
        await sender.send(world["group"], f"{args.tag}-f{r}", content)
        deadline = t0 + args.timeout
        while time.monotonic() < deadline and any(content not in m.got for m in others):
            await asyncio.sleep(0.002)
        arrived = [m.got[content] - t0 for m in others if content in m.got]
        lost += len(others) - len(arrived)
        if arrived:
            to_last.append(max(arrived) * 1000)
            each.extend(a * 1000 for a in arrived)
        await asyncio.sleep(0.2)
    return {
        "last_p50_ms": pct(to_last, 50),
        "last_p99_ms": pct(to_last, 99),
        "each_p50_ms": pct(each, 50),
        "each_p99_ms": pct(each, 99),
        "lost": lost,
    }


async def pairs(args: argparse.Namespace, world: dict[str, Any], members: list[Member]) -> dict:
    sent: dict[str, float] = {}

    async def talk(i: int, cid: int) -> None:
        a = members[2 * i]
        in_flight: list[str] = []
        for k in range(args.messages):
            while len([c for c in in_flight if c not in a.acks]) >= args.window:
                a.ack_event.clear()
                await asyncio.wait_for(a.ack_event.wait(), args.timeout)
            cmid = f"{args.tag}-p{i}-{k}"
            content = f"pair {args.tag} {i} {k}"
            sent[content] = time.monotonic()
            in_flight.append(cmid)
            await a.send(cid, cmid, content)

    t0 = time.monotonic()
    await asyncio.gather(*(talk(i, cid) for i, cid in enumerate(world["directs"])))
    deadline = time.monotonic() + args.timeout
    receivers = {content: members[2 * int(content.split()[2]) + 1] for content in sent}

    def missing() -> int:
        return sum(1 for c, m in receivers.items() if c not in m.got)

    while missing() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    latencies = [(receivers[c].got[c] - t) * 1000 for c, t in sent.items() if c in receivers[c].got]
    last = max((receivers[c].got[c] for c in sent if c in receivers[c].got), default=t0)
    return {
        "msgs_per_s": len(latencies) / (last - t0) if last > t0 else None,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "lost": missing(),
    }


async def bench_server(
    name: str, app: str, args: argparse.Namespace, env: dict[str, str], world: dict[str, Any]
) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="im-bench-"))
    server = start_daphne(name, app, env, logdir)
    members = [Member(i) for i in range(args.members)]
    try:
        await wait_healthy(server)
        t = time.monotonic()
        await connect_all(server.port, world, members)
        setup_s = time.monotonic() - t
        fan = await fan_out(args, world, members)
        one = await pairs(args, world, members)
        errors = sum(m.errors for m in members)
        return {"setup_s": setup_s, "fan": fan, "pairs": one, "errors": errors}
    finally:
        for m in members:
            if m.ws is not None:
                await m.ws.close()
        server.stop()


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}×"


def print_table(args: argparse.Namespace, ours: dict[str, Any], echo: dict[str, Any]) -> None:
    rows = [
        (
            "fan-out: send → last member, p50 (ms)",
            ours["fan"]["last_p50_ms"],
            echo["fan"]["last_p50_ms"],
        ),
        (
            "fan-out: send → last member, p99 (ms)",
            ours["fan"]["last_p99_ms"],
            echo["fan"]["last_p99_ms"],
        ),
        (
            "fan-out: each delivery, p50 (ms)",
            ours["fan"]["each_p50_ms"],
            echo["fan"]["each_p50_ms"],
        ),
        (
            "fan-out: each delivery, p99 (ms)",
            ours["fan"]["each_p99_ms"],
            echo["fan"]["each_p99_ms"],
        ),
        ("1:1: delivered msgs/s", ours["pairs"]["msgs_per_s"], echo["pairs"]["msgs_per_s"]),
        ("1:1: send → receipt, p50 (ms)", ours["pairs"]["p50_ms"], echo["pairs"]["p50_ms"]),
        ("1:1: send → receipt, p99 (ms)", ours["pairs"]["p99_ms"], echo["pairs"]["p99_ms"]),
        ("connect + sync all members (s)", ours["setup_s"], echo["setup_s"]),
    ]
    print(
        f"\nTeam chat: {args.members} members in one group, {args.rounds} rounds; "
        f"{args.pairs} pairs × {args.messages} messages, window {args.window}"
    )
    print(f"{'':44} {'weiyu':>10} {'echo':>10} {'weiyu/echo':>11}")
    for label, a, b in rows:
        print(f"{label:44} {_fmt(a):>10} {_fmt(b):>10} {_ratio(a, b):>11}")
    print(
        f"{'lost (fan-out / 1:1), error frames':44} "
        f"{ours['fan']['lost']}/{ours['pairs']['lost']}, {ours['errors']:>3} "
        f"{echo['fan']['lost']}/{echo['pairs']['lost']}, {echo['errors']}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=500, help="group size (default 500)")
    p.add_argument("--rounds", type=int, default=20, help="fan-out messages (default 20)")
    p.add_argument("--pairs", type=int, default=50, help="1:1 conversations (default 50)")
    p.add_argument("--messages", type=int, default=40, help="messages per pair (default 40)")
    p.add_argument("--window", type=int, default=8, help="unacked messages per sender (8)")
    p.add_argument("--timeout", type=float, default=60, help="wait for deliveries (s)")
    p.add_argument("--only", choices=["weiyu", "echo"], help="run one server only")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    p.add_argument("--skip-migrate", action="store_true", help="do not run migrate_schemas")
    p.add_argument("--provision", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.members < 2 or args.pairs * 2 > args.members:
        p.error("need --members ≥ 2 and --pairs ≤ members / 2")
    args.tag = f"{int(time.time())}"
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    env = bench_env()
    world = run_provision(args, env)
    results: dict[str, Any] = {}
    if args.only in (None, "weiyu"):
        results["weiyu"] = await bench_server("weiyu", "weiyu.asgi:application", args, env, world)
    if args.only in (None, "echo"):
        results["echo"] = await bench_server(
            "echo", "bench.echo_asgi:application", args, env, world
        )
    if len(results) == 2:
        print_table(args, results["weiyu"], results["echo"])
    else:
        print(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps({"args": vars(args), "results": results}))
    return results


def main() -> int:
    args = parse_args()
    if args.provision:
        print(json.dumps(provision(args.members, args.pairs, migrate=not args.skip_migrate)))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: (_kill_children(), sys.exit(143)))
    try:
        results = asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130
    finally:
        _kill_children()
    bad = any(r["fan"]["lost"] or r["pairs"]["lost"] or r["errors"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
