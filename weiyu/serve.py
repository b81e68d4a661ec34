"""Run N daphne processes on one listening socket: the ``web`` process of the Procfile.

    python -m weiyu.serve -b 0.0.0.0 -p 8000 [-w N] [daphne options…] weiyu.asgi:application

One Python process runs one event loop and one database thread, so one daphne uses at most about
one core. This launcher binds the TCP socket once (``SO_REUSEADDR``) and starts ``N`` children
``python -m daphne --fd <fd> …`` that all accept on that same socket (socket activation; the kernel
hands each new connection to whichever child accepts first). Everything after the launcher's own
options is passed to every daphne unchanged (the application path, daphne options…).

``N`` is ``--workers``, else ``$WEB_CONCURRENCY``, else ``os.cpu_count()`` (see
:func:`web_concurrency`). The children share channels-redis and PostgreSQL; nothing one of them
keeps in memory is needed by another (docs/operations.md, "Web processes").

Behaviour:

- logs ``serve: daphne pid <pid> serving <host>:<port> (child i/N)`` for every child it starts,
  on stderr;
- SIGTERM / SIGINT are forwarded to every child (each in its own process group, so a terminal's
  Ctrl-C reaches them once, through here); the launcher exits when all children have exited,
  SIGKILLing those still running after ``--stop-timeout`` seconds. Exit status 0 after a signal;
- a child that exits on its own is restarted after a back-off (1 s, doubling up to 30 s; reset
  once a child has run for 60 s). The listening socket stays open in the launcher meanwhile, so
  connections wait in its backlog instead of being refused;
- on Linux each child gets ``PR_SET_PDEATHSIG`` = SIGTERM: if the launcher is SIGKILLed (honcho's
  last resort), its daphnes do not outlive it;
- the children share one ``PROMETHEUS_MULTIPROC_DIR`` for ``/metrics`` (tenants.metrics): the
  launcher creates a fresh one (and removes it at exit) unless the environment names one, which
  it then empties of old files; a child's live gauges are dropped when it exits;
- each child gets ``WEIYU_WEB_CHILD`` = its number (1…N), so its PostgreSQL connections are
  named ``weiyu-web-<i>`` in ``pg_stat_activity`` (weiyu/procname.py);
- daphne gets ``--websocket_connect_timeout`` :data:`HANDSHAKE_TIMEOUT_S` unless the command
  line gives one: daphne's own 5 s refused (HTTP 403, or closed the connection) every socket
  whose handshake a busy process had not completed by then, and in a reconnect storm that was
  most of them, each coming back again (docs/benchmarks.md, "Connections").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from weiyu import procname

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def web_concurrency(environ: dict[str, str] | None = None) -> int:
    """Number of web processes: ``$WEB_CONCURRENCY`` when set to a positive integer, else the
    machine's cores (``os.cpu_count()``, at least 1). Raises ``ValueError`` on a non-integer or
    non-positive ``WEB_CONCURRENCY``."""
    value = (os.environ if environ is None else environ).get("WEB_CONCURRENCY", "").strip()
    if not value:
        return os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a positive integer, not {value!r}")
    return count


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port`` with ``SO_REUSEADDR``, inheritable so children can
    adopt it with ``daphne --fd``. ``port`` 0 picks a free port (read it from ``getsockname()``).
    Raises ``OSError`` when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM me when the launcher dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One daphne slot: its current process, when it started and its restart back-off."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = BACKOFF_START_S
    restart_at: float | None = None


class Launcher:
    """Starts, watches and stops ``workers`` daphne processes adopting ``sock``."""

    def __init__(
        self, *, sock: socket.socket, workers: int, daphne_args: list[str], stop_timeout: float
    ) -> None:
        self.sock = sock
        self.daphne_args = daphne_args
        self.stop_timeout = stop_timeout
        self.children = [Child(index=i) for i in range(workers)]
        self.stopping: int | None = None
        self.stop_deadline = 0.0
        self.forwarded = False
        host, port = sock.getsockname()[:2]
        self.address = f"{host}:{port}"

    def log(self, message: str) -> None:
        print(f"serve: {message}", file=sys.stderr, flush=True)

    def spawn(self, child: Child) -> None:
        fd = self.sock.fileno()
        endpoint = ["--fd", str(fd)]
        if self.sock.family == socket.AF_INET6:
            endpoint = ["-e", f"fd:fileno={fd}:domain=INET6"]
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "daphne", *endpoint, *self.daphne_args],
            pass_fds=(fd,),
            # its PostgreSQL connections are named weiyu-web-<i> (weiyu/procname.py)
            env={**os.environ, procname.WEB_CHILD_ENV: str(child.index + 1)},
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        child.started = time.monotonic()
        child.restart_at = None
        self.log(
            f"daphne pid {child.process.pid} serving {self.address} "
            f"(child {child.index + 1}/{len(self.children)})"
        )

    def reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            code = child.process.returncode
            self.log(f"daphne pid {child.process.pid} exited with status {code}")
            with contextlib.suppress(OSError, KeyError):
                mark_process_dead(child.process.pid)
            child.process = None
            if self.stopping is not None:
                continue
            if now - child.started >= HEALTHY_AFTER_S:
                child.backoff = BACKOFF_START_S
            child.restart_at = now + child.backoff
            self.log(f"restarting child {child.index + 1} in {child.backoff:g} s")
            child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [c.process for c in self.children if c.process and c.process.poll() is None]

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status (0 after a signal)."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())

        def on_stop(signum: int, _frame: object) -> None:
            if self.stopping is None:
                self.stopping = signum
                self.stop_deadline = time.monotonic() + self.stop_timeout

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below
        for child in self.children:
            self.spawn(child)
        while True:
            self.reap()
            now = time.monotonic()
            if self.stopping is not None:
                timeout = self._stop_step(now)
                if timeout is None:
                    return 0
            else:
                timeout = self._restart_step(now)
            with contextlib.suppress(InterruptedError):
                select.select([wake_r], [], [], timeout)
            with contextlib.suppress(BlockingIOError):
                while wake_r.recv(4096):
                    pass

    def _stop_step(self, now: float) -> float | None:
        """While stopping: forward the signal once, SIGKILL after the deadline; ``None`` when
        every child has exited, else how long to wait for the next event (s)."""
        signum = self.stopping or signal.SIGTERM
        if not self.forwarded:
            name = signal.Signals(signum).name
            self.log(f"{name}: stopping {len(self.alive())} daphne process(es)")
            for process in self.alive():
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)
            self.forwarded = True
        if not self.alive():
            self.reap()  # log the exits alive() saw since the last reap
            self.log("all daphne processes stopped")
            return None
        if now >= self.stop_deadline:
            for process in self.alive():
                self.log(f"daphne pid {process.pid} still running: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            for process in self.alive():
                process.wait()
            return 0.0
        return self.stop_deadline - now

    def _restart_step(self, now: float) -> float:
        """Restart the children whose back-off is over; how long until the next one is due (s)."""
        for child in self.children:
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                self.spawn(child)
        pending = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(pending) - now) if pending else 60.0


#: seconds daphne lets a websocket handshake take before refusing it (its default is 5)
HANDSHAKE_TIMEOUT_S = 30


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's own options, and the rest (passed to every daphne)."""
    parser = argparse.ArgumentParser(
        prog="python -m weiyu.serve",
        description="Run N daphne processes sharing one listening socket.",
        epilog="Other arguments (e.g. --access-log - weiyu.asgi:application) go to daphne.",
    )
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "-w",
        "--workers",
        type=int,
        default=None,
        help="daphne processes (default $WEB_CONCURRENCY, else the number of cores)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        help="after SIGTERM, SIGKILL children still running after this many seconds",
    )
    args, rest = parser.parse_known_args(argv)
    if args.workers is None:
        args.workers = web_concurrency()
    if args.workers < 1:
        parser.error("--workers must be positive")
    if not any(":" in a and "." in a and not a.startswith("-") for a in rest):
        rest.append("weiyu.asgi:application")
    if not any(a.startswith("--websocket_connect_timeout") for a in rest):
        rest[:0] = ["--websocket_connect_timeout", str(HANDSHAKE_TIMEOUT_S)]
    return args, rest


METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir_prepare() -> Path | None:
    """Give the children one empty ``PROMETHEUS_MULTIPROC_DIR``: the environment's (its old
    ``*.db`` files removed: counters of an earlier run must not add up with this one's), else a
    new temporary directory, which is returned so the launcher removes it at exit."""
    named = os.environ.get(METRICS_ENV)
    if named:
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
        return None
    path = Path(tempfile.mkdtemp(prefix="weiyu-metrics-"))
    os.environ[METRICS_ENV] = str(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point: bind, start the children, serve until a signal."""
    args, daphne_args = parse_args(argv)
    sock = bind_socket(args.bind, args.port)
    launcher = Launcher(
        sock=sock, workers=args.workers, daphne_args=daphne_args, stop_timeout=args.stop_timeout
    )
    own_dir = metrics_dir_prepare()
    try:
        return launcher.run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
