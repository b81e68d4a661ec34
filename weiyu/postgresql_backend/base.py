"""django-tenants' PostgreSQL backend, sending ``SET search_path`` only when the connection's
path differs (issue 16: at most one per request, none when it is already the tenant's).

With ``TENANT_LIMIT_SET_CALLS`` django-tenants remembers the path it set on its connection
*wrapper*, and forgets it whenever the wrapper gives its connection back: every HTTP request
(``CONN_MAX_AGE`` 0 with the psycopg pool) starts with an unknown path and sends ``SET
search_path`` again, although the pooled connection it gets often kept that very path.
:class:`DatabaseWrapper` remembers the path on the psycopg connection itself, for as long as the
connection lives, and skips the statement when the wrapper's path is already there.

A path is remembered only when its ``SET`` was committed at once (autocommit): one sent inside
a transaction is undone if the transaction rolls back, and the pool rolls back what a request
left open, so after it the connection's path is "unknown" until the next ``SET`` outside a
transaction. Code that changes ``search_path`` by itself must restore it before it returns (as
``tenants.template.schema_clone`` does) or call :func:`path_forget`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django_tenants.postgresql_backend import base
from psycopg.pq import TransactionStatus

#: psycopg connection -> the search path last committed on it (schema names, in order)
_paths: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def path_forget(raw_connection: Any) -> None:
    """Forget what ``search_path`` the psycopg connection has: its next cursor sets it."""
    _paths.pop(raw_connection, None)


class DatabaseWrapper(base.DatabaseWrapper):
    """django-tenants' wrapper; the ``search_path`` it set is remembered per psycopg connection
    (module docstring)."""

    _path_any = False

    @contextmanager
    def search_path_any(self) -> Iterator[None]:
        """Inside: no ``SET search_path`` before the statements, whatever the selected schema,
        for statements that name their tables' schema themselves (``weiyu.tenant_hosts``: the
        host lookup of a request, before its tenant is known). The path stays as it was."""
        before, self._path_any = self._path_any, True
        try:
            yield
        finally:
            self._path_any = before

    def _handle_search_path(self, cursor: Any = None) -> None:
        raw = self.connection
        if self._path_any:
            return
        if self._setting_search_path or self.search_path_set_schemas or raw is None:
            super()._handle_search_path(cursor)
            return
        if not self.schema_name:  # django-tenants raises ImproperlyConfigured
            super()._handle_search_path(cursor)
            return
        wanted = self._get_cursor_search_paths()
        if base.get_limit_set_calls() and _paths.get(raw) == wanted:
            self.search_path_set_schemas = wanted
            return
        super()._handle_search_path(cursor)
        if self.search_path_set_schemas and raw.info.transaction_status == TransactionStatus.IDLE:
            _paths[raw] = list(self.search_path_set_schemas)
        else:
            path_forget(raw)
