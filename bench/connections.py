#!/usr/bin/env python
"""Connections benchmark: idle sockets per process (P5) and a reconnect storm (P6).

    .venv/bin/python bench/connections.py [--sockets 10000] [--storm 5000] [--agents 50] [--json]

What it does (docs/benchmarks.md, "Connections", explains how to read the figures):

1. Provisions, in a subprocess and through the project's services, the tenant ``conns``
   (``conns.localhost``) in ``$DATABASE_URL`` (default ``…/weiyu_bench``; created and migrated on
   first use): one workgroup and widget channel, ``--agents`` online agents (cap
   ``ceil(storm/agents)+1``) with a session cookie each, and enough visitors
   (``kefu.services.visitors.visitor_start``). The first ``--storm`` visitors each have an open
   conversation assigned to an agent (their first message through
   ``kefu.services.messages.visitor_message_send``, i.e. the real routing). Everything is reused
   by later runs; only what is missing is made (the first run of the full size takes minutes).
2. **P5, idle sockets.** Starts one web process (the production launcher
   ``python -m weiyu.serve -w 1``, whose listening socket has a backlog of 1024) on a free port,
   opens ``--warm`` sockets, then ``--sockets`` in all (``--agent-share`` of them ``/ws/agent/``
   tabs of the agents, the rest ``/ws/visitor/?token=…``), each waiting for ``hello``, sending
   ``sync`` with its cursors and waiting for ``sync.result``; up to ``--connect-concurrency`` at
   once. Measured: the daphne process's RSS (and PSS/USS from ``smaps_rollup``) with the warm
   sockets open and again with all of them open and idle for ``--settle`` s, divided by the
   sockets added; the connect rate (sockets/s until the last ``sync.result``) and per-socket
   connect latency; daphne's CPU while the sockets sit idle. Before that, ``--session-sample``
   calls of ``POST /api/v1/widget/session`` time the widget session API.
3. **P6, reconnect storm.** On a fresh process: ``--storm`` visitors (each with its conversation)
   and one socket per agent (``--storm-agent-tabs``) connect and sync. Then every socket is
   closed at once; while they are down a sender subprocess stores ``--per-conv`` agent replies in
   ``--share`` of the conversations through ``im.services.messages.message_send`` (the send path
   of every message, ``--sender-threads`` threads, like one more web process's database threads);
   ``--live-share`` more conversations get one reply each *while* the clients come back. Then all
   clients reconnect at once and ``sync`` with the cursor of every conversation they hold
   (docs/protocol.md §3). Measured per client: from the reconnect start until it holds every
   message stored for it (its ``hello``, its ``sync.result``, and each missed message, whether
   it came in ``sync.result`` or live): p50/p99/max, and the storm's total. **gaps**: a message
   stored for a client that it never got (within ``--timeout``); **duplicates**: a message the
   client held before the storm sent again, or one message delivered twice by the same route
   (two ``message.new``, or twice in ``sync.result``). A message that came both live and in
   ``sync.result`` (committed while its client resumed) is allowed by the protocol — clients
   key messages by ``(conversation_id, seq)`` — and is counted apart as *overlap*.
4. **Baseline**: the same clients against ``bench/echo_asgi.py`` (no Django, database or Redis)
   served the same way: P5 connect + ``hello`` (+ ``sync`` for agents), P6 reconnect + ``hello``.
5. Prints a table (``--json``: also one JSON line). Exit status 1 on a gap, a duplicate, a socket
   that failed to connect or a run that timed out.

All traffic goes to 127.0.0.1. RLIMIT_NOFILE is raised to the hard limit for this process and
the servers it starts; the script says so when the hard limit is below what the sockets need.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import websockets
from chat_load import (  # bench/ is not a package: found through sys.path
    PYTHON,
    ROOT,
    Server,
    _cmdline,
    _cpu_seconds,
    _descendants,
    _ensure_database,
    _kill_children,
    agent_present,
    bench_env,
    bench_tenant,
    pct,
    raise_fd_limit,
    redis_cleanup,
    session_cookie,
    start_daphne,
)
from chat_load import http_request as chat_load_http

SCHEMA = "conns"
DOMAIN = "conns.localhost"


# --- 1. provisioning (runs in a subprocess with Django set up) ---------------------------------


def _tenant() -> Any:
    """The tenant ``conns`` on ``conns.localhost`` (created on first use)."""
    return bench_tenant(schema=SCHEMA, domain=DOMAIN, name="Connections bench", admin="conns_admin")


def _django(migrate: bool) -> None:
    _ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate_schemas", interactive=False, verbosity=0)


def _open_first_chats(visitors: list[Any], threads: int) -> None:
    """Each visitor's first message, through the real routing, from ``threads`` threads."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from kefu.services import messages as kefu_messages

    todo = list(visitors)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with schema_context(SCHEMA):
                while True:
                    with lock:
                        if not todo:
                            return
                        visitor = todo.pop()
                    kefu_messages.visitor_message_send(
                        visitor=visitor,
                        conversation_id=None,
                        content="hello",
                        client_msg_id=f"conns-open-{visitor.pk}",
                    )
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]


