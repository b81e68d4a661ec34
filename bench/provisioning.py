#!/usr/bin/env python
"""Provisioning benchmark: time to create a tenant by cloning the template vs by migrating.

    .venv/bin/python bench/provisioning.py [--tenants 10] [--json] [--keep]

What it does (docs/benchmarks.md, "Provisioning"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_provbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does: public schema, then the
   template schema (tenants/template.py).
2. ``--tenants`` tenants provisioned through ``tenants.services.tenant_create`` (schema, domain,
   first administrator: what a sign-up waits for), alternately by cloning the template and, the
   baseline in the same run, with ``TENANT_TEMPLATE_SCHEMA`` empty (every migration run). Taking
   turns spreads the machine's load over both.
3. Prints per method the p50/p95/max of the whole ``tenant_create`` and of its schema step alone
   (from the service's log line), in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import quantiles, scratch_database  # bench/ is not a package: on sys.path


class _SchemaTimes(logging.Handler):
    """Collects ``tenant X: schema <how> in N ms`` from tenants.services."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ms: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "tenant %s: schema %s in %.0f ms":
            schema, _how, ms = record.args
            self.ms[schema] = ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10, help="tenants per method")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    with scratch_database("provbench", keep=args.keep):
        result = _measure(args.tenants)
    _report(result, as_json=args.json)
    return 0


def _measure(tenants: int) -> dict:
    """Deploy, then provision ``tenants`` tenants per method, taking turns (module docstring)."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from tenants.services import public_tenant_ensure, tenant_create

    started = time.monotonic()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    deploy_s = time.monotonic() - started
    public_tenant_ensure(domains=["localhost"])
    handler = _SchemaTimes()
    service_log = logging.getLogger("tenants.services")
    service_log.addHandler(handler)
    service_log.setLevel(logging.INFO)
    totals: dict[str, list[float]] = {"clone": [], "migrate": []}
    schemas: dict[str, list[str]] = {"clone": [], "migrate": []}
    for n in range(2 * tenants):
        method = "clone" if n % 2 == 0 else "migrate"
        schema = f"b{method[0]}_{uuid.uuid4().hex[:10]}"
        quiet = contextlib.redirect_stdout(io.StringIO())  # migrate_schemas' progress
        settings = {"TENANT_TEMPLATE_SCHEMA": ""} if method == "migrate" else {}
        with override_settings(**settings), quiet:
            started = time.monotonic()
            tenant_create(
                name=schema,
                schema_name=schema,
                domain=f"{schema.replace('_', '-')}.localhost",
                admin_username="admin",
                admin_password=uuid.uuid4().hex,
            )
            totals[method].append((time.monotonic() - started) * 1000)
        schemas[method].append(schema)
    result: dict = {
        "tenants_per_method": tenants,
        "migrate_schemas_s": round(deploy_s, 2),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    for method in ("migrate", "clone"):
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
        f"{result['migrate_schemas_s']} s; {result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    print(f"{'method':8} {'step':16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for method in ("migrate", "clone"):
        for step in ("tenant_create_ms", "schema_ms"):
            row = result[method][step]
            print(
                f"{method:8} {step[:-3]:16} {row['p50']!s:>8} {row['p95']!s:>8} {row['max']!s:>8}"
            )


if __name__ == "__main__":
    sys.exit(main())
