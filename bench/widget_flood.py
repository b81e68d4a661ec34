#!/usr/bin/env python
"""Widget flood against a normal chat load: does one tenant's flood reach another tenant's chats?

    .venv/bin/python bench/widget_flood.py --visitors 50 --agents 10 --messages 10 \
        --flooders 50 [--unlimited] [--login] [--json]

``--login`` floods the ``flood`` tenant's inbox sign-in with wrong passwords instead (issue 12,
finding 2; docs/benchmarks.md, "Login flood"): half for its real agent, half for made-up
usernames, each request from a fresh ``X-Forwarded-For`` address. That flood runs in a process
of its own, at ``--flood-nice`` (10) niceness: an attacker's CPU is not the service's, and the
chat client's measurements are not delayed by the flood's own event loop.

What it does (docs/benchmarks.md, "Widget flood"; docs/security.md, "Rate limits"):

1. Provisions the tenant ``bench`` like bench/chat_load.py (same database, Redis and agents),
   whose visitors all come from 127.0.0.1: its own per-address and per-visitor limits are
   turned off in its back-office row (a tenant whose visitors share one proxy, chatting from a
   script); the per-tenant budgets stay. A second tenant ``flood`` on ``flood.localhost`` (one channel, one online agent) is the
   target of the flood, with the platform defaults.
2. Starts one daphne with the limits on (``--unlimited``: also a run with
   ``WEIYU_RATE_LIMITS=0``, the situation of issue 12) and ``WEIYU_TRUSTED_PROXIES=127.0.0.1``,
   so that the flooders can claim any address in ``X-Forwarded-For``: a botnet, a new address
   for each widget session.
3. Quiet run: bench/chat_load.py's client (N visitors chat with M agents, K messages each) on
   ``bench``. Flooded run: the same, while F flooders on ``flood`` loop: start a widget session,
   open the socket, send ``--burst`` messages without waiting, read the answers, close.
4. Prints for each run the chat figures of ``bench`` (ack and delivery p50/p99, lost, unacked)
   and the flood's: sessions started/refused (429), messages acked/refused (``rate_limited``
   frames)/unanswered, and that every acked flood message is stored (nothing lost); then the
   ratios flooded/quiet of the ``bench`` p99s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import chat_load  # noqa: E402 - needs ROOT on sys.path when run as a script

FLOOD_SCHEMA, FLOOD_DOMAIN = "flood", "flood.localhost"


# --- provisioning (a subprocess with Django set up) ---------------------------------------------


def provision_flood() -> dict[str, Any]:
    """The ``flood`` tenant (channel, one online agent with a high cap) and ``bench``'s own
    per-address limits off; returns the flood channel key and its message count so far."""
    import django

    django.setup()
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from im.models import Conversation, Message
    from kefu.models import AgentState, Channel, Session, Workgroup
    from kefu.services import agents as kefu_agents
    from org import models as org_models
    from org.models import User

    with tenant_context(chat_load.bench_tenant()):
        org_models.VisitorLimits.current()
        org_models.VisitorLimits.objects.update(  # a scripted chat: 40 messages in seconds
            sessions_per_ip_minute=0,
            connects_per_ip_minute=0,
            messages_per_ip_minute=0,
            messages_per_visitor_minute=0,
            frames_per_visitor_minute=0,
        )
    tenant = chat_load.bench_tenant(
        schema=FLOOD_SCHEMA, domain=FLOOD_DOMAIN, name="Flood", admin="flood_admin"
    )
    with tenant_context(tenant):
        org_models.VisitorLimits.current()  # the platform defaults
        live = Session.objects.exclude(status=Session.Status.CLOSED)  # a clean desk
        Conversation.objects.filter(
            pk__in=live.values("conversation_id"), closed_at__isnull=True
        ).update(closed_at=timezone.now())
        live.update(status=Session.Status.CLOSED, closed_at=timezone.now(), closed_by="system")
        workgroup, _ = Workgroup.objects.get_or_create(name="flood")
        channel, _ = Channel.objects.get_or_create(name="flood", defaults={"workgroup": workgroup})
        agent = User.objects.filter(username="flood_agent").first()
        if agent is None:
            agent = User.objects.create_user(
                username="flood_agent", password=os.urandom(16).hex(), role="agent"
            )
        workgroup.agents.add(agent)
        AgentState.objects.get_or_create(user=agent)
        AgentState.objects.filter(user=agent).update(max_concurrent=30000, open_count=0)
        kefu_agents.agent_status_set(user=agent, status=AgentState.Status.ONLINE)
        stored = Message.objects.filter(sender_type="visitor").count()
    return {"channel": channel.public_key, "stored": stored}


def run_provision_flood(env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [chat_load.PYTHON, __file__, "--provision"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"provisioning failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the flood ---------------------------------------------------------------------------------


class Flood:
    """Counts of one flood."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.acked: set[str] = set()
        self.stop = asyncio.Event()