def provision(*, visitors: int, storm: int, agents: int, migrate: bool) -> dict[str, Any]:
    """Create or reuse the tenant's agents, visitors and open chats; return what clients need:
    ``{"visitors": [[token, conversation id | None, last seq]], "agents": [[cookie, {conversation
    id: last seq}]], "agent_ids": [user id], "channel": public key, "made": {what was created}}``.
    The first ``storm`` visitors have an open conversation, assigned to one of the agents."""
    _django(migrate)
    from django.db import connection
    from django_tenants.utils import tenant_context

    from im.models import Conversation
    from kefu.models import AgentState, Channel, Session, Visitor, Workgroup
    from kefu.services import agents as kefu_agents
    from kefu.services import visitors as kefu_visitors
    from org.models import User

    tenant = _tenant()
    cap = math.ceil(storm / agents) + 1
    made = Counter()
    with tenant_context(tenant):
        workgroup, _ = Workgroup.objects.get_or_create(name="conns")
        channel, _ = Channel.objects.get_or_create(
            name="conns", defaults={"workgroup": workgroup, "welcome_text": "Hi"}
        )
        staff = []
        for i in range(1, agents + 1):
            username = f"conns_agent_{i:03d}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(
                    username=username,
                    password=os.urandom(16).hex(),
                    role="agent",
                    display_name=f"Agent {i}",
                )
                made["agents"] += 1
            staff.append(user)
        workgroup.agents.add(*staff)
        for user in User.objects.filter(username__startswith="conns_agent_").exclude(
            pk__in=[u.pk for u in staff]
        ):  # agents of an earlier, larger run stay out of routing
            kefu_agents.agent_status_set(user=user, status=AgentState.Status.OFFLINE)
        for user in staff:
            AgentState.objects.get_or_create(user=user)
            AgentState.objects.filter(user=user, max_concurrent__lt=cap).update(max_concurrent=cap)
            agent_present(user)
            kefu_agents.agent_status_set(user=user, status=AgentState.Status.ONLINE)

        people = list(Visitor.objects.filter(channel=channel).order_by("pk")[:visitors])
        for _ in range(visitors - len(people)):
            people.append(kefu_visitors.visitor_start(channel=channel, language="en")[0])
            made["visitors"] += 1
        live = dict(
            Session.objects.filter(
                visitor__in=people[:storm], status=Session.Status.OPEN, agent__in=staff
            ).values_list("visitor_id", "conversation_id")
        )
        waiting = [v for v in people[:storm] if v.pk not in live]
        made["chats"] = len(waiting)
        if waiting:
            # a visitor with a session still queued or with another agent gets a new chat
            _open_first_chats(waiting, threads=4)
        sessions = list(
            Session.objects.filter(
                visitor__in=people[:storm], status=Session.Status.OPEN, agent__in=staff
            ).values_list("visitor_id", "conversation_id", "agent_id")
        )
        conv_of = {visitor_id: conv for visitor_id, conv, _agent in sessions}
        seqs = dict(
            Conversation.objects.filter(pk__in=conv_of.values()).values_list("pk", "last_seq")
        )
        missing = [v.pk for v in people[:storm] if v.pk not in conv_of]
        if missing:
            raise RuntimeError(f"{len(missing)} visitors have no open chat (queued?)")
        by_agent: dict[int, dict[str, int]] = {u.pk: {} for u in staff}
        for _visitor_id, conv, agent_id in sessions:
            by_agent[agent_id][str(conv)] = seqs[conv]
        result = {
            "channel": channel.public_key,
            "visitors": [
                [
                    kefu_visitors.visitor_token_make(v),
                    conv_of.get(v.pk),
                    seqs.get(conv_of.get(v.pk), 0),
                ]
                for v in people
            ],
            "agents": [[session_cookie(u), by_agent[u.pk]] for u in staff],
            "agent_ids": [u.pk for u in staff],
            "made": dict(made),
        }
    connection.set_schema_to_public()
    return result


