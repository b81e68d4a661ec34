#!/usr/bin/env python
"""Tenant resolution benchmark: what finding a request's tenant from its Host costs, beside the
same request with its tenant fixed (issue 16: at most 1 ms at p99, one ``SET search_path``).

    .venv/bin/python bench/tenant_resolution.py [--tenants 1000] [--requests 3000] [--json] [--keep]

What it does (docs/benchmarks.md, "Tenant resolution"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_resbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does; ``--tenants`` tenants
   made by :func:`scratchdb.tenants_make` without schemas (routing needs only their rows), each
   with its platform subdomain ``<label>.<WEIYU_SIGNUP_DOMAIN>`` and every other one also with
   a custom domain ``support.<label>.example.com`` (the label: the schema name, ``-`` for
   ``_``).
2. ``--requests`` rounds. Each round picks a random host among all the domains and runs every
   way below once, in a random order, so all ways share the machine's load. A way is timed from
   the request object (made beforehand) to the end of the request's first statement
   (``SELECT 1``), which is when a pending ``SET search_path`` goes out; before it the pooled
   connection is left on another tenant's path (or on the request's own, where said), after it
   the connection goes back to the pool as at the end of a request:

   - **fixed** (the baseline): no resolution, the connection already in the request's tenant;
     only the first statement;
   - **django-tenants**: ``TenantMainMiddleware`` as this project used it before (public path,
     the domain query, the tenant's path);
   - **weiyu**: ``tenants.middleware.ActiveTenantMiddleware`` with every host seen before
     (``weiyu.tenant_hosts``: the routes version from Redis, the process's cache);
   - **weiyu, miss**: the same with the host's entry dropped (a host's first request in a
     process, or the first after a tenant or domain changed);
   - **weiyu, same tenant**: the connection already on the request's tenant's path.

3. Prints per way p50/p99/max in µs and the overhead over the baseline at p50 and p99 (the
   difference of the percentiles), and, from 200 further untimed rounds, the statements and
   ``SET search_path`` statements a request sends (as psycopg is asked to send them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import pct, scratch_database, tenants_make  # bench/ is not a package: on sys.path

PREFIX = "rt_"
WAYS = ("fixed", "django-tenants", "weiyu", "weiyu, miss", "weiyu, same tenant")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=3000, help="rounds (one of each way)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    os.environ.setdefault("CHANNEL_PREFIX", f"resbench{os.getpid()}")
    os.environ["ALLOWED_HOSTS"] = ".localhost,localhost,.example.com"
    with scratch_database("resbench", keep=args.keep):
        result = _measure(args.tenants, args.requests, random.Random(args.seed))
    _report(result, as_json=args.json)
    return 0


def _domains(names: list[str]) -> dict[str, str]:
    """Each tenant's domains (module docstring): host -> schema."""
    from django.conf import settings

    from tenants.models import Domain, Tenant

    ids = dict(Tenant.objects.filter(schema_name__in=names).values_list("schema_name", "pk"))
    hosts: dict[str, str] = {}
    rows = []
    for n, name in enumerate(names):
        label = name.replace("_", "-")  # no "_" in a host name
        own = f"{label}.{settings.WEIYU_SIGNUP_DOMAIN}"
        rows.append(Domain(domain=own, tenant_id=ids[name], is_primary=True))
        hosts[own] = name
        if n % 2:
            custom = f"support.{label}.example.com"
            rows.append(Domain(domain=custom, tenant_id=ids[name], is_primary=False))
            hosts[custom] = name
    Domain.objects.bulk_create(rows)
    return hosts


