"""Tenant resolution per request (issue 16): at most one ``SET search_path`` per HTTP request or
websocket call, none on a connection that has the tenant's path already; and the per-process
host cache (weiyu.tenant_hosts) follows a removed domain or a suspended tenant from the next
request on, in another process too.

Statements are counted as psycopg is asked to send them (Django's cursor class, every thread):
django-tenants sends its ``SET`` on the bare cursor, which ``CaptureQueriesContext`` never sees.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.db.backends.postgresql import base as pg_base
from django.test import Client
from django_tenants.utils import schema_context

from org import apikeys
from org.models import ApiKey, User
from tenants.models import Domain
from tenants.services import domain_delete, domain_save, tenants_resume, tenants_suspend
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tests.servers import LiveServer, daphne_start, free_port
from tests.waits import WAIT_S
from tests.ws import connect, receive_until
from weiyu import dbthreads


@dataclass
class Sent:
    """Statements psycopg was asked to run: ``(connection id, SQL)`` in order."""

    statements: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self) -> int:
        return len(self.statements)

    def paths_since(self, mark: int) -> list[tuple[int, str]]:
        """The ``SET search_path`` statements after ``mark``: ``(connection id, path)``."""
        return [
            (conn, sql.removeprefix("SET search_path = "))
            for conn, sql in self.statements[mark:]
            if sql.startswith("SET search_path")
        ]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Every statement any thread's Django connection sends during the test."""
    record = Sent()
    execute = pg_base.Cursor.execute

    def spy(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        with record.lock:
            record.statements.append((id(cursor.connection), str(query)))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(pg_base.Cursor, "execute", spy)
    return record


@pytest.fixture
def one_idle_connection() -> Iterator[None]:
    """The pool keeps one idle connection for the test's requests (the others are held aside),
    so consecutive requests of this thread share it."""
    connection.close()
    pool = connection.pool
    held = []
    while pool.get_stats().get("pool_available", 0) > 1:
        held.append(pool.getconn())
    yield
    for raw in held:
        pool.putconn(raw)


def _to_public() -> None:
    """Leave the pooled connection on the public schema's path, as after a platform page."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()


def _key_client(tenant: str) -> Client:
    with schema_context(tenant):
        _key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=User.objects.get(username="bob"),
            name=unique("resolution"),
            scopes=["org:read"],
        )
    return Client(HTTP_HOST=f"{tenant}.localhost", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("session", "/inbox/"),  # a page, signed in
        ("session", "/api/v1/org/me/alerts"),  # the API with the session
        ("api key", "/api/v1/org/directory"),  # the API with a system key
    ],
)
def test_a_request_sets_the_path_once_and_not_again_on_a_connection_in_its_tenant(
    who, path, sent, one_idle_connection
):
    # given a signed-in agent (or a system key) of acme, and the pooled connection on public
    with schema_context("acme"):
        bob = User.objects.get(username="bob")
    client = agent_client(bob) if who == "session" else _key_client("acme")
    _to_public()
    # when the request is made twice on that connection
    mark = sent.mark()
    assert client.get(path).status_code == 200
    first = sent.paths_since(mark)
    mark = sent.mark()
    assert client.get(path).status_code == 200
    second = sent.paths_since(mark)
    # then the first sets acme's path once, the second finds it there and sends none
    assert [p for _conn, p in first] == ['"acme","public"']
    assert second == []


def test_requests_alternating_between_two_tenants_set_the_path_once_each(sent, one_idle_connection):
    # given bob signed in on acme and on globex, sharing one pooled connection
    clients = {}
    for schema in ("acme", "globex"):
        with schema_context(schema):
            clients[schema] = agent_client(User.objects.get(username="bob"), tenant=schema)
    _to_public()
    for schema in ("acme", "globex", "acme", "globex"):
        # when each request goes to the other tenant
        mark = sent.mark()
        assert clients[schema].get("/api/v1/org/me/alerts").status_code == 200
        # then it sends exactly one SET, to its own tenant's path, on the one connection
        assert [p for _conn, p in sent.paths_since(mark)] == [f'"{schema}","public"']
    assert len({conn for conn, _p in sent.paths_since(0)}) == 1


def _select_in(schema: str, barrier: threading.Barrier) -> None:
    # what weiyu.asgi_tenancy.tenant_db does before a call: switch only when the schema differs
    if connection.schema_name != schema:
        connection.set_schema(schema)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    barrier.wait(WAIT_S)  # every database thread takes one of these calls


async def _every_db_thread_in(schema: str) -> None:
    barrier = threading.Barrier(dbthreads.THREADS)
    await asyncio.gather(
        *(dbthreads.run(_select_in, schema, barrier) for _ in range(dbthreads.THREADS))
    )


@pytest.mark.asyncio
async def test_a_socket_sets_the_path_only_on_threads_that_were_in_another_tenant(acme, sent):
    # given a visitor of acme, and every database thread's connection on globex's path
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    await _every_db_thread_in("globex")
    # when the visitor's widget connects and sends a message
    mark = sent.mark()
    ws, _hello = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    await ws.send_json_to({"type": "message.send", "client_msg_id": "c1", "content": "hi"})
    await receive_until(ws, "message.ack")
    cold = sent.paths_since(mark)
    # and, with every thread now on acme's path, connects and sends again
    await _every_db_thread_in("acme")
    mark = sent.mark()
    again, _hello = await connect(f"/ws/visitor/?token={token}", "acme.localhost")
    await again.send_json_to({"type": "message.send", "client_msg_id": "c2", "content": "hi"})
    await receive_until(again, "message.ack")
    warm = sent.paths_since(mark)
    await ws.disconnect()
    await again.disconnect()
    # then the first time each connection switched to acme once at most, the second time none
    assert {p for _conn, p in cold} <= {'"acme","public"'}
    assert len(cold) == len({conn for conn, _p in cold}) <= dbthreads.THREADS
    assert warm == []


# --- the host cache across processes


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[LiveServer]:
    with django_db_blocker.unblock():
        live = daphne_start(name="resolution-daphne")
    yield live
    live.stop()


def _status(server: LiveServer, host: str, path: str = "/healthz") -> int:
    url = server.url("127.0.0.1", path)
    request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_removed_domain_stops_resolving_in_another_process_at_once(acme, server):
    # given a second domain of acme, answered (and so cached) by a web process
    host = f"{unique('extra')}.localhost"
    domain = domain_save(domain=Domain(domain=host, tenant=acme, is_primary=False))
    assert _status(server, host) == 200
    assert _status(server, host) == 200
    # when the platform removes it
    domain_delete(domain=domain)
    # then that process's very next request for it finds no tenant
    assert _status(server, host) == 404
    assert _status(server, "acme.localhost") == 200


def test_a_suspended_tenant_is_refused_in_another_process_at_once(acme, server):
    # given acme answered (and so cached) by a web process
    assert _status(server, "acme.localhost", "/inbox/") in (200, 302)
    # when the platform suspends it
    tenants_suspend(tenant_ids=[acme.pk])
    try:
        # then that process's very next request is refused with the suspension
        assert _status(server, "acme.localhost", "/inbox/") == 403
    finally:
        tenants_resume(tenant_ids=[acme.pk])
    # and the next one after resuming is served again
    assert _status(server, "acme.localhost", "/inbox/") in (200, 302)


def test_without_redis_every_request_is_resolved_from_postgresql(acme, settings, monkeypatch):
    # given Redis unreachable (a port nobody listens on) and a second domain of acme
    from weiyu import tenant_hosts

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    tenant_hosts._redis.cache_clear()
    monkeypatch.setattr(tenant_hosts, "_redis_down_until", 0.0)
    host = f"{unique('noredis')}.localhost"
    domain = domain_save(domain=Domain(domain=host, tenant=acme, is_primary=False))
    try:
        # when requests come for it, before and after the domain is removed
        before = Client(HTTP_HOST=host).get("/healthz").status_code
        domain_delete(domain=domain)
        after = Client(HTTP_HOST=host).get("/healthz").status_code
    finally:
        tenant_hosts._redis.cache_clear()  # the next test's client, on the real REDIS_URL
        tenant_hosts._redis_down_until = 0.0
    # then each was answered from the rows as they were: nothing stale was kept
    assert (before, after) == (200, 404)