def run_provision(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [PYTHON, __file__, "--provision", "--sockets", str(args.sockets)]
    cmd += ["--storm", str(args.storm), "--agents", str(args.agents)]
    cmd += ["--agent-share", str(args.agent_share)]
    if args.skip_migrate:
        cmd.append("--skip-migrate")
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"provisioning failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the sender: stores agent replies while the clients are away (a subprocess) -----------------


def sender_main(threads: int) -> None:
    """Read JSON lines ``{"tag": str, "sends": [[conversation id, agent user id, count]]}`` from
    stdin; store each reply with ``im.services.messages.message_send`` as that agent, from
    ``threads`` threads (one conversation's replies in order, in one thread); answer each line
    with ``{"tag", "stored": [[conversation id, seq]], "seconds"}``. Prints ``ready`` first."""
    _django(migrate=False)
    from django.db import connection
    from django_tenants.utils import schema_context

    from org.models import User

    with schema_context(SCHEMA):
        users = {u.pk: u for u in User.objects.filter(username__startswith="conns_agent_")}
    connection.close()
    print("ready", flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        t0 = time.perf_counter()
        stored, failures = _store_replies(order["tag"], order["sends"], users, threads)
        answer = {
            "tag": order["tag"],
            "stored": stored,
            "seconds": round(time.perf_counter() - t0, 2),
            "failures": failures[:5],
        }
        print(json.dumps(answer), flush=True)


def _store_replies(
    tag: str, sends: list[list[int]], users: dict[int, Any], threads: int
) -> tuple[list[list[int]], list[str]]:
    """Store ``sends`` from ``threads`` threads; ``([[conversation id, seq]], [failure])``."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from im.services import messages as im_messages
    from kefu import senders

    todo = list(sends)
    stored: list[list[int]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            with schema_context(SCHEMA):
                while True:
                    with lock:
                        if not todo:
                            return
                        conversation_id, agent_id, count = todo.pop()
                    sender = senders.agent_sender(users[agent_id])
                    for k in range(count):
                        message, _created = im_messages.message_send(
                            conversation_id=conversation_id,
                            sender=sender,
                            content=f"storm {tag} {k}",
                            client_msg_id=f"{tag}-{conversation_id}-{k}",
                        )
                        with lock:
                            stored.append([conversation_id, message.seq])
        except Exception as exc:  # reported in the answer
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return stored, failures


class Sender:
    """The sender subprocess (:func:`sender_main`), started ahead so Django is set up."""

    def __init__(self, env: dict[str, str], threads: int) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, __file__, "--sender", "--sender-threads", str(threads)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"sender did not start: {line!r}")

    def send(self, tag: str, sends: list[list[int]]) -> dict[str, Any]:
        """Store the replies of ``sends`` (blocking; call it in a thread)."""
        assert self.proc.stdin
        assert self.proc.stdout
        self.proc.stdin.write(json.dumps({"tag": tag, "sends": sends}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("sender exited")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --- 2. servers and /proc sampling --------------------------------------------------------------


def start_server(
    name: str, app: str, env: dict[str, str], logdir: Path, processes: int = 1
) -> Server:
    """``processes`` daphnes behind the production launcher (``python -m weiyu.serve -w N``)."""
    return start_daphne(name, app, env, logdir, processes=processes)


def daphne_pid(server: Server) -> int:
    """The daphne child of the launcher (the process holding the sockets)."""
    for pid in _descendants(server.proc.pid):
        if pid != server.proc.pid and "daphne" in _cmdline(pid):
            return pid
    raise RuntimeError(f"no daphne under the launcher:\n{server.log_tail()}")


def memory_kb(pid: int) -> dict[str, int]:
    """``{"rss", "pss", "uss"}`` of ``pid`` in KiB (``/proc/<pid>/status``, ``smaps_rollup``)."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
        fields = {}
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
        out["pss"] = fields.get("Pss", 0)
        out["uss"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return out


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


async def http_request(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """chat_load's HTTP/1.0 client for ``conns.localhost``: (status, JSON or None)."""
    return await chat_load_http(port, method, path, body, timeout=timeout, host=DOMAIN)


async def wait_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server ({server.name}) exited:\n{server.log_tail()}")
        with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
            status, _ = await http_request(server.port, "GET", "/healthz", timeout=5)
            if status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"server ({server.name}) not healthy after {timeout}s:\n{server.log_tail()}")


class Cpu:
    """CPU seconds of a set of processes between :meth:`start` and :meth:`stop`, as % of one core:
    ``daphne``, ``postgres`` (backends of the bench database), ``redis``, ``client`` (this
    process), ``machine`` (100 per core)."""

    def __init__(self, pids: list[int], dbname: str, redis_port: int) -> None:
        self.pids, self.dbname, self.redis_port = pids, dbname, redis_port

    def _groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {
            "daphne": list(self.pids),
            "client": [os.getpid()],
            "postgres": [],
            "redis": [],
        }
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cmd = _cmdline(int(entry))
                if cmd.startswith("postgres:") and f" {self.dbname} " in cmd:
                    groups["postgres"].append(int(entry))
                elif "redis-server" in cmd and f":{self.redis_port}" in cmd:
                    groups["redis"].append(int(entry))
        return groups

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values) - idle, sum(values)

    def start(self) -> None:
        self.t0, self.m0 = time.monotonic(), self._machine()
        self.s0 = {
            pid: _cpu_seconds(pid) or 0.0 for pids in self._groups().values() for pid in pids
        }

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-6)
        busy0, total0 = self.m0
        busy1, total1 = self._machine()
        out = {}
        #: CPU seconds used per group (``stop`` fills it)
        self.seconds: dict[str, float] = {}
        for name, pids in self._groups().items():
            used = sum(
                (_cpu_seconds(pid) or 0.0) - self.s0.get(pid, 0.0)
                for pid in pids
                if _cpu_seconds(pid) is not None
            )
            out[name] = round(100 * used / wall, 1)
            self.seconds[name] = used
        out["machine"] = round(
            100 * (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1), 1
        )
        return out


# --- 3. the clients ------------------------------------------------------------------------------

Key = tuple[int, int]  # (conversation id, seq)


@dataclass
class Client:
    """One websocket client: a visitor's widget or an agent's tab, keeping cursors like
    ``static/weiyu/client.js`` (the highest seq held without a gap, per conversation)."""

    kind: str  # "visitor" | "agent"
    path: str
    cookie: str | None
    cursors: dict[str, int]
    syncs: bool  # sends ``sync`` after ``hello``
    ws: Any = None
    reader: asyncio.Task[None] | None = None
    closing: bool = False
    failed: bool = False  # the last open() raised (refused, timed out)
    t_start: float = 0.0
    t_hello: float | None = None
    t_sync: float | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    live: Counter[Key] = field(default_factory=Counter)
    in_sync: Counter[Key] = field(default_factory=Counter)
    first_seen: dict[Key, float] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    async def open(self, port: int, timeout: float) -> None:
        """Connect, wait for ``hello``, then (``syncs``) send ``sync`` and wait for its result.
        Raises on a refused or failed handshake, a missing ``hello`` or ``timeout``."""
        from websockets.asyncio.client import connect

        self.closing = self.failed = False
        self.t_hello = self.t_sync = None
        self.synced.clear()
        self.live.clear()
        self.in_sync.clear()
        self.first_seen.clear()
        self.t_start = time.perf_counter()
        headers = {"Cookie": self.cookie} if self.cookie else {}
        self.ws = await connect(
            f"ws://{DOMAIN}:{port}{self.path}",
            host="127.0.0.1",
            port=port,
            origin=f"http://{DOMAIN}:{port}",  # a browser sends the port
            additional_headers=headers,
            proxy=None,
            compression=None,
            open_timeout=timeout,
            close_timeout=5,
            ping_interval=None,
            max_size=2**24,
        )
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if hello.get("type") != "hello":
            raise RuntimeError(f"{self.kind}: expected hello, got {str(hello)[:200]}")
        self.t_hello = time.perf_counter()
        self.reader = asyncio.ensure_future(self._read())
        if self.syncs:
            await self.ws.send(json.dumps({"type": "sync", "cursors": self.cursors}))
            await asyncio.wait_for(self.synced.wait(), timeout)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message.new":
                    key = (frame["message"]["conversation_id"], frame["message"]["seq"])
                    self.live[key] += 1
                    self.first_seen.setdefault(key, now)
                elif kind == "sync.result":
                    for message in frame.get("messages", []):
                        key = (message["conversation_id"], message["seq"])
                        self.in_sync[key] += 1
                        self.first_seen.setdefault(key, now)
                    if self.t_sync is None:
                        self.t_sync = now
                    self.synced.set()
                elif kind == "error":
                    self.errors[f"error:{frame.get('code')}"] += 1
                    self.synced.set()  # a refused sync must not hang the run
        except websockets.ConnectionClosed:
            pass
        if not self.closing:
            self.errors["closed_by_server"] += 1

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 10)
            self.reader = None

    def advance_cursors(self) -> None:
        """Move each cursor over the seqs now held without a gap (what a client resumes from)."""
        held: dict[str, set[int]] = {}
        for cid, seq in self.first_seen:
            held.setdefault(str(cid), set()).add(seq)
        for cid, seqs in held.items():
            cursor = self.cursors.get(cid, 0)
            while cursor + 1 in seqs:
                cursor += 1
            self.cursors[cid] = cursor


