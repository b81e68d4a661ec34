#!/usr/bin/env python
"""Chat load benchmark: N visitors chat with M agents over the real websocket stack.

    .venv/bin/python bench/chat_load.py --visitors 100 --agents 10 --messages 10 [--json]

What it does (see docs/benchmarks.md for the reading of the figures):

1. Sets up its own world in ``$DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
   weiyu_bench``; created if missing, then ``migrate_schemas``) and ``$REDIS_URL`` (default
   ``redis://127.0.0.1:6379/3``): tenant ``bench`` on ``bench.localhost`` with M online agents
   (cap ``ceil(N/M)+1``, so nobody queues), one workgroup, one widget channel and one session
   cookie per agent — through the project's own services, in a subprocess (``--provision``).
   Leftover open sessions of earlier runs are closed first. The tenant is reused between runs.
2. Starts ``daphne weiyu.asgi:application`` on a free loopback port and waits for ``/healthz``
   (``--processes 1,2``: through the production launcher ``python -m weiyu.serve -w <n>``, once
   per count, re-provisioning between runs; the ratios against the first count are printed).
3. Connects M agent sockets (session cookie) and N visitors (``POST /api/v1/widget/session``,
   then ``/ws/visitor/?token=…``). Each visitor *opens* its chat with one message without
   ``conversation_id`` and waits for ``conversation.assigned`` (routing puts the agent in the
   conversation only after that first message, so it is not part of the measured set).
4. Send phase: every visitor sends K messages to its conversation, open loop, one every
   uniform(50, 200) ms (``--interval-ms``), without waiting for acks (``--pace ack`` waits for
   each ack instead, then the interval). Each content carries the client's send timestamp.
   Measured: delivered msgs/s (distinct measured ``message.new`` frames received by agent sockets
   ÷ time from the first send to the last such receipt), visitor→agent latency (send → agent
   receipt) p50/p95/p99, ack latency p50/p99, lost (acked but never received by an agent within
   ``--grace`` s), duplicated (received more than once), misrouted (received by another agent).
   CPU seconds of daphne, the PostgreSQL backends of the bench database, redis-server and this
   client are sampled from /proc over the send phase.
5. Baseline: the same client against ``bench/echo_asgi.py`` (a bare ASGI app, no Django / DB /
   Redis) served by the same daphne binary; prints both and the ratios ours/baseline.
6. Prints a table (``--json``: also one JSON line). Daphne subprocesses are killed at exit,
   including on Ctrl-C and errors.

All traffic goes to 127.0.0.1; websocket proxies from the environment are ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import math
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import websockets

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAPHNE = str(Path(PYTHON).with_name("daphne"))
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/weiyu_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
SCHEMA = "bench"
DOMAIN = "bench.localhost"
# Only for this benchmark's own database: signs the agents' session hashes and visitor tokens,
# shared by the provisioning subprocess and the daphne under test.
BENCH_SECRET_KEY = "weiyu-bench-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105


# --- environment ------------------------------------------------------------------------------


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    env["DJANGO_SETTINGS_MODULE"] = "weiyu.settings"
    env["SECRET_KEY"] = BENCH_SECRET_KEY
    env["DEBUG"] = "0"
    env.setdefault("LOG_LEVEL", "WARNING")
    # every bench visitor comes from 127.0.0.1, far past the anonymous rate limits of one address
    # (docs/security.md); bench/widget_flood.py turns them on again
    env.setdefault("WEIYU_RATE_LIMITS", "0")
    # A channel-layer prefix of this run only: group memberships left behind by an earlier,
    # killed daphne (group_expiry is a day) would otherwise receive — and slow — our sends.
    env.setdefault("CHANNEL_PREFIX", f"wbench{os.getpid()}x")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,.localhost"
    return env


def redis_cleanup(env: dict[str, str]) -> int:
    """Delete this run's channel-layer keys (``$CHANNEL_PREFIX*``) from the bench Redis db."""
    import redis

    prefix = env["CHANNEL_PREFIX"]
    client = redis.Redis.from_url(env["REDIS_URL"], socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def raise_fd_limit(want: int = 65536) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE towards ``want`` (children such as daphne inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --- 1. provisioning (runs in a subprocess with Django set up) ---------------------------------


def _ensure_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    dbname = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def bench_tenant(
    *, schema: str = SCHEMA, domain: str = DOMAIN, name: str = "Bench", admin: str = "bench_admin"
) -> Any:
    """The tenant ``schema`` on ``domain`` (default ``bench`` on ``bench.localhost``, shared by
    the benchmarks), created on first use with an administrator of a random password; needs
    Django set up. Leaves the connection on the public schema."""
    from django.db import connection

    from tenants.models import Domain
    from tenants.services import public_tenant_ensure, tenant_create

    connection.set_schema_to_public()
    public_tenant_ensure(domains=["localhost", "127.0.0.1"])
    existing = Domain.objects.filter(domain=domain).select_related("tenant").first()
    if existing is not None:
        return existing.tenant
    return tenant_create(
        name=name,
        schema_name=schema,
        domain=domain,
        admin_username=admin,
        admin_password=os.urandom(16).hex(),
    )


#: seconds between an agent socket's pings (the inbox's PING_EVERY, static/weiyu/client.js)
AGENT_PING_S = 25.0


def agent_present(user: Any) -> None:
    """Mark ``user`` as having an inbox open (inside their tenant), as the inbox socket does on
    connect: an agent is assigned visitors only then (kefu.presence). The agent sockets then ping
    as the inbox does, so the service timers (``--procfile``) find nobody gone."""
    from django.db import connection

    from kefu import presence
    from kefu.services import agents as kefu_agents

    presence.socket_seen(
        schema=connection.schema_name, user_id=user.pk, channel_name=f"bench.inbox!{user.pk}"
    )
    kefu_agents.agent_connected(user_id=user.pk)


def session_cookie(user: Any) -> str:
    """A ``Cookie`` value signing ``user`` in (inside their tenant), as tests/conftest.py does."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "org.backends.PasswordBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def provision(visitors: int, agents: int, migrate: bool) -> dict[str, Any]:
    """Create or reuse the bench tenant; return the channel key and the agents' cookies."""
    _ensure_database(os.environ["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    if migrate:
        call_command("migrate_schemas", interactive=False, verbosity=0)

    from im.models import Conversation
    from kefu.models import AgentState, Channel, Session, Workgroup
    from kefu.services import agents as kefu_agents
    from org.models import User

    tenant = bench_tenant()
    cap = math.ceil(visitors / agents) + 1
    cookies: list[str] = []
    with tenant_context(tenant):
        now = timezone.now()
        with transaction.atomic():  # a clean desk: close what earlier runs left open
            live = Session.objects.exclude(status=Session.Status.CLOSED)
            Conversation.objects.filter(
                pk__in=live.values("conversation_id"), closed_at__isnull=True
            ).update(closed_at=now)
            live.update(status=Session.Status.CLOSED, closed_at=now, closed_by="system")
            AgentState.objects.update(open_count=0)
        workgroup, _ = Workgroup.objects.get_or_create(name="bench")
        channel, _ = Channel.objects.get_or_create(
            name="bench", defaults={"workgroup": workgroup, "welcome_text": "Hi"}
        )
        staff = []
        for i in range(1, agents + 1):
            username = f"bench_agent_{i:03d}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(
                    username=username,
                    password=os.urandom(16).hex(),
                    role="agent",
                    display_name=f"Agent {i}",
                )
            staff.append(user)
        workgroup.agents.add(*staff)
        for user in User.objects.filter(username__startswith="bench_agent_").exclude(
            pk__in=[u.pk for u in staff]
        ):  # agents of an earlier, larger run stay out of routing
            kefu_agents.agent_status_set(user=user, status=AgentState.Status.OFFLINE)
        for user in staff:
            AgentState.objects.get_or_create(user=user)
            AgentState.objects.filter(user=user).update(max_concurrent=cap, open_count=0)
            agent_present(user)
            kefu_agents.agent_status_set(user=user, status=AgentState.Status.ONLINE)
            cookies.append(session_cookie(user))
    connection.set_schema_to_public()
    return {"channel": channel.public_key, "cookies": cookies, "cap": cap}


def run_provision(
    args: argparse.Namespace, env: dict[str, str], *, migrate: bool = True
) -> dict[str, Any]:
    cmd = [PYTHON, __file__, "--provision", "--visitors", str(args.visitors)]
    cmd += ["--agents", str(args.agents)]
    if args.skip_migrate or not migrate:
        cmd.append("--skip-migrate")
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"provisioning failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- 2. daphne subprocesses ---------------------------------------------------------------------

_children: list[subprocess.Popen[bytes]] = []


def _kill_children() -> None:
    for proc in _children:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 5
    for proc in _children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    _children.clear()


atexit.register(_kill_children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc in _children:
            _children.remove(self.proc)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_daphne(
    name: str,
    app: str,
    env: dict[str, str],
    logdir: Path,
    processes: int | None = None,
    *,
    server: str = "daphne",
) -> Server:
    """``daphne <app>`` on a free loopback port; with ``processes``, the production launcher
    ``python -m weiyu.serve -w <processes>`` (that many daphnes on the one port) instead. With
    ``server="uvicorn"``: one uvicorn process (uvloop, httptools, websockets) on the same app,
    for comparison only (``--server``; the product is served by daphne)."""
    port = free_port()
    log = logdir / f"daphne-{name}.log"
    command = [DAPHNE, "-b", "127.0.0.1", "-p", str(port), app]
    if server == "uvicorn":
        command = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets"]
        command += ["--lifespan", "off", "--no-access-log", "--log-level", "warning", app]
    elif processes is not None:
        command = [PYTHON, "-m", "weiyu.serve", "-b", "127.0.0.1", "-p", str(port)]
        command += ["-w", str(processes), app]
    return _spawn(name, command, env, log, port)


def _spawn(name: str, command: list[str], env: dict[str, str], log: Path, port: int) -> Server:
    """``command`` started with its output in ``log``, killed at exit (``_children``)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop it ourselves
        )
    _children.append(proc)
    return Server(name, proc, port, log)


def start_procfile_rest(env: dict[str, str], logdir: Path, name: str) -> list[Server]:
    """The Procfile's other processes beside the web (``--procfile``): a Celery worker of
    concurrency 2, beat (its schedule file in ``logdir``) and the embedding service, with the
    bench's environment; stopped with the web server."""
    celery = str(Path(PYTHON).with_name("celery"))
    schedule = str(logdir / f"celerybeat-{name}")
    commands = {
        "worker": [celery, "-A", "weiyu", "worker", "--loglevel", "WARNING", "--concurrency", "2"],
        "beat": [celery, "-A", "weiyu", "beat", "--loglevel", "WARNING", "--schedule", schedule],
        "embed": [PYTHON, "manage.py", "embed_server"],
    }
    return [
        _spawn(kind, command, env, logdir / f"{kind}-{name}.log", 0)
        for kind, command in commands.items()
    ]


async def http_request(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float = 15,
    host: str = DOMAIN,
) -> tuple[int, Any]:
    """A minimal HTTP/1.0 client for 127.0.0.1:``port`` with ``Host: host``: returns (status,
    parsed JSON body or None). Raises ``OSError``/``TimeoutError`` when the connection fails."""
    raw = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def go() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + raw)
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
        header, _, payload = data.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, None

    return await asyncio.wait_for(go(), timeout)


async def wait_healthy(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"daphne ({server.name}) exited:\n{server.log_tail()}")
        try:
            status, _ = await http_request(server.port, "GET", "/healthz", timeout=5)
            if status == 200:
                return
        except (OSError, TimeoutError, ValueError, IndexError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"daphne ({server.name}) not healthy after {timeout}s:\n{server.log_tail()}")


# --- CPU accounting from /proc ------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            rest = fh.read().rsplit(b")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _machine_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


async def machine_busy(seconds: float = 2.0) -> float:
    """Busy % of the whole machine (100 per core) over ``seconds``."""
    b0, t0 = _machine_jiffies()
    await asyncio.sleep(seconds)
    b1, t1 = _machine_jiffies()
    return round(100 * (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1), 1)


async def wait_quiet(limit_s: float, threshold: float) -> float:
    """Wait (up to ``limit_s``) until the machine is below ``threshold`` busy %; return the last
    reading. On a shared machine this keeps other people's bursts out of the figures, somewhat."""
    deadline = time.monotonic() + limit_s
    busy = await machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = await machine_busy()
    return busy


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the launcher's daphnes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(parents.get(current, []))
    return out


class CpuSampler:
    """CPU seconds per process group between :meth:`start` and :meth:`stop` (``daphne``: the
    server process and its children, i.e. every daphne of a ``weiyu.serve`` launcher)."""

    def __init__(self, daphne_pid: int, dbname: str, redis_port: int) -> None:
        self.daphne_pid = daphne_pid
        self.dbname = dbname
        self.redis_port = redis_port

    def _groups(self) -> dict[str, list[int]]:
        daphnes = _descendants(self.daphne_pid)
        groups: dict[str, list[int]] = {"daphne": daphnes, "client": [os.getpid()]}
        groups["postgres"] = []
        groups["redis"] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            cmd = _cmdline(int(entry))
            if cmd.startswith("postgres:") and f" {self.dbname} " in cmd:
                groups["postgres"].append(int(entry))
            elif "redis-server" in cmd and f":{self.redis_port}" in cmd:
                groups["redis"].append(int(entry))
        return groups

    def _sample(self) -> dict[int, float]:
        out = {}
        for pids in self._groups().values():
            for pid in pids:
                value = _cpu_seconds(pid)
                if value is not None:
                    out[pid] = value
        return out

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.m0 = _machine_jiffies()
        self.s0 = self._sample()

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-6)
        m1 = _machine_jiffies()
        result: dict[str, float] = {}
        daphne_s = 0.0
        for name, pids in self._groups().items():
            used = 0.0
            for pid in pids:
                end = _cpu_seconds(pid)
                if end is not None:
                    used += end - self.s0.get(pid, 0.0)
            result[name] = round(100 * used / wall, 1)  # % of one core
            if name == "daphne":
                daphne_s = used
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        result["machine"] = round(100 * (os.cpu_count() or 1) * busy / max(total, 1), 1)
        result["other"] = round(
            result["machine"] - sum(v for k, v in result.items() if k != "machine"), 1
        )
        result["pg_backends_at_end"] = len(self._groups()["postgres"])
        result["daphne_cpu_s"] = round(daphne_s, 3)  # CPU seconds, not a %
        return result


# --- 3-4. the load -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Run:
    n: int
    m: int
    k: int
    prefix: str
    send_t: dict[str, float] = field(default_factory=dict)
    ack_t: dict[str, float] = field(default_factory=dict)
    recv_count: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    ack_lat: list[float] = field(default_factory=list)
    open_lat: list[float] = field(default_factory=list)
    conv_agent: dict[int, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    misrouted: int = 0
    first_send: float | None = None
    last_send: float = 0.0
    last_recv: float = 0.0
    agents_ok: int = 0
    visitors_ok: int = 0
    opened: int = 0
    tasks: list[Any] = field(default_factory=list)
    closing: bool = False
    trace: list[tuple[str, float, int]] = field(default_factory=list)


def _ws_kwargs(port: int) -> dict[str, Any]:
    return {
        "proxy": None,
        "host": "127.0.0.1",
        "origin": f"http://{DOMAIN}:{port}",  # a browser on that page sends the port
        "compression": None,
        "open_timeout": 20,
        "close_timeout": 2,
        "ping_interval": None,
        "max_queue": 4096,
    }


async def _recv_json(ws: Any, timeout: float) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _agent(run: Run, idx: int, port: int, cookie: str, sockets: list[Any]) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://{DOMAIN}:{port}/ws/agent/",
        port=port,
        additional_headers={"Cookie": cookie},
        **_ws_kwargs(port),
    )
    sockets.append(ws)
    hello = await _recv_json(ws, 20)
    if hello.get("type") != "hello":
        raise RuntimeError(f"agent {idx}: expected hello, got {hello}")
    run.agents_ok += 1

    async def reader() -> None:
        pinger = asyncio.ensure_future(ping())
        try:
            with contextlib.suppress(websockets.ConnectionClosed):
                await read_frames()
        finally:
            pinger.cancel()
        if not run.closing:  # the server closed an agent socket mid-run
            run.errors["agent_socket_closed"] += 1

    async def ping() -> None:
        # as the inbox does (static/weiyu/client.js): an agent socket not heard from for
        # kefu.presence.ALIVE_S is gone, and with --procfile the service timers then return the
        # agent's conversations to the queue
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(AGENT_PING_S)
                await ws.send('{"type": "ping"}')

    async def read_frames() -> None:
        prefix = run.prefix
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message.new":
                msg = frame["message"]
                cmid = msg.get("client_msg_id") or ""
                if not cmid.startswith(prefix) or msg["sender"]["type"] != "visitor":
                    continue
                if cmid.endswith("-o"):  # an opening message (not measured)
                    continue
                run.recv_count[cmid] += 1
                if run.recv_count[cmid] == 1:
                    sent = float(msg["content"].rsplit("t=", 1)[1])
                    run.latencies.append(now - sent)
                    run.trace.append((cmid, now - sent, idx))
                    run.last_recv = now
                    if run.conv_agent.get(msg["conversation_id"], idx) != idx:
                        run.misrouted += 1
            elif kind == "conversation.assigned":
                run.conv_agent[frame["conversation"]["id"]] = idx
            elif kind == "error":
                run.errors["agent:" + str(frame.get("code"))] += 1

    return asyncio.ensure_future(reader())


async def _visitor(
    *,
    run: Run,
    idx: int,
    port: int,
    channel: str,
    gate: asyncio.Semaphore,
    go: asyncio.Event,
    args: argparse.Namespace,
    sockets: list[Any],
) -> None:
    from websockets.asyncio.client import connect

    async with gate:
        status, body = await http_request(
            port, "POST", "/api/v1/widget/session", {"channel": channel, "language": "en"}
        )
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"widget session: HTTP {status} {body}")
        ws = await connect(
            f"ws://{DOMAIN}:{port}/ws/visitor/?token={quote(body['token'])}",
            port=port,
            **_ws_kwargs(port),
        )
        sockets.append(ws)
        hello = await _recv_json(ws, 20)
        if hello.get("type") != "hello":
            raise RuntimeError(f"visitor {idx}: expected hello, got {hello}")
        run.visitors_ok += 1
        pending: dict[str, asyncio.Future[None]] = {}
        assigned: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def reader() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await read_frames()
            if not run.closing:
                run.errors["visitor_socket_closed"] += 1

        async def read_frames() -> None:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message.ack":
                    cmid = frame.get("client_msg_id")
                    if cmid in run.send_t and cmid not in run.ack_t:
                        run.ack_t[cmid] = now
                        run.ack_lat.append(now - run.send_t[cmid])
                    if frame.get("duplicate"):
                        run.errors["ack_duplicate"] += 1
                    fut = pending.pop(cmid, None)
                    if fut and not fut.done():
                        fut.set_result(None)
                elif kind == "conversation.assigned" and not assigned.done():
                    assigned.set_result(frame["conversation"]["id"])
                elif kind == "error":
                    run.errors["visitor:" + str(frame.get("code"))] += 1
                    fut = pending.pop(frame.get("client_msg_id"), None)
                    if fut and not fut.done():
                        fut.set_result(None)

        run.tasks.append(asyncio.ensure_future(reader()))  # strong ref: runs until closed
        t0 = time.perf_counter()
        await ws.send(
            json.dumps(
                {
                    "type": "message.send",
                    "client_msg_id": f"{run.prefix}{idx}-o",
                    "content": "hello",
                }
            )
        )
        conversation_id = await asyncio.wait_for(assigned, args.open_timeout)
        run.open_lat.append(time.perf_counter() - t0)
        run.opened += 1

    await go.wait()
    low, high = args.interval_ms[0] / 1000, args.interval_ms[1] / 1000
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed * 1_000_003 + idx)  # same schedule for both servers
    next_at = loop.time() + rng.uniform(0, high)
    for i in range(run.k):
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        cmid = f"{run.prefix}{idx}-{i}"
        sent = time.perf_counter()
        run.send_t[cmid] = sent
        if run.first_send is None:
            run.first_send = sent
        run.last_send = sent
        acked = loop.create_future()
        pending[cmid] = acked
        await ws.send(
            json.dumps(
                {
                    "type": "message.send",
                    "conversation_id": conversation_id,
                    "client_msg_id": cmid,
                    "content": f"bench visitor {idx} msg {i} t={sent:.6f}",
                    "ref": cmid[-64:],
                }
            )
        )
        if args.pace == "ack":
            await asyncio.wait_for(acked, args.grace)
            next_at = loop.time() + rng.uniform(low, high)
        else:
            next_at += rng.uniform(low, high)


