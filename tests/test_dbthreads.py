"""The websockets' database threads (weiyu/dbthreads.py, docs/architecture.md): a thread keeps its
connection between calls, sends ``SET search_path`` only when the tenant changes, never carries one
tenant's schema into another's call, and recovers from a failed statement."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from weiyu import dbthreads
from weiyu.asgi_tenancy import tenant_db


def _probe() -> dict[str, Any]:
    """Inside a call: which connection, which schema, and the statements the call sent."""
    with CaptureQueriesContext(connection) as ctx, connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    return {
        "raw": id(connection.connection),
        "schema": schema,
        "sql": [q["sql"] for q in ctx.captured_queries],
    }


async def test_a_thread_keeps_its_connection_and_search_path_between_calls(acme):
    # when one tenant's socket makes many database calls in a row
    calls = [await tenant_db(acme, _probe) for _ in range(3 * dbthreads.THREADS)]
    # then every call ran in that tenant's schema
    assert {c["schema"] for c in calls} == {"acme"}
    # and the threads kept their connections: at most one per thread over all the calls, each
    # of which sent SET search_path once, on its first call
    connections = {c["raw"] for c in calls}
    assert len(connections) <= dbthreads.THREADS
    sets = [c for c in calls if any(s.startswith("SET search_path") for s in c["sql"])]
    assert len(sets) <= len(connections), [c["sql"] for c in calls]
    assert all(c["sql"][-1] == "SELECT current_schema()" for c in calls)


async def test_calls_of_two_tenants_in_turn_each_see_only_their_schema(acme, globex):
    # when sockets of two tenants take turns on the same threads
    seen = [
        await tenant_db(t, _probe) for _ in range(2 * dbthreads.THREADS) for t in (acme, globex)
    ]
    # then each call ran in its own tenant's schema, whatever the thread ran before
    assert [c["schema"] for c in seen] == ["acme", "globex"] * (2 * dbthreads.THREADS)


def _fail() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_anywhere")


async def test_a_failed_statement_does_not_break_the_next_call(acme):
    # given calls that fail in the database, on every thread
    for _ in range(2 * dbthreads.THREADS):
        with pytest.raises(DatabaseError):
            await tenant_db(acme, _fail)
    # then the next calls work, in the right schema
    calls = [await tenant_db(acme, _probe) for _ in range(2 * dbthreads.THREADS)]
    assert {c["schema"] for c in calls} == {"acme"}
