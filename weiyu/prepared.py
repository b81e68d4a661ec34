"""Server-side prepared statements for the few written-out statements every socket runs at each
(re)connect.

PostgreSQL plans a statement anew each time it comes as text. The statement of a member's
conversation list (``kefu.selectors.member_conversation_list``) joins a dozen tables with four
subqueries: for a visitor, planning it took ~1.7 ms and running it ~0.2 ms, so in a reconnect
storm most of PostgreSQL's CPU went to planning the same statement thousands of times
(docs/benchmarks.md, "Connections"). :func:`prepared_cursor` gives a cursor whose statements are
prepared once per database connection (psycopg keeps the names, up to ``prepared_max`` = 100 per
connection) and then only executed; after five executions PostgreSQL may keep one generic plan
for all parameters and skip planning altogether (``plan_cache_mode = auto``).

Django keeps prepared statements off for every other query (its ``prepare_threshold`` is None,
so that transaction-pooling connection poolers work): a statement run through this cursor needs
each web process's database connections to be its own (the pool in ``weiyu.settings`` — not a
pgbouncer in transaction mode). Tenants share connections: a prepared statement is parsed again
by PostgreSQL whenever ``search_path`` differs from its last execution, so it always reads the
current tenant's tables. The statements must bind their parameters server-side (no ``%s`` in
identifiers, plain values only).
"""

from __future__ import annotations

from typing import Any

from django.db import connection

try:
    import psycopg
    from django.db.backends.postgresql.base import ServerBindingCursor
except ImportError:  # psycopg 2: no server-side binding
    ServerBindingCursor = None


if ServerBindingCursor is not None:
    #: psycopg's own loader of ``timestamptz`` text: its C one where psycopg's C extension is
    #: installed (psycopg[binary]). Django registers a Python subclass of psycopg's Python
    #: loader on every connection; the resume statements' rows carry a dozen timestamps each,
    #: and parsing them in Python was ~40 % of an agent's conversation list (docs/benchmarks.md,
    #: "Connections"). Both give aware datetimes in the connection's time zone, UTC (Django
    #: sets it when ``USE_TZ``).
    _TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(
        psycopg.postgres.types["timestamptz"].oid, psycopg.pq.Format.TEXT
    )

    class _PreparingCursor(ServerBindingCursor):
        """A server-binding psycopg cursor that prepares every statement it executes and reads
        ``timestamptz`` with psycopg's own loader (:data:`_TIMESTAMPTZ_LOADER`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs["prepare"] = True
            return super().execute(query, params, **kwargs)


def prepared_cursor() -> Any:
    """A cursor of the default connection (Django's wrapper: query logging, error translation
    and ``CaptureQueriesContext`` as for ``connection.cursor()``) whose statements are prepared
    on the server. Use it as a context manager, like ``connection.cursor()``. Falls back to a
    plain cursor when the backend cannot prepare (not psycopg 3)."""
    cursor = connection.cursor()  # health check, connection, the tenant's search_path
    if ServerBindingCursor is None or connection.vendor != "postgresql":
        return cursor
    cursor.cursor.close()
    cursor.cursor = _PreparingCursor(connection.connection)
    return cursor
