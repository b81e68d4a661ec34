#!/usr/bin/env python
"""Provisioning benchmark: time to create a tenant from the spare pool vs by copying the template.

    .venv/bin/python bench/provisioning.py [--tenants 10] [--burners 2] [--migrate] [--json] [--keep]

What it does (docs/benchmarks.md, "Provisioning"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_provbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does: public schema, then the
   template schema (tenants/template.py).
2. ``--burners`` processes that only spin the CPU, started beside it (the loaded machine).
3. ``--tenants`` tenants per method provisioned through ``tenants.services.tenant_create``
   (schema, domain, first administrator: what a sign-up waits for), taking turns so every method
   sees the same load:

   - ``clone`` (the baseline: provisioning before the pool): the template copied while the
     tenant waits, the administrator's password hashed then;
   - ``pool``: a spare schema renamed (tenants/pool.py) with the password hash made earlier, as
     the sign-up form does; the pool is refilled between two tenants, untimed (a worker's job);
   - ``migrate`` (with ``--migrate``): ``TENANT_TEMPLATE_SCHEMA`` empty, every migration run.
4. Prints per method the p50/p95/max of the whole ``tenant_create`` and of its schema step alone
   (from the service's log line), in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import SchemaTimes, deploy, quantiles, scratch_database  # bench/: on sys.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10, help="tenants per method")
    parser.add_argument("--burners", type=int, default=0, help="CPU-spinning processes beside")
    parser.add_argument("--migrate", action="store_true", help="also time migrating a schema")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    burners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.burners)]
    for burner in burners:
        burner.start()
    try:
        with scratch_database("provbench", keep=args.keep):
            result = _measure(args.tenants, with_migrate=args.migrate)
    finally:
        for burner in burners:
            burner.terminate()
            burner.join()
    result["burners"] = args.burners
    _report(result, as_json=args.json)
    return 0


def _spin() -> None:
    """A CPU burner: loops until terminated."""
    n = 0
    while True:
        n = (n + 1) % 1_000_003


def _measure(tenants: int, *, with_migrate: bool) -> dict:
    """Deploy, then provision ``tenants`` tenants per method, taking turns (module docstring)."""
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.test import override_settings

    from tenants import pool
    from tenants.services import tenant_create

    deploy_s = deploy()
    handler = SchemaTimes().attach()
    methods = ("clone", "pool", "migrate") if with_migrate else ("clone", "pool")
    totals: dict[str, list[float]] = {method: [] for method in methods}
    schemas: dict[str, list[str]] = {method: [] for method in methods}
    for n in range(len(methods) * tenants):
        method = methods[n % len(methods)]
        schema = f"b{method[0]}_{uuid.uuid4().hex[:10]}"
        quiet = contextlib.redirect_stdout(io.StringIO())  # migrate_schemas' progress
        settings = {"WEIYU_SPARE_SCHEMAS": 1 if method == "pool" else 0}
        if method == "migrate":
            settings["TENANT_TEMPLATE_SCHEMA"] = ""
        credentials = {"admin_password": uuid.uuid4().hex}
        with override_settings(**settings), quiet:
            if method == "pool":
                pool.spares_fill()  # a worker's job between two sign-ups: untimed
                # hashed when the sign-up form was sent, not while the tenant is made
                credentials = {"admin_password_hash": make_password(uuid.uuid4().hex)}
            started = time.monotonic()
            tenant_create(
                name=schema,
                schema_name=schema,
                domain=f"{schema.replace('_', '-')}.localhost",
                admin_username="admin",
                **credentials,
            )
            totals[method].append((time.monotonic() - started) * 1000)
        schemas[method].append(schema)
    result: dict = {
        "tenants_per_method": tenants,
        "migrate_schemas_s": round(deploy_s, 2),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    result["methods"] = list(methods)
    for method in methods:
        schema_ms = [handler.ms[s] for s in schemas[method] if s in handler.ms]
        result[method] = {
            "tenant_create_ms": quantiles(totals[method]),
            "schema_ms": quantiles(schema_ms),
        }
    return result


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['tenants_per_method']} tenants per method; migrate_schemas (public + template) "
        f"{result['migrate_schemas_s']} s; {result['cpus']} CPUs, {result['burners']} CPU "
        f"burners, load {result['loadavg_1m']}"
    )
    print(f"{'method':8} {'step':16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for method in result["methods"]:
        for step in ("tenant_create_ms", "schema_ms"):
            row = result[method][step]
            print(
                f"{method:8} {step[:-3]:16} {row['p50']!s:>8} {row['p95']!s:>8} {row['max']!s:>8}"
            )


if __name__ == "__main__":
    sys.exit(main())