# --- PostgreSQL connections from pg_stat_activity ------------------------------------------------


class PgConnSampler:
    """Counts the client connections to the bench database in ``pg_stat_activity`` every
    ``interval`` s on a thread of its own, from :meth:`start` to :meth:`stop`: in total, those
    running a statement (``state = 'active'``) and per ``application_name`` (weiyu-web-1,
    weiyu-worker…: weiyu/procname.py), and the distinct connections seen (a process that
    reconnects often shows many). The samplers' own connections are left out."""

    QUERY = (
        "SELECT application_name, state = 'active', pid, backend_start FROM pg_stat_activity "
        "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND application_name <> 'chat_load-sampler'"
    )

    def __init__(self, database_url: str, interval: float = 0.25) -> None:
        self.database_url = database_url
        self.dbname = urlsplit(database_url).path.lstrip("/")
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        #: every connection seen: (application_name, backend pid, backend start)
        self.seen: set[tuple[str, int, Any]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(
            self.database_url,
            autocommit=True,
            connect_timeout=10,
            application_name="chat_load-sampler",
        ) as conn:
            while True:
                by_app: Counter[str] = Counter()
                active = 0
                for app, is_active, pid, since in conn.execute(self.QUERY, [self.dbname]):
                    by_app[app or "?"] += 1
                    active += 1 if is_active else 0
                    self.seen.add((app or "?", pid, since))
                self.samples.append(
                    {"total": sum(by_app.values()), "active": active, "by_app": by_app}
                )
                if self._stop.wait(self.interval):
                    return

    def start(self) -> PgConnSampler:
        self._thread = threading.Thread(target=self._loop, name="pg-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the figures: ``peak``, ``median`` (connections), ``active_peak``,
        ``by_app_peak`` ({application_name: peak}), ``opened_by_app`` ({application_name:
        distinct connections seen, i.e. held or opened meanwhile}), ``samples``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        totals = sorted(s["total"] for s in self.samples)
        by_app: dict[str, int] = {}
        for sample in self.samples:
            for app, count in sample["by_app"].items():
                by_app[app] = max(by_app.get(app, 0), count)
        return {
            "opened_by_app": dict(sorted(Counter(app for app, _pid, _t in self.seen).items())),
            "peak": totals[-1] if totals else None,
            "median": totals[len(totals) // 2] if totals else None,
            "active_peak": max((s["active"] for s in self.samples), default=None),
            "by_app_peak": dict(sorted(by_app.items())),
            "samples": len(totals),
        }


async def drive(
    *,
    name: str,
    port: int,
    channel: str,
    cookies: list[str],
    args: argparse.Namespace,
    sampler_factory: Any,
) -> dict[str, Any]:
    """Connect, open, send, wait for delivery; return the figures for one server."""
    run = Run(
        args.visitors,
        args.agents,
        args.messages,
        prefix=f"b{os.getpid()}{name[0]}{int(time.time()) % 100000}x",
    )
    sockets: list[Any] = []
    readers: list[Any] = []
    result: dict[str, Any] = {"server": name}
    t_setup = time.perf_counter()
    try:
        async with asyncio.timeout(args.timeout):
            readers = await asyncio.gather(
                *(_agent(run, i, port, cookies[i], sockets) for i in range(args.agents))
            )
            gate = asyncio.Semaphore(args.connect_concurrency)
            go = asyncio.Event()
            tasks = [
                asyncio.ensure_future(
                    _visitor(
                        run=run,
                        idx=i,
                        port=port,
                        channel=channel,
                        gate=gate,
                        go=go,
                        args=args,
                        sockets=sockets,
                    )
                )
                for i in range(args.visitors)
            ]
            # wait until every visitor has opened its chat (or failed)
            while sum(t.done() for t in tasks) + run.opened < len(tasks):
                await asyncio.sleep(0.05)
            result["setup_s"] = round(time.perf_counter() - t_setup, 2)
            sampler = sampler_factory()
            sampler.start()
            go.set()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            failures = Counter(
                type(o).__name__ + ": " + str(o)[:80]
                for o in outcomes
                if isinstance(o, BaseException)
            )
            # Drain: until every sent message is acked and every acked one delivered, or nothing
            # new arrived for --grace seconds (then what is missing counts as lost/unacked).
            progress, quiet_since = -1, time.perf_counter()
            while time.perf_counter() - quiet_since < args.grace:
                if len(run.ack_t) == len(run.send_t) and all(run.recv_count[c] for c in run.ack_t):
                    break
                now_progress = len(run.ack_t) + len(run.recv_count)
                if now_progress != progress:
                    progress, quiet_since = now_progress, time.perf_counter()
                await asyncio.sleep(0.02)
            result["cpu_pct_of_core"] = sampler.stop()
    except TimeoutError:
        result["timed_out"] = True
        failures = Counter({"run timeout": 1})
    except Exception as exc:  # e.g. an agent socket refused: report, don't hide
        result["fatal"] = f"{type(exc).__name__}: {exc}"[:300]
        failures = Counter({result["fatal"]: 1})
    finally:
        run.closing = True
        await asyncio.gather(
            *(asyncio.wait_for(ws.close(), 3) for ws in sockets), return_exceptions=True
        )
        for task in [*readers, *run.tasks]:
            task.cancel()

    if args.trace:
        with open(f"{args.trace}.{name}.csv", "w") as fh:
            fh.write("t_send_rel_s,latency_ms,agent,ack_ms\n")
            base = run.first_send or 0.0
            acks = {c: run.ack_t[c] - run.send_t[c] for c in run.ack_t}
            lat_by_cmid = {c: (lat, a) for c, lat, a in run.trace}
            for cmid, t_send in sorted(run.send_t.items(), key=lambda kv: kv[1]):
                lat, agent = lat_by_cmid.get(cmid, (None, None))
                ack = acks.get(cmid)
                fh.write(
                    f"{t_send - base:.4f},{'' if lat is None else round(lat * 1000, 2)},"
                    f"{'' if agent is None else agent},{'' if ack is None else round(ack * 1000, 2)}\n"
                )
    sent = len(run.send_t)
    acked = set(run.ack_t)
    delivered = sum(1 for c in run.recv_count if c in run.send_t)
    span = (run.last_recv - run.first_send) if run.first_send and run.last_recv else 0.0
    send_span = (run.last_send - run.first_send) if run.first_send else 0.0
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    result.update(
        {
            "agents_connected": run.agents_ok,
            "visitors_connected": run.visitors_ok,
            "visitors_opened": run.opened,
            "open_ms_p50": ms(pct(run.open_lat, 50)),
            "open_ms_p99": ms(pct(run.open_lat, 99)),
            "sent": sent,
            "acked": len(acked),
            "delivered": delivered,
            # acked but never received by an agent (if the run timed out: still pending)
            "lost": None
            if result.get("timed_out")
            else sum(1 for c in acked if not run.recv_count[c]),
            "pending_at_timeout": sum(1 for c in acked if not run.recv_count[c])
            if result.get("timed_out")
            else 0,
            "unacked": sent - len(acked),
            "duplicated": sum(v - 1 for v in run.recv_count.values() if v > 1),
            "misrouted": run.misrouted,
            "errors": dict(run.errors),
            "failures": dict(failures),
            "offered_msg_s": round(sent / send_span, 1) if send_span else None,
            "phase_s": round(span, 2),
            "delivered_msg_s": round(delivered / span, 1) if span else None,
            "lat_ms_p50": ms(pct(run.latencies, 50)),
            "lat_ms_p95": ms(pct(run.latencies, 95)),
            "lat_ms_p99": ms(pct(run.latencies, 99)),
            "lat_ms_max": ms(max(run.latencies) if run.latencies else None),
            "ack_ms_p50": ms(pct(run.ack_lat, 50)),
            "ack_ms_p99": ms(pct(run.ack_lat, 99)),
            # the web processes' CPU over the send phase per message delivered (P3: <= 1 ms)
            "cpu_ms_per_msg": round(1000 * result["cpu_pct_of_core"]["daphne_cpu_s"] / delivered, 3)
            if delivered and "daphne_cpu_s" in result.get("cpu_pct_of_core", {})
            else None,
        }
    )
    return result


# --- 5-6. orchestration and output ---------------------------------------------------------------


async def bench_server(
    *,
    name: str,
    app: str,
    env: dict[str, str],
    world: dict[str, Any],
    args: argparse.Namespace,
    logdir: Path,
    processes: int | None = None,
) -> dict[str, Any]:
    busy_before = (
        await wait_quiet(args.wait_quiet, args.quiet_threshold) if args.wait_quiet else None
    )
    load_before = os.getloadavg()
    server = start_daphne(
        name, app, env, logdir, processes, server=getattr(args, "server", "daphne")
    )
    product = app.startswith("weiyu.")
    extras = start_procfile_rest(env, logdir, name) if product and args.procfile else []
    try:
        await wait_healthy(server)
        dbname = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
        redis_port = urlsplit(env["REDIS_URL"]).port or 6379
        cookies = world["cookies"] or [f"weiyu_session=echo{i}" for i in range(args.agents)]
        pg_rest: dict[str, Any] | None = None
        pg_load: PgConnSampler | None = None
        if product:  # the baseline: the same processes before any client connects
            rest = PgConnSampler(env["DATABASE_URL"]).start()
            await asyncio.sleep(args.pg_rest_s)
            pg_rest = await asyncio.to_thread(rest.stop)
            pg_load = PgConnSampler(env["DATABASE_URL"]).start()
        try:
            result = await drive(
                name=name,
                port=server.port,
                channel=world["channel"],
                cookies=cookies,
                args=args,
                sampler_factory=lambda: CpuSampler(server.proc.pid, dbname, redis_port),
            )
        finally:
            if pg_load is not None:
                result_pg = await asyncio.to_thread(pg_load.stop)
        if pg_load is not None:
            result["pg_conns"] = {"rest": pg_rest, "load": result_pg}
        result["procfile"] = [extra.name for extra in extras]
        for extra in extras:
            if extra.proc.poll() is not None:
                result.setdefault("procfile_exited", {})[extra.name] = extra.proc.returncode
        result["machine_busy_before"] = busy_before
        result["web_processes"] = processes or 1
        result["loadavg_before"] = [round(v, 2) for v in load_before]
        result["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        if server.proc.poll() is not None:
            result["daphne_exited"] = server.proc.returncode
        errors: Counter[str] = Counter()
        with contextlib.suppress(OSError):
            for line in server.log.read_text(errors="replace").splitlines():
                if " ERROR " in line or line.startswith(("psycopg.", "django.db.", "redis.")):
                    errors[line.split(" ERROR ", 1)[-1][:160]] += 1
        result["daphne_log_errors"] = dict(errors.most_common(6))
        return result
    finally:
        server.stop()
        for extra in extras:
            extra.stop()


ROWS = [
    (
        "visitors connected / opened",
        lambda r: f"{r['visitors_connected']} / {r['visitors_opened']}",
    ),
    ("setup: connect + open all (s)", lambda r: r.get("setup_s")),
    ("open latency p50 / p99 (ms)", lambda r: f"{r['open_ms_p50']} / {r['open_ms_p99']}"),
    ("sent / acked / delivered", lambda r: f"{r['sent']} / {r['acked']} / {r['delivered']}"),
    (
        "lost / unacked / dup / misrouted",
        lambda r: f"{r['lost']} / {r['unacked']} / {r['duplicated']} / {r['misrouted']}",
    ),
    (
        "timed out (pending msgs)",
        lambda r: f"yes ({r['pending_at_timeout']})" if r.get("timed_out") else "no",
    ),
    ("offered (msg/s)", lambda r: r["offered_msg_s"]),
    ("send phase: first send→last receipt (s)", lambda r: r["phase_s"]),
    ("delivered (msg/s)", lambda r: r["delivered_msg_s"]),
    ("v→a latency p50 (ms)", lambda r: r["lat_ms_p50"]),
    ("v→a latency p95 (ms)", lambda r: r["lat_ms_p95"]),
    ("v→a latency p99 (ms)", lambda r: r["lat_ms_p99"]),
    ("v→a latency max (ms)", lambda r: r["lat_ms_max"]),
    ("ack latency p50 / p99 (ms)", lambda r: f"{r['ack_ms_p50']} / {r['ack_ms_p99']}"),
    ("CPU % of a core: daphne", lambda r: r.get("cpu_pct_of_core", {}).get("daphne")),
    ("CPU ms of daphne per delivered message", lambda r: r.get("cpu_ms_per_msg")),
    ("CPU %: postgres (bench db backends)", lambda r: r.get("cpu_pct_of_core", {}).get("postgres")),
    ("CPU %: redis-server", lambda r: r.get("cpu_pct_of_core", {}).get("redis")),
    ("CPU %: this client", lambda r: r.get("cpu_pct_of_core", {}).get("client")),
    (
        "PG conns at rest: peak / median",
        lambda r: f"{r['pg_conns']['rest']['peak']} / {r['pg_conns']['rest']['median']}",
    ),
    (
        "PG conns under load: peak / median",
        lambda r: f"{r['pg_conns']['load']['peak']} / {r['pg_conns']['load']['median']}",
    ),
    ("PG conns running a statement: peak", lambda r: r["pg_conns"]["load"]["active_peak"]),
    ("machine busy % before start", lambda r: r.get("machine_busy_before")),
    ("web processes", lambda r: r.get("web_processes")),
    (
        "load average 1 min before / after",
        lambda r: f"{r['loadavg_before'][0]} / {r['loadavg_after'][0]}",
    ),
    (
        "CPU %: whole machine (100/core) / other",
        lambda r: "{} / {}".format(
            r.get("cpu_pct_of_core", {}).get("machine"), r.get("cpu_pct_of_core", {}).get("other")
        ),
    ),
]


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def print_table(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], ratios: dict[str, Any]
) -> None:
    names = list(results)
    print(
        f"\nchat_load: N={args.visitors} visitors, M={args.agents} agents, K={args.messages} msgs "
        f"each, pace={args.pace} {args.interval_ms[0]:g}-{args.interval_ms[1]:g} ms"
    )
    width = max(len(label) for label, _ in ROWS)
    print(f"{'':{width}}  " + "  ".join(f"{n:>18}" for n in names))
    for label, get in ROWS:
        cells = []
        for n in names:
            try:
                cells.append(f"{get(results[n])!s:>18}")
            except (KeyError, TypeError):
                cells.append(f"{'-':>18}")
        print(f"{label:{width}}  " + "  ".join(cells))
    for pair, values in ratios.items():
        print(
            f"ratio {pair}: throughput {values['throughput']}x, p50 latency "
            f"{values['lat_p50']}x, p99 latency {values['lat_p99']}x"
        )
    for n in names:
        for key in ("errors", "failures"):
            if results[n].get(key):
                print(f"{n} {key}: {results[n][key]}")
        pg = results[n].get("pg_conns")
        if pg:
            print(f"{n} PostgreSQL connections per application_name (peaks; distinct under load):")
            for app in sorted(set(pg["rest"]["by_app_peak"]) | set(pg["load"]["by_app_peak"])):
                rest, load = (
                    pg["rest"]["by_app_peak"].get(app, 0),
                    pg["load"]["by_app_peak"].get(app, 0),
                )
                seen = pg["load"]["opened_by_app"].get(app, 0)
                print(f"  {app:24} at rest {rest:>3}   under load {load:>3}   distinct {seen:>4}")
        if results[n].get("procfile_exited"):
            print(f"{n} Procfile processes that exited: {results[n]['procfile_exited']}")
        for line, count in (results[n].get("daphne_log_errors") or {}).items():
            print(f"{n} daphne log: {count} x {line}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visitors", "-n", type=int, default=10)
    p.add_argument("--agents", "-m", type=int, default=10)
    p.add_argument("--messages", "-k", type=int, default=10)
    p.add_argument(
        "--pace",
        choices=["interval", "ack"],
        default="interval",
        help="interval: open loop, one send every --interval-ms (default); "
        "ack: wait for each ack, then the interval",
    )
    p.add_argument(
        "--interval-ms", type=float, nargs=2, default=[50.0, 200.0], metavar=("LOW", "HIGH")
    )
    p.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="after the last send, stop waiting once nothing arrived for this long (s)",
    )
    p.add_argument("--open-timeout", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=120.0, help="bound of one server's run (s)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each server, wait up to S seconds for the machine to be quiet",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=40.0,
        help="'quiet' = whole machine below this busy %% (100 per core)",
    )
    p.add_argument("--log-dir", help="keep the daphne logs here (default: a temporary directory)")
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--only", choices=["weiyu", "echo"], help="skip the other server")
    p.add_argument(
        "--server",
        choices=["daphne", "uvicorn"],
        default="daphne",
        help="the ASGI server to run the apps in (uvicorn: for comparison, needs uvicorn, "
        "uvloop and httptools installed; 'daphne' figures are then uvicorn's)",
    )
    p.add_argument(
        "--processes",
        metavar="LIST",
        help="serve weiyu through the launcher (python -m weiyu.serve) once per count in this "
        "comma-separated list, e.g. 1,2 — same code, same client, one after the other; "
        "prints the ratios against the first",
    )
    p.add_argument(
        "--procfile",
        action="store_true",
        help="also run the Procfile's other processes beside each weiyu server: a Celery worker "
        "(concurrency 2), beat and the embedding service",
    )
    p.add_argument(
        "--pg-rest-s",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds PostgreSQL connections are sampled at rest, before any client connects "
        "(the baseline of the connection figures)",
    )
    p.add_argument("--skip-migrate", action="store_true")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trace", metavar="PATH", help="write per-message CSV to PATH.<server>.csv")
    p.add_argument("--provision", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.process_counts = [int(v) for v in args.processes.split(",")] if args.processes else []
    except ValueError:
        p.error("--processes takes comma-separated positive integers, e.g. 1,2")
    if any(n < 1 for n in args.process_counts):
        p.error("--processes takes comma-separated positive integers, e.g. 1,2")
    if args.visitors < 1 or args.agents < 1 or args.messages < 1:
        p.error("N, M and K must be positive")
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    env = bench_env()
    fd_soft, _ = raise_fd_limit()
    world = {"channel": "echo", "cookies": []}
    t0 = time.perf_counter()
    if args.only != "echo":
        world = await asyncio.to_thread(run_provision, args, env)
    provision_s = round(time.perf_counter() - t0, 1)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="weiyu-bench-") as tmp:
        logdir = Path(args.log_dir or tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        if args.only != "echo":
            app, app_env = "weiyu.asgi:application", env
            if not args.process_counts:
                results["weiyu"] = await bench_server(
                    name="weiyu", app=app, env=app_env, world=world, args=args, logdir=logdir
                )
            for i, count in enumerate(args.process_counts):
                if i:  # a clean desk again: the previous run's chats count against the caps
                    world = await asyncio.to_thread(run_provision, args, env, migrate=False)
                results[f"weiyu-{count}p"] = await bench_server(
                    name=f"weiyu-{count}p",
                    app=app,
                    env=app_env,
                    world=world,
                    args=args,
                    logdir=logdir,
                    processes=count,
                )
        if args.only != "weiyu":
            echo_world = {"channel": "echo", "cookies": []}
            results["echo"] = await bench_server(
                name="echo",
                app="bench.echo_asgi:application",
                env=env,
                world=echo_world,
                args=args,
                logdir=logdir,
            )
    with contextlib.suppress(Exception):
        await asyncio.to_thread(redis_cleanup, env)
    pairs = []
    if "weiyu" in results and "echo" in results:
        pairs.append(("weiyu", "echo"))
    names = [f"weiyu-{count}p" for count in args.process_counts]
    pairs += [(other, names[0]) for other in names[1:]]
    pairs += [(name, "echo") for name in names if "echo" in results]
    ratios = {}
    for a_name, b_name in pairs:
        a, b = results[a_name], results[b_name]
        ratios[f"{a_name}/{b_name}"] = {
            "throughput": ratio(a.get("delivered_msg_s"), b.get("delivered_msg_s")),
            "lat_p50": ratio(a.get("lat_ms_p50"), b.get("lat_ms_p50")),
            "lat_p99": ratio(a.get("lat_ms_p99"), b.get("lat_ms_p99")),
        }
    summary = {
        "n": args.visitors,
        "m": args.agents,
        "k": args.messages,
        "pace": args.pace,
        "grace_s": args.grace,
        "interval_ms": args.interval_ms,
        "fd_limit": fd_soft,
        "provision_s": provision_s,
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "results": results,
        "ratio": ratios,
    }
    print_table(args, results, ratios)
    print(f"(provisioning {provision_s}s, fd limit {fd_soft})")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return summary


def main() -> int:
    args = parse_args()
    if args.provision:
        print(json.dumps(provision(args.visitors, args.agents, migrate=not args.skip_migrate)))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: (_kill_children(), sys.exit(143)))
    try:
        summary = asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _kill_children()
    bad = any(
        r.get("lost") or r.get("timed_out") or r.get("failures") or r.get("fatal")
        for r in summary["results"].values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
