"""Shared test set-up: two tenants on real PostgreSQL and Redis, personas and factories.

Tenant schemas are created once per run (``acme`` and ``globex``, whose row ids overlap), the way
production provisions them: creating the test database runs ``migrate`` (our ``migrate_schemas``),
which migrates the public schema and the template schema, and ``tenant_create`` copies the
template (tenants/template.py) instead of migrating each tenant again. Tests do
not run inside a rolled-back transaction: websocket consumers and concurrent routing use their
own connections and threads, so every test creates the data it needs with unique names and
asserts only on that data.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.utils import translation
from django_tenants.utils import schema_context

from kefu import presence
from kefu.models import AgentState, Channel, Visitor, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import visitors
from org.models import User
from tenants.models import Tenant
from tenants.services import public_tenant_ensure, tenant_create
from tests.mail import imap_server, mail_worker, smtp  # noqa: F401 (fixtures for every test)
from weiyu import dbthreads

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"
# No spare schema pool (tenants/pool.py) unless a test asks for one: tenants are copied from the
# template as the provisioning tests expect, and nothing enqueues a refill (here and in the
# servers the tests start)
settings.WEIYU_SPARE_SCHEMAS = 0
os.environ["WEIYU_SPARE_SCHEMAS"] = "0"


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment: None, django_db_blocker: Any) -> Iterator[None]:
    """Create the test database (public and template schemas migrated) and the two tenants,
    copied from the template as in production; drop it at the end, unless
    ``WEIYU_TEST_KEEP_DB`` is set (a run inside a throwaway PostgreSQL cluster, removed whole
    afterwards: tests/kbase/test_pgvector.py)."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        db_cfg = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        public_tenant_ensure(domains=["localhost", "127.0.0.1"])
        for schema in ("acme", "globex"):
            tenant_create(
                name=schema.title(),
                schema_name=schema,
                domain=f"{schema}.localhost",
                admin_username="bob",
                admin_password=PASSWORD,
            )
        connection.set_schema_to_public()
    yield
    with django_db_blocker.unblock():
        dbthreads.close_all()  # the websocket database threads give their connections back
        connection.close()  # a fault test may have killed it; take a fresh one from the pool
        connection.set_schema_to_public()
        with connection.cursor() as cursor:  # worker threads of consumers keep connections open
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        if not os.environ.get("WEIYU_TEST_KEEP_DB"):
            teardown_databases(db_cfg, verbosity=0)


@pytest.fixture(autouse=True)
def _db(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield
        # back to the pool: the next test gets a checked connection, even after a fault test
        # made PostgreSQL drop every connection
        connection.close()
        connection.set_schema_to_public()


@pytest.fixture
def acme() -> Tenant:
    return Tenant.objects.get(schema_name="acme")


@pytest.fixture
def globex() -> Tenant:
    return Tenant.objects.get(schema_name="globex")


@dataclass
class Desk:
    """A workgroup with its channel and agents, in one tenant."""

    tenant: Tenant
    workgroup: Workgroup
    channel: Channel
    agents: list[User]


def inbox_open(user: User) -> None:
    """Record an inbox socket of the agent as the socket itself does on connect (a Redis entry,
    alive for ``presence.ALIVE_S``, then ``agent_connected``), for tests about something else
    than presence (call inside the tenant's schema)."""
    presence.socket_seen(
        schema=connection.schema_name, user_id=user.pk, channel_name=f"tests.inbox!{user.pk}"
    )
    kefu_agents.agent_connected(user_id=user.pk)


def make_agent(
    *, status: str = "online", cap: int = 5, name: str | None = None, inbox: bool = True
) -> User:
    """An agent who chose ``status`` (call inside the tenant's schema). ``inbox``: with an inbox
    open (:func:`inbox_open`), so available when online; False: one who has not opened it."""
    username = unique(name or "alice")
    user = User.objects.create_user(
        username=username, password=PASSWORD, role="agent", display_name=username.title()
    )
    AgentState.objects.create(user=user, max_concurrent=cap, status=AgentState.Status.OFFLINE)
    if inbox:
        inbox_open(user)
    if status != "offline":
        kefu_agents.agent_status_set(user=user, status=status)
    return user


def make_desk(
    tenant: Tenant, *, agents: int = 1, status: str = "online", cap: int = 5, inbox: bool = True
) -> Desk:
    """A workgroup, a channel and ``agents`` agents who chose ``status``, created in ``tenant``
    (``inbox``: see :func:`make_agent`)."""
    with schema_context(tenant.schema_name):
        workgroup = Workgroup.objects.create(name=unique("wg"))
        staff = [make_agent(status="offline", cap=cap, inbox=inbox) for _ in range(agents)]
        workgroup.agents.add(*staff)
        for user in staff:
            if status != "offline":
                kefu_agents.agent_status_set(user=user, status=status)
        channel = Channel.objects.create(
            name=unique("site"), workgroup=workgroup, welcome_text="Hi"
        )
    return Desk(tenant=tenant, workgroup=workgroup, channel=channel, agents=staff)


def make_visitor(desk: Desk, *, language: str = "en") -> tuple[Visitor, str]:
    """A visitor of the desk's channel and its token."""
    with schema_context(desk.tenant.schema_name):
        return visitors.visitor_start(channel=desk.channel, language=language)


def session_cookie(tenant: Tenant, user: User) -> bytes:
    """A ``Cookie`` header value for a signed-in ``user`` of ``tenant``."""
    with schema_context(tenant.schema_name):
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "org.backends.PasswordBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}".encode()


def agent_client(user: User, tenant: str = "acme", language: str = "en") -> Client:
    """A Django test client signed in as ``user`` on ``<tenant>.localhost``, asking for
    ``language``."""
    client = Client(HTTP_HOST=f"{tenant}.localhost", HTTP_ACCEPT_LANGUAGE=language)
    cookie = session_cookie(Tenant.objects.get(schema_name=tenant), user).decode()
    name, value = cookie.split("=", 1)
    client.cookies[name] = value
    return client


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each test gets its own channel-layer instance: its asyncio locks belong to the test's
    event loop, so a consumer left behind by a failed test cannot jam the next ones."""
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _english_outside_requests() -> Iterator[None]:
    """Each test starts in English: a request's middleware activates its own language, but
    code called directly reads the thread's active language, which an earlier test's request
    would otherwise have left behind."""
    translation.activate("en")
    yield
    translation.deactivate()