def _botnet_address(rng: random.Random) -> str:
    return (
        f"{rng.randint(11, 200)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


async def _session(port: int, channel: str, address: str) -> tuple[int, Any]:
    raw = json.dumps({"channel": channel}).encode()
    head = (
        f"POST /api/v1/widget/session HTTP/1.0\r\nHost: {FLOOD_DOMAIN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
        f"X-Forwarded-For: {address}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, None


async def flooder(idx: int, port: int, channel: str, burst: int, flood: Flood) -> None:
    """Loop until the flood stops: a session from a fresh address, a burst of messages."""
    from websockets.asyncio.client import connect

    rng = random.Random(idx)
    n = 0
    while not flood.stop.is_set():
        address = _botnet_address(rng)
        try:
            status, body = await _session(port, channel, address)
        except (OSError, TimeoutError):
            flood.counts["session_failed"] += 1
            continue
        flood.counts[f"session_{status}"] += 1
        if status != 200:
            await asyncio.sleep(0.05)  # a botnet moves on to its next address
            continue
        kwargs = {**chat_load._ws_kwargs(port), "origin": f"http://{FLOOD_DOMAIN}:{port}"}
        kwargs["additional_headers"] = {"X-Forwarded-For": address}
        try:
            async with connect(
                f"ws://{FLOOD_DOMAIN}:{port}/ws/visitor/?token={quote(body['token'])}",
                port=port,
                **kwargs,
            ) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if hello.get("type") != "hello":
                    flood.counts["socket_" + str(hello.get("code"))] += 1
                    continue
                mine = []
                for _ in range(burst):
                    n += 1
                    cmid = f"f{idx}-{n}"
                    mine.append(cmid)
                    await ws.send(
                        json.dumps(
                            {"type": "message.send", "client_msg_id": cmid, "content": "x" * 200}
                        )
                    )
                flood.counts["messages_sent"] += burst
                answered = 0
                with contextlib.suppress(TimeoutError):
                    while answered < burst:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if frame.get("type") == "message.ack":
                            flood.acked.add(frame["client_msg_id"])
                            answered += 1
                        elif frame.get("type") == "error" and frame.get("client_msg_id"):
                            flood.counts["messages_" + str(frame.get("code"))] += 1
                            answered += 1
                flood.counts["messages_unanswered"] += burst - answered
        except (OSError, TimeoutError, KeyError) as exc:
            flood.counts["socket_" + type(exc).__name__] += 1


async def _http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.lower() == "set-cookie":
            headers.setdefault("set-cookie", "")
            headers["set-cookie"] += value.strip() + "\n"
        else:
            headers[key.lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body


async def login_flooder(idx: int, port: int, _channel: str, _burst: int, flood: Flood) -> None:
    """Loop until the flood stops: wrong passwords on the flood tenant's inbox sign-in, each from
    a fresh address (a botnet): every other one for its real agent (``flood_agent``, locked out
    after a few), the rest for made-up usernames (credential stuffing: a password hash each)."""
    rng = random.Random(idx)
    address = _botnet_address(rng)
    page = (
        f"GET /inbox/login/ HTTP/1.0\r\nHost: {FLOOD_DOMAIN}\r\n"
        f"X-Forwarded-For: {address}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        _status, headers, body = await _http(port, page)
    except (OSError, TimeoutError):
        flood.counts["login_page_failed"] += 1
        return
    cookie = next(
        c.split(";")[0] for c in headers.get("set-cookie", "").splitlines() if "csrftoken" in c
    )
    marker = b'name="csrfmiddlewaretoken" value="'
    token = body.split(marker, 1)[1].split(b'"', 1)[0].decode()
    n = 0
    while not flood.stop.is_set():
        n += 1
        username = "flood_agent" if n % 2 else f"user{idx}x{n}"
        form = f"csrfmiddlewaretoken={token}&username={username}&password=wrong{n}".encode()
        request = (
            f"POST /inbox/login/ HTTP/1.0\r\nHost: {FLOOD_DOMAIN}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\nCookie: {cookie}\r\n"
            f"X-Forwarded-For: {_botnet_address(rng)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            status, _headers, _body = await _http(port, request + form)
        except (OSError, TimeoutError) as exc:
            flood.counts["login_" + type(exc).__name__] += 1
            continue
        flood.counts[f"login_{status}"] += 1


def _start_flood_worker(
    port: int, channel: str, args: argparse.Namespace, flooders: int
) -> subprocess.Popen[str]:
    command = [chat_load.PYTHON, __file__, "--flood-worker", str(port), channel]
    command += ["--flooders", str(flooders), "--burst", str(args.burst)]
    command += ["--login"] if args.login else []
    if args.flood_nice:
        command = ["nice", "-n", str(args.flood_nice), *command]
    return subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _stop_flood_worker(worker: subprocess.Popen[str]) -> Counter[str]:
    """Close the worker's stdin (its signal to stop) and read its counts."""
    out, _err = worker.communicate("", timeout=120)
    return Counter(json.loads(out.strip().splitlines()[-1]))


async def flood_worker(port: int, channel: str, args: argparse.Namespace) -> dict[str, int]:
    """``--flood-worker``: run ``--flooders`` attackers against ``port`` until stdin closes."""
    flood = Flood()
    attack = login_flooder if args.login else flooder
    tasks = [
        asyncio.ensure_future(attack(i, port, channel, args.burst, flood))
        for i in range(args.flooders)
    ]
    await asyncio.to_thread(sys.stdin.read)
    flood.stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(flood.counts)


# --- orchestration -----------------------------------------------------------------------------


async def one_run(
    *, name: str, env: dict[str, str], args: argparse.Namespace, flooders: int, logdir: Path
) -> dict[str, Any]:
    world = await asyncio.to_thread(chat_load.run_provision, args.chat, env, migrate=not args.ran)
    args.ran = True
    flood_world = await asyncio.to_thread(run_provision_flood, env)
    server = chat_load.start_daphne(name, "weiyu.asgi:application", env, logdir)
    dbname = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    redis_port = urlsplit(env["REDIS_URL"]).port or 6379
    flood = Flood()
    try:
        await chat_load.wait_healthy(server)
        worker = None
        if flooders and args.login:
            # the botnet in a process of its own (its own event loop and CPU share, below the
            # chat's and the server's: an attacker's CPU is not the service's)
            worker = _start_flood_worker(server.port, flood_world["channel"], args, flooders)
            tasks = []
        else:
            attack = login_flooder if args.login else flooder
            tasks = [
                asyncio.ensure_future(
                    attack(i, server.port, flood_world["channel"], args.burst, flood)
                )
                for i in range(flooders)
            ]
        t0 = time.perf_counter()
        chat = await chat_load.drive(
            name=name,
            port=server.port,
            channel=world["channel"],
            cookies=world["cookies"],
            args=args.chat,
            sampler_factory=lambda: chat_load.CpuSampler(server.proc.pid, dbname, redis_port),
        )
        flood.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if worker is not None:
            flood.counts.update(await asyncio.to_thread(_stop_flood_worker, worker))
        seconds = time.perf_counter() - t0
    finally:
        server.stop()
    after = await asyncio.to_thread(run_provision_flood, env)
    keep = (
        "lat_ms_p50",
        "lat_ms_p99",
        "ack_ms_p50",
        "ack_ms_p99",
        "sent",
        "acked",
        "cpu_pct_of_core",
    )
    result = {k: chat.get(k) for k in keep}
    result.update(
        lost=chat.get("lost"),
        unacked=chat.get("unacked"),
        chat_errors=chat.get("errors"),
        flood_seconds=round(seconds, 1),
        flood=dict(flood.counts),
        flood_acked=len(flood.acked),
        flood_stored=after["stored"] - flood_world["stored"],
    )
    return result


def print_runs(runs: dict[str, dict[str, Any]]) -> None:
    for name, r in runs.items():
        f = r["flood"]
        print(f"\n== {name} ==")
        print(
            f"bench chat: ack p50/p99 {r['ack_ms_p50']}/{r['ack_ms_p99']} ms, delivery p50/p99 "
            f"{r['lat_ms_p50']}/{r['lat_ms_p99']} ms, sent {r['sent']}, acked {r['acked']}, "
            f"lost {r['lost']}, unacked {r['unacked']}, errors {r['chat_errors']}"
        )
        cpu = r.get("cpu_pct_of_core") or {}
        print(f"CPU % of a core: {cpu}")
        if f and any(k.startswith("login_") for k in f):
            print(
                f"login flood ({r['flood_seconds']} s): wrong-password answers 200 "
                f"{f.get('login_200', 0)}, locked out 429 {f.get('login_429', 0)}, "
                f"server errors {sum(v for k, v in f.items() if k.startswith('login_5'))}; "
                f"other {f}"
            )
        elif f:
            print(
                f"flood ({r['flood_seconds']} s): sessions 200 {f.get('session_200', 0)}, "
                f"429 {f.get('session_429', 0)}; messages sent {f.get('messages_sent', 0)}, "
                f"acked {r['flood_acked']}, rate_limited {f.get('messages_rate_limited', 0)}, "
                f"unanswered {f.get('messages_unanswered', 0)}; stored {r['flood_stored']} "
                f"(= acked: {r['flood_stored'] == r['flood_acked']}); other {f}"
            )


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    env = chat_load.bench_env()
    env["WEIYU_TRUSTED_PROXIES"] = "127.0.0.1/32"
    env["WEIYU_RATE_LIMITS"] = "1"
    chat_load.raise_fd_limit()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="weiyu-flood-") as tmp:
        logdir = Path(args.log_dir or tmp)
        runs["quiet"] = await one_run(name="quiet", env=env, args=args, flooders=0, logdir=logdir)
        runs["flooded"] = await one_run(
            name="flooded", env=env, args=args, flooders=args.flooders, logdir=logdir
        )
        if args.unlimited:
            off = {**env, "WEIYU_RATE_LIMITS": "0"}
            runs["flooded, limits off"] = await one_run(
                name="unlimited", env=off, args=args, flooders=args.flooders, logdir=logdir
            )
    with contextlib.suppress(Exception):
        await asyncio.to_thread(chat_load.redis_cleanup, env)
    ratios = {
        name: {
            "ack_p99": chat_load.ratio(r["ack_ms_p99"], runs["quiet"]["ack_ms_p99"]),
            "lat_p99": chat_load.ratio(r["lat_ms_p99"], runs["quiet"]["lat_ms_p99"]),
        }
        for name, r in runs.items()
        if name != "quiet"
    }
    print_runs(runs)
    print("\nratio to the quiet run (bench tenant p99):", ratios)
    summary = {"runs": runs, "ratio": ratios, "flooders": args.flooders, "burst": args.burst}
    if args.json:
        print(json.dumps(summary, separators=(",", ":")))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visitors", "-n", type=int, default=50)
    p.add_argument("--agents", "-m", type=int, default=10)
    p.add_argument("--messages", "-k", type=int, default=10)
    p.add_argument("--flooders", type=int, default=50, help="concurrent flooding clients")
    p.add_argument("--burst", type=int, default=100, help="messages per flood socket")
    p.add_argument("--unlimited", action="store_true", help="also run the flood, limits off")
    p.add_argument(
        "--login",
        action="store_true",
        help="flood the inbox sign-in with wrong passwords instead of the widget",
    )
    p.add_argument(
        "--flood-nice",
        type=int,
        default=10,
        help="niceness of the --login flood's own process (0: as the chat's)",
    )
    p.add_argument("--log-dir")
    p.add_argument("--skip-migrate", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--provision", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--flood-worker", nargs=2, metavar=("PORT", "CHANNEL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.ran = False  # migrate_schemas before the first run only
    args.chat = chat_load.parse_args(
        ["-n", str(args.visitors), "-m", str(args.agents), "-k", str(args.messages)]
        + ["--grace", "15", "--timeout", "300"]
        + (["--skip-migrate"] if args.skip_migrate else [])
    )
    return args


def main() -> int:
    args = parse_args()
    if args.provision:
        print(json.dumps(provision_flood()))
        return 0
    if args.flood_worker:
        port, channel = args.flood_worker
        print(json.dumps(asyncio.run(flood_worker(int(port), channel, args))))
        return 0
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130
    finally:
        chat_load._kill_children()
    return 0


if __name__ == "__main__":
    sys.exit(main())