def _measure(tenants: int, rounds: int, rng: random.Random) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.postgresql import base as pg_base
    from django.test import RequestFactory
    from django_tenants.middleware.main import TenantMainMiddleware
    from django_tenants.utils import get_tenant_model

    from tenants.middleware import ActiveTenantMiddleware
    from tenants.services import public_tenant_ensure
    from weiyu import tenant_hosts

    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines (--json is stdout)
        call_command("migrate_schemas", interactive=False, verbosity=0)
    deploy_s = time.monotonic() - started
    public_tenant_ensure(domains=["localhost"])
    names, create_s = tenants_make(tenants, prefix=PREFIX, schemas=False)
    hosts = _domains(names)
    by_schema = {t.schema_name: t for t in get_tenant_model().objects.filter(schema_name__in=names)}
    host_list = sorted(hosts)
    factory = RequestFactory()
    stock = TenantMainMiddleware(lambda request: None)
    ours = ActiveTenantMiddleware(lambda request: None)

    def first_statement() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def leave_on(schema: str) -> None:
        """The pooled connection ends the previous request on ``schema``'s path."""
        connection.set_tenant(by_schema[schema])
        first_statement()
        connection.close()

    def other_than(schema: str) -> str:
        while (other := rng.choice(names)) == schema:
            pass
        return other

    def run(way: str, host: str) -> Callable[[], Any]:
        """Prepare the state ``way`` starts from (untimed); return the timed step."""
        schema = hosts[host]
        request = factory.get("/healthz", HTTP_HOST=host)
        leave_on(schema if way in ("fixed", "weiyu, same tenant") else other_than(schema))
        if way == "fixed":
            return first_statement
        if way == "weiyu, miss":
            tenant_hosts._hosts.pop(host, None)
        middleware = stock if way == "django-tenants" else ours

        def step() -> None:
            middleware.process_request(request)
            first_statement()

        return step

    for host in host_list:  # every host seen once: the cache is warm
        tenant_hosts.tenant_for_host(host)
    # one idle connection in the pool (the others held aside), so that "the connection" a way
    # starts from is the one its request gets (the pool hands idle connections out in turn)
    connection.close()
    held = []
    while connection.pool.get_stats().get("pool_available", 0) > 1:
        held.append(connection.pool.getconn())

    # statements per request, counted as psycopg is asked to send them (untimed rounds)
    sent: list[str] = []
    execute = pg_base.Cursor.execute

    def spy(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    counts: dict[str, dict[str, float]] = {}
    count_rounds = 200
    pg_base.Cursor.execute = spy
    try:
        per_way: dict[str, list[tuple[int, int]]] = {way: [] for way in WAYS}
        for _ in range(count_rounds):
            host = rng.choice(host_list)
            for way in WAYS:
                step = run(way, host)
                connection.ensure_connection()  # the pool's checkout is not the request's
                del sent[:]
                step()
                assert connection.schema_name == hosts[host], (way, host)  # it did resolve
                statements = [s for s in sent if s.strip()]  # "" is the pool's health check
                sets = sum(s.startswith("SET search_path") for s in statements)
                per_way[way].append((len(statements) - 1, sets))  # minus the first statement
                connection.close()
        for way, seen in per_way.items():
            counts[way] = {
                "statements": round(sum(s for s, _ in seen) / len(seen), 2),
                "set_search_path": round(sum(s for _, s in seen) / len(seen), 2),
                "set_search_path_max": max(s for _, s in seen),
            }
    finally:
        pg_base.Cursor.execute = execute

    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        host = rng.choice(host_list)
        for way in rng.sample(WAYS, len(WAYS)):
            step = run(way, host)
            connection.ensure_connection()
            t0 = time.perf_counter()
            step()
            times[way].append((time.perf_counter() - t0) * 1e6)
            connection.close()
    load_after = os.getloadavg()[0]
    for raw in held:
        connection.pool.putconn(raw)
    base = {q: pct(times["fixed"], q) or 0.0 for q in (50, 99)}
    rows = []
    for way in WAYS:
        p50, p99 = pct(times[way], 50), pct(times[way], 99)
        rows.append(
            {
                "way": way,
                "p50_us": p50,
                "p99_us": p99,
                "max_us": pct(times[way], 100),
                "overhead_p50_us": round((p50 or 0) - base[50], 1),
                "overhead_p99_us": round((p99 or 0) - base[99], 1),
                **counts[way],
            }
        )
    return {
        "tenants": len(names),
        "domains": len(hosts),
        "rounds": rounds,
        "migrate_schemas_s": round(deploy_s, 1),
        "create_tenants_s": round(create_s, 1),
        "cpus": os.cpu_count(),
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "rows": rows,
    }


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    load = result["loadavg_1m"]
    print(
        f"{result['tenants']} tenants, {result['domains']} domains; {result['rounds']} rounds; "
        f"{result['cpus']} CPUs, load {load[0]} → {load[1]}"
    )
    print(
        f"{'way':20} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} {'+p50 µs':>8} {'+p99 µs':>8} "
        f"{'statements':>10} {'SETs':>5} {'SETs max':>8}"
    )
    for row in result["rows"]:
        print(
            f"{row['way']:20} {row['p50_us']!s:>8} {row['p99_us']!s:>8} {row['max_us']!s:>9} "
            f"{row['overhead_p50_us']!s:>8} {row['overhead_p99_us']!s:>8} "
            f"{row['statements']!s:>10} {row['set_search_path']!s:>5} "
            f"{row['set_search_path_max']!s:>8}"
        )


if __name__ == "__main__":
    sys.exit(main())
