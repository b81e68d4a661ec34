"""PostgreSQL connections per process (docs/deploy.md, "Database connections"): every process
names its connections by kind (weiyu/procname.py); a web process never holds more than its pool
(``DB_POOL_MAX``) however many requests wait on the database at once — the term
``WEB_CONCURRENCY * DB_POOL_MAX`` of the connection budget; and a Celery worker process keeps its
connection from task to task, replacing one PostgreSQL has ended."""

from __future__ import annotations

import contextlib
import http.client
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django_tenants.utils import tenant_context

from tenants import signup
from tests.conftest import make_agent, session_cookie, unique
from tests.mail import mail_worker_run
from tests.servers import LiveServer, database_url, serve_start
from tests.waits import WAIT_S, wait_until
from weiyu.procname import application_name, process_kind

HOST = "acme.localhost"
POOL_MAX = 4
#: requests sent at once, and at most so many times, until both processes are at their cap
BATCH = 12
BATCHES = 8


@pytest.mark.parametrize(
    ("argv", "environ", "kind"),
    [
        (["/srv/.venv/bin/daphne", "-b", "127.0.0.1", "weiyu.asgi:application"], {}, "web"),
        (["/srv/.venv/lib/daphne/__main__.py", "--fd", "3"], {"WEIYU_WEB_CHILD": "2"}, "web-2"),
        (["/srv/.venv/bin/celery", "-A", "weiyu", "worker", "--concurrency", "2"], {}, "worker"),
        (["/srv/.venv/bin/celery", "-A", "weiyu", "beat", "--schedule", "x"], {}, "beat"),
        (["manage.py", "embed_server"], {}, "embed"),
        (["manage.py", "migrate_schemas", "--noinput"], {}, "manage-migrate_schemas"),
        (["bench/chat_load.py", "--provision"], {}, "chat_load"),
    ],
)
def test_a_process_names_its_kind(argv, environ, kind):
    assert process_kind(argv, environ) == kind
    assert application_name(argv, environ) == f"weiyu-{kind}"


def test_the_environment_may_name_the_connections():
    name = application_name(["manage.py", "shell"], {"WEIYU_DB_APPLICATION_NAME": "x" * 80})
    assert name == "x" * 63  # what PostgreSQL keeps (NAMEDATALEN - 1)


@pytest.fixture
def small_pools() -> Iterator[LiveServer]:
    # two web processes whose pools hold at most POOL_MAX connections each; a request waits up to
    # the test's deadlines for one instead of failing after the default 10 s
    server = serve_start(
        workers=2,
        name="serve-pools",
        DB_POOL_MAX=str(POOL_MAX),
        DB_POOL_TIMEOUT=str(3 * WAIT_S),
        WEIYU_DB_THREADS="2",
    )
    yield server
    server.stop()


def _web_connections(admin: psycopg.Connection) -> Counter[str]:
    rows = admin.execute(
        "SELECT application_name, count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'weiyu-web-%%' "
        "GROUP BY 1"
    ).fetchall()
    return Counter(dict(rows))


def _get(port: int, cookie: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3 * WAIT_S)
    try:
        conn.request("GET", "/api/v1/org/me/alerts", headers={"Host": HOST, "Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_web_process_holds_at_most_its_pool_under_a_burst(acme, small_pools):
    # given an agent's session, and its table locked so every request that reads it waits in
    # PostgreSQL holding its pooled connection
    with tenant_context(acme):
        agent = make_agent(name="burst", status="offline", inbox=False)
    cookie = session_cookie(acme, agent).decode()
    assert _get(small_pools.port, cookie) == 200
    with (
        psycopg.connect(database_url(), autocommit=True) as admin,
        psycopg.connect(database_url()) as locker,
    ):
        locker.execute("LOCK TABLE acme.django_session IN ACCESS EXCLUSIVE MODE")
        peaks: Counter[str] = Counter()

        def sample() -> Counter[str]:
            for name, count in _web_connections(admin).items():
                peaks[name] = max(peaks[name], count)
            return peaks

        def at_caps() -> bool:
            sample()
            return set(peaks) == {"weiyu-web-1", "weiyu-web-2"} and all(
                count >= POOL_MAX for count in peaks.values()
            )

        # when many more requests than both pools hold arrive at once (in batches, until both
        # processes are at their cap: the kernel hands each to whichever process accepts first)
        with ThreadPoolExecutor(BATCH * BATCHES) as pool:
            answers = []
            for _batch in range(BATCHES):
                answers += [pool.submit(_get, small_pools.port, cookie) for _ in range(BATCH)]
                with contextlib.suppress(AssertionError):
                    wait_until(at_caps, timeout=2, what="both web processes at their cap")
                    break
            # then the processes fill their pools (one at least, while the rest of the requests
            # wait) and open no more
            wait_until(
                lambda: sample() and max(peaks.values()) >= POOL_MAX,
                what="a web process at its cap",
            )
            assert not any(answer.done() for answer in answers)
            locker.rollback()  # the lock goes; the waiting requests are served in turn
            wait_until(
                lambda: sample() and all(answer.done() for answer in answers),
                what="every request answered",
            )
            statuses = [answer.result() for answer in answers]
        assert set(peaks) <= {"weiyu-web-1", "weiyu-web-2"}, peaks
        assert max(peaks.values()) == POOL_MAX, peaks
    # and every request was answered, none refused for want of a connection
    assert statuses == [200] * len(answers)


def _worker_backends(admin: psycopg.Connection) -> set[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'weiyu-worker'"
    ).fetchall()
    return {pid for (pid,) in rows}


def _signup_mail() -> None:
    """A sign-up, whose verification mail a worker task sends (one database read at least)."""
    sub = unique("conn")
    signup.signup_request(
        company="Connections",
        subdomain=sub,
        email=f"founder@{sub}.example.com",
        password="a-long-and-unusual-passphrase",
        ip="10.9.8.7",
        language="en",
        base_url="http://localhost",
    )


@pytest.fixture
def reusing_worker(smtp):
    """A mail worker keeping its connection for 1,000 tasks (``WEIYU_WORKER_DB_REUSE_TASKS``)."""
    yield from mail_worker_run(smtp, WEIYU_WORKER_DB_REUSE_TASKS="1000")


def test_a_worker_keeps_its_connection_between_tasks_and_replaces_an_ended_one(
    smtp, reusing_worker
):
    _port, inbox = smtp
    with psycopg.connect(database_url(), autocommit=True) as admin:
        # when a worker (concurrency 1) runs tasks one after another
        held = []
        for n in range(1, 5):
            _signup_mail()
            wait_until(lambda n=n: len(inbox.messages) >= n, what=f"verification mail {n}")
            held.append(_worker_backends(admin))
        # then the connections it held after the first are the ones it holds after the last
        assert held[0], "the worker kept no connection after its task"
        assert held == [held[0]] * 4
        # when PostgreSQL ends them between two tasks (a restart, an administrator)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'weiyu-worker'"
        )
        wait_until(lambda: not _worker_backends(admin), what="the connections ended")
        # then the next task runs all the same, on a new connection
        _signup_mail()
        wait_until(lambda: len(inbox.messages) >= 5, what="the mail after the restart")
        assert _worker_backends(admin).isdisjoint(held[0])