def make_clients(
    world: dict[str, Any], *, visitors: int, agent_sockets: int, echo: bool, sync_visitors: bool
) -> list[Client]:
    """``agent_sockets`` agent tabs (round robin over the agents) and ``visitors`` visitors,
    interleaved as they would arrive; for the echo baseline, tokens and cookies it accepts."""
    agents: list[Client] = []
    for i in range(agent_sockets):
        cookie, cursors = world["agents"][i % len(world["agents"])]
        agents.append(
            Client(
                kind="agent",
                path="/ws/agent/",
                cookie=f"weiyu_session=echo{i}" if echo else cookie,
                cursors=dict(cursors),
                syncs=True,
            )
        )
    people: list[Client] = []
    for i in range(visitors):
        token, conv, seq = world["visitors"][i]
        people.append(
            Client(
                kind="visitor",
                path=f"/ws/visitor/?token={quote(f'v{i + 1}' if echo else token)}",
                cookie=None,
                cursors={str(conv): seq} if conv else {},
                syncs=sync_visitors,
            )
        )
    out: list[Client] = []
    step = max(1, len(people) // max(1, len(agents)))
    for i, agent in enumerate(agents):
        out.extend(people[i * step : (i + 1) * step])
        out.append(agent)
    out.extend(people[len(agents) * step :])
    return out


async def open_all(
    clients: list[Client], port: int, concurrency: int | None, timeout: float
) -> tuple[list[float], Counter[str]]:
    """Open every client, at most ``concurrency`` at a time (None: all at once); return the
    per-client latencies (s, start → ready) and the failures by kind."""
    gate = asyncio.Semaphore(concurrency) if concurrency else None
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    async def one(client: Client) -> None:
        try:
            if gate is None:
                await client.open(port, timeout)
            else:
                async with gate:
                    await client.open(port, timeout)
            latencies.append(time.perf_counter() - client.t_start)
        except Exception as exc:
            client.failed = True
            failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

    await asyncio.gather(*(one(c) for c in clients))
    return latencies, failures


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _cpu_of(server: Server, pid: int | list[int], env: dict[str, str]) -> Cpu:
    dbname = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    pids = pid if isinstance(pid, list) else [pid]
    return Cpu(pids, dbname, urlsplit(env["REDIS_URL"]).port or 6379)


def _server_errors(server: Server) -> dict[str, int]:
    errors: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in server.log.read_text(errors="replace").splitlines():
            if " ERROR " in line or "Traceback" in line or line.startswith(("psycopg.", "redis.")):
                errors[line.split(" ERROR ", 1)[-1][:160]] += 1
    return dict(errors.most_common(6))


async def session_sample(port: int, channel: str, count: int) -> dict[str, Any]:
    """``count`` calls of ``POST /api/v1/widget/session`` (10 at a time): rate and latency, and
    how many were refused (none is rate limited today: the view has no throttle)."""
    gate = asyncio.Semaphore(10)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            status, _ = await http_request(
                port, "POST", "/api/v1/widget/session", {"channel": channel, "language": "en"}
            )
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - t0
    return {
        "calls": count,
        "per_s": round(count / wall, 1),
        "ms_p50": _ms(pct(latencies, 50)),
        "ms_p99": _ms(pct(latencies, 99)),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


# --- 4. P5: idle sockets -------------------------------------------------------------------------


async def run_idle(
    *, name: str, app: str, env: dict[str, str], world: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    echo = name == "echo"
    n_agents = round(args.sockets * args.agent_share)
    clients = make_clients(
        world,
        visitors=args.sockets - n_agents,
        agent_sockets=n_agents,
        echo=echo,
        sync_visitors=not echo,
    )
    warm, rest = clients[: args.warm], clients[args.warm :]
    result: dict[str, Any] = {"server": name, "sockets": len(clients), "agent_sockets": n_agents}
    load_before = os.getloadavg()
    server = start_server(f"{name}-idle", app, env, args.logdir)
    try:
        await wait_healthy(server)
        pid = daphne_pid(server)
        if not echo and args.session_sample:
            result["session_api"] = await session_sample(
                server.port, world["channel"], args.session_sample
            )
        _lat, warm_failures = await open_all(warm, server.port, args.connect_concurrency, 60)
        await asyncio.sleep(args.settle)
        mem0, fds0 = memory_kb(pid), open_fds(pid)
        t0 = time.perf_counter()
        latencies, failures = await open_all(
            rest, server.port, args.connect_concurrency, args.timeout
        )
        open_s = time.perf_counter() - t0
        cpu = _cpu_of(server, pid, env)
        cpu.start()
        await asyncio.sleep(args.settle)
        idle_cpu = cpu.stop()
        mem1, fds1 = memory_kb(pid), open_fds(pid)
        added = len(latencies)
        closed = sum(c.errors["closed_by_server"] for c in clients)
        result.update(
            {
                "warm": len(warm),
                "opened": added + len(warm) - sum(warm_failures.values()),
                "failures": dict(failures + warm_failures),
                "closed_by_server": closed,
                "open_s": round(open_s, 2),
                "connect_per_s": round(added / open_s, 1) if open_s else None,
                "connect_ms_p50": _ms(pct(latencies, 50)),
                "connect_ms_p99": _ms(pct(latencies, 99)),
                "mem_before_kb": mem0,
                "mem_after_kb": mem1,
                "fds_before": fds0,
                "fds_after": fds1,
                "per_socket_kb": {
                    k: round((mem1[k] - mem0[k]) / added, 1) if added else None for k in mem1
                },
                "idle_cpu_pct": idle_cpu,
            }
        )
    except Exception as exc:
        result["fatal"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await close_all(clients)
        server.stop()
    result["loadavg"] = [round(v, 2) for v in load_before]
    result["server_log_errors"] = _server_errors(server)
    return result


# --- 5. P6: the reconnect storm ------------------------------------------------------------------


def storm_sends(
    world: dict[str, Any], args: argparse.Namespace
) -> tuple[list[list[int]], list[list[int]]]:
    """``(while down, while resuming)``: ``[conversation id, agent user id, replies]`` for a
    seeded ``--share`` of the storm's conversations, and one reply in ``--live-share`` more."""
    agent_of: dict[int, int] = {}
    for idx, (_cookie, cursors) in enumerate(world["agents"]):
        for conv in cursors:
            agent_of[int(conv)] = world["agent_ids"][idx]
    convs = [v[1] for v in world["visitors"][: args.storm] if v[1]]
    rng = random.Random(args.seed)
    rng.shuffle(convs)
    down = round(len(convs) * args.share)
    live = round(len(convs) * args.live_share)
    return (
        [[c, agent_of[c], args.per_conv] for c in convs[:down]],
        [[c, agent_of[c], 1] for c in convs[down : down + live]],
    )


def _client_outcome(
    client: Client, before: dict[str, int], expected: dict[int, list[int]], t1: float, echo: bool
) -> dict[str, Any]:
    want = {
        (int(cid), seq)
        for cid, cursor in before.items()
        for seq in expected.get(int(cid), [])
        if seq > cursor
    }
    got = set(client.first_seen)
    # a client that could not reconnect is a failure, counted apart, not a gap
    missing = set() if client.failed else want - got
    dup = sum(
        1
        for key in got
        if client.live[key] > 1 or client.in_sync[key] > 1 or key[1] <= before.get(str(key[0]), 0)
    )
    overlap = sum(1 for key in got if client.live[key] and client.in_sync[key])
    unexpected = sum(1 for key in got - want if key[1] > before.get(str(key[0]), 0))
    ready = client.t_hello if echo or not client.syncs else client.t_sync
    done = None
    if ready is not None and not missing:
        done = max([ready, *(client.first_seen[k] for k in want)]) - t1
    return {
        "want": len(want),
        "missing": len(missing),
        "dup": dup,
        "overlap": overlap,
        "unexpected": unexpected,
        "done": done,
        "failed": client.failed,
        "via_sync": sum(1 for k in want & got if client.in_sync[k] and not client.live[k]),
    }


async def run_storm(
    *,
    name: str,
    app: str,
    env: dict[str, str],
    world: dict[str, Any],
    args: argparse.Namespace,
    sender: Sender | None,
) -> dict[str, Any]:
    echo = name == "echo"
    clients = make_clients(
        world,
        visitors=args.storm,
        agent_sockets=len(world["agents"]) * args.storm_agent_tabs,
        echo=echo,
        sync_visitors=not echo,
    )
    if echo:  # the baseline: connect + hello only
        for client in clients:
            client.syncs = False
    result: dict[str, Any] = {"server": name, "clients": len(clients)}
    load_before = os.getloadavg()
    server = start_server(f"{name}-storm", app, env, args.logdir, args.storm_processes)
    try:
        await wait_healthy(server)
        pid = [p for p in _descendants(server.proc.pid) if "daphne" in _cmdline(p)]
        t0 = time.perf_counter()
        latencies, failures = await open_all(
            clients, server.port, args.connect_concurrency, args.timeout
        )
        result["setup_s"] = round(time.perf_counter() - t0, 2)
        result["setup_failures"] = dict(failures)
        # the storm is made of the clients that connected (the others are reported above)
        clients = [c for c in clients if not c.failed]
        result["clients"] = len(clients)
        if not clients:
            raise RuntimeError("no client connected")
        # the storm: every socket closed at once
        t_drop = time.perf_counter()
        await close_all(clients)
        result["drop_s"] = round(time.perf_counter() - t_drop, 2)
        for client in clients:
            client.advance_cursors()
        before = [dict(c.cursors) for c in clients]
        down_sends, live_sends = storm_sends(world, args) if sender else ([], [])
        stored: dict[int, list[int]] = {}
        if sender and down_sends:
            answer = await asyncio.to_thread(
                sender.send, f"d{os.getpid()}x{time.time():.0f}", down_sends
            )
            result["sent_while_down"] = len(answer["stored"])
            result["sender_s"] = answer["seconds"]
            result["sender_failures"] = answer["failures"]
            for conv, seq in answer["stored"]:
                stored.setdefault(conv, []).append(seq)
        # everyone back at once
        reconnect_failures: Counter[str] = Counter()

        async def back(client: Client) -> None:
            try:
                await client.open(server.port, args.timeout)
            except Exception as exc:
                client.failed = True
                reconnect_failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

        cpu = _cpu_of(server, pid, env)
        cpu.start()
        t1 = time.perf_counter()
        resumes = [asyncio.ensure_future(back(c)) for c in clients]
        if sender and live_sends:
            answer = await asyncio.to_thread(
                sender.send, f"l{os.getpid()}x{time.time():.0f}", live_sends
            )
            result["sent_while_resuming"] = len(answer["stored"])
            result["sender_failures"] = result.get("sender_failures", []) + answer["failures"]
            for conv, seq in answer["stored"]:
                stored.setdefault(conv, []).append(seq)
        await asyncio.gather(*resumes)

        def outcomes() -> list[dict[str, Any]]:
            return [
                _client_outcome(c, b, stored, t1, echo)
                for c, b in zip(clients, before, strict=True)
            ]

        deadline = time.perf_counter() + args.timeout
        while True:
            rows = outcomes()
            settled = all(r["done"] is not None or r["failed"] for r in rows)
            if settled or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.quiet)  # a late duplicate would still be seen
        rows = outcomes()
        result["resume_cpu_pct"] = cpu.stop()
        # CPU per client: what a storm costs whatever else shares the machine
        result["resume_cpu_ms_per_client"] = {
            name: round(1000 * cpu.seconds[name] / max(len(clients), 1), 2)
            for name in ("daphne", "postgres", "redis")
        }
        done = [r["done"] for r in rows if r["done"] is not None]
        hellos = [c.t_hello - t1 for c in clients if c.t_hello is not None]
        syncs = [c.t_sync - t1 for c in clients if c.t_sync is not None]
        result.update(
            {
                "reconnect_failures": dict(reconnect_failures),
                "resumed": len(done),
                "resume_ms_p50": _ms(pct(done, 50)),
                "resume_ms_p99": _ms(pct(done, 99)),
                "resume_ms_max": _ms(max(done) if done else None),
                "hello_ms_p50": _ms(pct(hellos, 50)),
                "hello_ms_p99": _ms(pct(hellos, 99)),
                "sync_ms_p50": _ms(pct(syncs, 50)),
                "sync_ms_p99": _ms(pct(syncs, 99)),
                "missed_total": sum(r["want"] for r in rows),
                "missed_via_sync_only": sum(r["via_sync"] for r in rows),
                "gaps": sum(r["missing"] for r in rows),
                "duplicates": sum(r["dup"] for r in rows),
                "overlap": sum(r["overlap"] for r in rows),
                "unexpected": sum(r["unexpected"] for r in rows),
                "closed_by_server": sum(c.errors["closed_by_server"] for c in clients),
                "client_errors": dict(sum((c.errors for c in clients), Counter())),
                "connect_ms_p50_before": _ms(pct(latencies, 50)),
            }
        )
        # drop → every client whole again: closing, storing what they miss, resuming
        result["storm_s"] = (
            round(result["drop_s"] + (result.get("sender_s") or 0) + max(done), 2) if done else None
        )
    except Exception as exc:
        result["fatal"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await close_all(clients)
        server.stop()
    result["loadavg"] = [round(v, 2) for v in load_before]
    result["server_log_errors"] = _server_errors(server)
    return result


# --- 6. output and orchestration -----------------------------------------------------------------


def _kb(r: dict[str, Any], key: str) -> Any:
    return (r.get("per_socket_kb") or {}).get(key)


IDLE_ROWS = [
    (
        "sockets open (agents) / failed",
        lambda r: f"{r['opened']} ({r['agent_sockets']}) / {sum(r['failures'].values())}",
    ),
    ("RSS per socket (KiB)", lambda r: _kb(r, "rss")),
    ("PSS / USS per socket (KiB)", lambda r: f"{_kb(r, 'pss')} / {_kb(r, 'uss')}"),
    (
        "RSS before → after (MiB)",
        lambda r: f"{r['mem_before_kb']['rss'] // 1024} → {r['mem_after_kb']['rss'] // 1024}",
    ),
    ("connect rate (sockets/s)", lambda r: r["connect_per_s"]),
    ("connect → ready p50 / p99 (ms)", lambda r: f"{r['connect_ms_p50']} / {r['connect_ms_p99']}"),
    (
        "idle CPU % daphne / redis / pg",
        lambda r: "{} / {} / {}".format(
            r["idle_cpu_pct"]["daphne"], r["idle_cpu_pct"]["redis"], r["idle_cpu_pct"]["postgres"]
        ),
    ),
    ("closed by server", lambda r: r["closed_by_server"]),
    ("load average (1 min) before", lambda r: r["loadavg"][0]),
]

STORM_ROWS = [
    ("clients / resumed", lambda r: f"{r['clients']} / {r['resumed']}"),
    (
        "missed msgs (sync only) / sent",
        lambda r: (
            f"{r['missed_total']} "
            f"({r['missed_via_sync_only']}) / {r.get('sent_while_down', 0)}+"
            f"{r.get('sent_while_resuming', 0)}"
        ),
    ),
    ("resume p50 (ms)", lambda r: r["resume_ms_p50"]),
    ("resume p99 (ms)", lambda r: r["resume_ms_p99"]),
    ("resume max = storm (ms)", lambda r: r["resume_ms_max"]),
    ("hello p50 / p99 (ms)", lambda r: f"{r['hello_ms_p50']} / {r['hello_ms_p99']}"),
    ("sync.result p50 / p99 (ms)", lambda r: f"{r['sync_ms_p50']} / {r['sync_ms_p99']}"),
    ("gaps / duplicates / overlap", lambda r: f"{r['gaps']} / {r['duplicates']} / {r['overlap']}"),
    ("drop s / sender s (while down)", lambda r: f"{r['drop_s']} / {r.get('sender_s', '-')}"),
    (
        "CPU % resume daphne / pg / redis",
        lambda r: "{} / {} / {}".format(
            r["resume_cpu_pct"]["daphne"],
            r["resume_cpu_pct"]["postgres"],
            r["resume_cpu_pct"]["redis"],
        ),
    ),
    (
        "CPU ms per client: daphne / pg / redis",
        lambda r: "{} / {} / {}".format(
            r["resume_cpu_ms_per_client"]["daphne"],
            r["resume_cpu_ms_per_client"]["postgres"],
            r["resume_cpu_ms_per_client"]["redis"],
        ),
    ),
    (
        "CPU % resume client / machine",
        lambda r: "{} / {}".format(r["resume_cpu_pct"]["client"], r["resume_cpu_pct"]["machine"]),
    ),
    (
        "reconnect failures / closed",
        lambda r: f"{sum(r['reconnect_failures'].values())} / {r['closed_by_server']}",
    ),
    ("load average (1 min) before", lambda r: r["loadavg"][0]),
]


def ratio(a: Any, b: Any) -> float | None:
    return (
        round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def _table(title: str, rows: list[Any], results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print(f"\n{title}")
    width = max(len(label) for label, _ in rows)
    print(f"{'':{width}}  " + "  ".join(f"{n:>22}" for n in names))
    for label, get in rows:
        cells = []
        for n in names:
            try:
                cells.append(f"{get(results[n])!s:>22}")
            except (KeyError, TypeError, ValueError):
                cells.append(f"{'-':>22}")
        print(f"{label:{width}}  " + "  ".join(cells))
    for n in names:
        r = results[n]
        for key in (
            "fatal",
            "failures",
            "setup_failures",
            "reconnect_failures",
            "sender_failures",
            "client_errors",
        ):
            if r.get(key):
                print(f"{n} {key}: {r[key]}")
        for line, count in (r.get("server_log_errors") or {}).items():
            print(f"{n} server log: {count} x {line}")


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    idle, storm = summary["idle"], summary["storm"]
    if idle:
        _table(
            f"P5 idle sockets: {args.sockets} per process ({args.agent_share:.0%} agent tabs), "
            f"goal ≤ 150 KiB RSS each",
            IDLE_ROWS,
            idle,
        )
        api = (idle.get("weiyu") or {}).get("session_api")
        if api:
            print(
                f"widget session API: {api['calls']} calls, {api['per_s']}/s, p50 "
                f"{api['ms_p50']} ms, p99 {api['ms_p99']} ms, statuses {api['statuses']} "
                f"(10,000 would take ~{round(10000 / api['per_s'])} s)"
            )
    if storm:
        _table(
            f"P6 reconnect storm: {args.storm} visitors + agent tabs on {args.storm_processes} "
            f"web process(es), {args.share:.0%} of the "
            f"conversations get {args.per_conv} replies while down, {args.live_share:.0%} one "
            f"while resuming; goal: all resumed within 5 s, 0 gaps, 0 duplicates",
            STORM_ROWS,
            storm,
        )
    for key, value in summary["ratios"].items():
        print(f"ratio {key}: {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sockets", type=int, default=10000, help="P5: sockets in one process")
    p.add_argument("--agent-share", type=float, default=0.05, help="P5: share of agent tabs")
    p.add_argument("--storm", type=int, default=5000, help="P6: visitors (each with a chat)")
    p.add_argument("--agents", type=int, default=50, help="agents serving the storm's chats")
    p.add_argument("--storm-agent-tabs", type=int, default=1, help="P6: sockets per agent")
    p.add_argument(
        "--storm-processes",
        type=int,
        default=1,
        help="P6: web processes on the one port (production runs one per core)",
    )
    p.add_argument("--share", type=float, default=0.2, help="P6: share of chats written to")
    p.add_argument("--per-conv", type=int, default=2, help="P6: replies per chat while down")
    p.add_argument(
        "--live-share",
        type=float,
        default=0.02,
        help="P6: chats written to while the clients resume (one reply each)",
    )
    p.add_argument("--sender-threads", type=int, default=4)
    p.add_argument("--warm", type=int, default=200, help="P5: sockets open before 'RSS before'")
    p.add_argument("--settle", type=float, default=5.0, help="P5: idle seconds before measuring")
    p.add_argument("--quiet", type=float, default=1.0, help="P6: wait for late frames (s)")
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--session-sample", type=int, default=200, help="widget session API calls")
    p.add_argument("--timeout", type=float, default=300.0, help="bound of one phase (s)")
    p.add_argument("--phase", choices=["idle", "storm", "both"], default="both")
    p.add_argument("--only", choices=["weiyu", "echo"], help="skip the other server")
    p.add_argument("--log-dir", help="keep the server logs here (default: a temporary directory)")
    p.add_argument("--skip-migrate", action="store_true")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--provision", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.sockets, args.storm, args.agents) < 1 or not 0 <= args.agent_share < 1:
        p.error("--sockets, --storm and --agents must be positive; --agent-share in [0, 1)")
    if args.share + args.live_share > 1:
        p.error("--share + --live-share must not exceed 1")
    args.warm = min(args.warm, args.sockets // 2)
    return args


def _echo_world(args: argparse.Namespace) -> dict[str, Any]:
    visitors = max(args.sockets, args.storm)
    return {
        "channel": "echo",
        "visitors": [[None, None, 0]] * visitors,
        "agents": [[None, {}]] * args.agents,
        "agent_ids": list(range(args.agents)),
    }


def _ratios(idle: dict[str, Any], storm: dict[str, Any]) -> dict[str, float | None]:
    """Weiyu's figures over the echo baseline's, measured in the same run."""
    ratios = {}
    if "weiyu" in idle and "echo" in idle:
        ratios["P5 RSS per socket weiyu/echo"] = ratio(
            _kb(idle["weiyu"], "rss"), _kb(idle["echo"], "rss")
        )
        ratios["P5 connect rate weiyu/echo"] = ratio(
            idle["weiyu"].get("connect_per_s"), idle["echo"].get("connect_per_s")
        )
    if "weiyu" in storm and "echo" in storm:
        for key in ("resume_ms_p50", "resume_ms_p99", "resume_ms_max"):
            ratios[f"P6 {key} weiyu/echo"] = ratio(storm["weiyu"].get(key), storm["echo"].get(key))
    return ratios


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    env = bench_env()
    need = max(args.sockets, args.storm + args.agents * args.storm_agent_tabs) + 1024
    fd_soft, fd_hard = raise_fd_limit(need)
    if fd_soft < need:
        print(
            f"warning: RLIMIT_NOFILE hard limit {fd_hard} is below the {need} descriptors the "
            "sockets need (client and server each); expect refused connections",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    world = _echo_world(args)
    if args.only != "echo":
        world = await asyncio.to_thread(run_provision, args, env)
    provision_s = round(time.perf_counter() - t0, 1)
    idle: dict[str, dict[str, Any]] = {}
    storm: dict[str, dict[str, Any]] = {}
    apps = [
        (n, a)
        for n, a in (("weiyu", "weiyu.asgi:application"), ("echo", "bench.echo_asgi:application"))
        if args.only in (None, n)
    ]
    worlds = {"weiyu": world, "echo": _echo_world(args)}
    with tempfile.TemporaryDirectory(prefix="weiyu-conns-") as tmp:
        args.logdir = Path(args.log_dir or tmp)
        args.logdir.mkdir(parents=True, exist_ok=True)
        if args.phase in ("idle", "both"):
            for name, app in apps:
                idle[name] = await run_idle(
                    name=name, app=app, env=env, world=worlds[name], args=args
                )
        if args.phase in ("storm", "both"):
            for name, app in apps:
                sender = None
                if name == "weiyu":
                    sender = await asyncio.to_thread(Sender, env, args.sender_threads)
                try:
                    storm[name] = await run_storm(
                        name=name, app=app, env=env, world=worlds[name], args=args, sender=sender
                    )
                finally:
                    if sender:
                        sender.stop()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(redis_cleanup, env)
    ratios = _ratios(idle, storm)
    summary = {
        "sockets": args.sockets,
        "agent_share": args.agent_share,
        "storm": args.storm,
        "agents": args.agents,
        "share": args.share,
        "per_conv": args.per_conv,
        "live_share": args.live_share,
        "storm_processes": args.storm_processes,
        "fd_limit": fd_soft,
        "provision_s": provision_s,
        "made": world.get("made"),
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "idle": idle,
        "storm_results": storm,
        "ratios": ratios,
    }
    print_report(args, {"idle": idle, "storm": storm, "ratios": ratios})
    print(f"(provisioning {provision_s}s, made {world.get('made')}, fd limit {fd_soft})")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return summary


def main() -> int:
    args = parse_args()
    if args.provision:
        n_agents = round(args.sockets * args.agent_share)
        visitors = max(args.sockets - n_agents, args.storm)
        print(
            json.dumps(
                provision(
                    visitors=visitors,
                    storm=args.storm,
                    agents=args.agents,
                    migrate=not args.skip_migrate,
                )
            )
        )
        return 0
    if args.sender:
        sender_main(args.sender_threads)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: (_kill_children(), sys.exit(143)))
    try:
        summary = asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _kill_children()
    results = [*summary["idle"].values(), *summary["storm_results"].values()]
    bad = any(
        r.get("fatal")
        or r.get("failures")
        or r.get("setup_failures")
        or r.get("reconnect_failures")
        or r.get("gaps")
        or r.get("duplicates")
        or r.get("resumed", r.get("clients")) != r.get("clients")
        for r in results
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
