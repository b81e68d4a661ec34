"""A throwaway database for the benchmarks that deploy their own (provisioning, sign-up,
migrate_schemas, beat fan-out, tenant resolution): created next to ``$DATABASE_URL``'s (its name
+ a suffix), migrated by the benchmark as a deploy does, dropped at the end unless asked to keep
it; many tenants made cheaply in it (:func:`tenants_make`); the percentiles they print; and the
schema step of each provisioning, read off the service's log line."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/weiyu_bench"
#: the percentiles the benchmarks print: (label, q)
QUANTILES = (("p50", 50), ("p95", 95), ("max", 100))


def pct(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``values`` (nearest rank), rounded to 0.1; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))], 1)


def quantiles(values: list[float]) -> dict[str, float | None]:
    """``{"p50", "p95", "max"}`` of ``values``."""
    return {label: pct(values, q) for label, q in QUANTILES}


def deploy() -> float:
    """After ``django.setup()``: ``migrate_schemas`` as a deploy does (public and template
    schemas, then the spare pool filled), and the public tenant on ``localhost``; returns the
    seconds ``migrate_schemas`` took."""
    import io
    from contextlib import redirect_stdout

    from django.core.management import call_command

    from tenants.services import public_tenant_ensure

    started = time.monotonic()
    with redirect_stdout(io.StringIO()):
        call_command("migrate_schemas", interactive=False, verbosity=0)
    seconds = time.monotonic() - started
    public_tenant_ensure(domains=["localhost"])
    return seconds


class SchemaTimes(logging.Handler):
    """Collects ``tenant X: schema <how> in N ms`` from tenants.services while attached
    (:meth:`attach`): ``ms[schema]`` (ms) and ``how[schema]`` (``renamed from spare …``,
    ``cloned from …``, ``migrated``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ms: dict[str, float] = {}
        self.how: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "tenant %s: schema %s in %.0f ms":
            schema, how, ms = record.args
            self.ms[schema] = ms
            self.how[schema] = how

    def attach(self) -> SchemaTimes:
        service_log = logging.getLogger("tenants.services")
        service_log.addHandler(self)
        service_log.setLevel(logging.INFO)
        return self


def _admin(database_url: str, *statements: str) -> None:
    import psycopg

    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        for statement in statements:
            conn.execute(statement)


@contextmanager
def scratch_database(suffix: str, *, keep: bool = False) -> Iterator[str]:
    """Create the empty database ``<name of $DATABASE_URL>_<suffix>`` (dropped first if left
    over), point ``DATABASE_URL`` at it and set Django's settings module (``LOG_LEVEL`` WARNING
    unless set) before the caller's ``django.setup()``; yields its URL. At the end its
    connections are ended and it is dropped, unless ``keep``."""
    base_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(base_url)
    dbname = f"{parts.path.lstrip('/')}_{suffix}"
    database_url = urlunsplit(parts._replace(path=f"/{dbname}"))
    _admin(database_url, f'DROP DATABASE IF EXISTS "{dbname}"', f'CREATE DATABASE "{dbname}"')
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        yield database_url
    finally:
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not keep:
            _admin(
                base_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own name
                f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
                f'DROP DATABASE IF EXISTS "{dbname}"',
            )


def tenants_make(count: int, *, prefix: str, schemas: bool = True) -> tuple[list[str], float]:
    """``count`` tenants ``<prefix>0000``… made cheaply (after ``django.setup()`` and the
    deploy's ``migrate_schemas``): their rows in one ``bulk_create``, no domain, no
    administrator; with ``schemas`` each schema a copy of the template (``schema_clone``, 1 to 3 s
    each on a busy machine), without it none (for benchmarks that only route requests to them:
    PostgreSQL accepts a ``search_path`` naming a schema that does not exist). Returns the schema
    names and the seconds it took."""
    from django.db import transaction

    from tenants import template
    from tenants.models import Tenant

    started = time.monotonic()
    names = [f"{prefix}{n:04d}" for n in range(count)]
    if schemas:
        source = template.template_schema()
        for name in names:
            with transaction.atomic():
                template.schema_clone(source=source, target=name)
    Tenant.objects.bulk_create(Tenant(schema_name=name, name=name) for name in names)
    return names, time.monotonic() - started
