#!/usr/bin/env python
"""A no-op ``migrate_schemas`` over many tenants: skipping schemas already up to date vs running
Django's ``migrate`` in each (django-tenants' way, ``--all-schemas``), in the same run.

    .venv/bin/python bench/migrate_schemas.py [--tenants 40] [--json] [--keep]

What it does (docs/benchmarks.md, "migrate_schemas at many tenants"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_migbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does.
2. ``--tenants`` tenants: rows and domains written directly, each schema cloned from the
   template (tenants/template.py) — the same schema ``tenant_create`` makes, without the
   administrator.
3. Times ``migrate_schemas --tenant`` (nothing to do: every schema is read once and skipped)
   and ``migrate_schemas --tenant --all-schemas`` (the baseline: ``migrate`` in every schema),
   each twice, alternating; prints seconds per run, ms per tenant and the ratio, and what 1,000
   tenants would take at the measured rate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/weiyu_bench"


def _admin(database_url: str, *statements: str) -> None:
    import psycopg

    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        for statement in statements:
            conn.execute(statement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    base_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(base_url)
    dbname = f"{parts.path.lstrip('/')}_migbench"
    database_url = urlunsplit(parts._replace(path=f"/{dbname}"))
    _admin(database_url, f'DROP DATABASE IF EXISTS "{dbname}"', f'CREATE DATABASE "{dbname}"')
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from tenants import template
    from tenants.models import Domain, Tenant
    from tenants.services import public_tenant_ensure

    def migrate(*extra: str) -> float:
        with contextlib.redirect_stdout(io.StringIO()):
            started = time.monotonic()
            call_command("migrate_schemas", "--tenant", *extra, stdout=io.StringIO())
            return time.monotonic() - started

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            call_command("migrate_schemas", interactive=False, verbosity=0)
        public_tenant_ensure(domains=["localhost"])
        source = template.template_schema()
        started = time.monotonic()
        for _ in range(args.tenants):
            schema = f"mb_{uuid.uuid4().hex[:10]}"
            template.schema_clone(source=source, target=schema)
            connection.set_schema_to_public()
            tenant = Tenant(name=schema, schema_name=schema)
            Tenant.objects.bulk_create([tenant])  # no save(): the schema exists already
            tenant = Tenant.objects.get(schema_name=schema)
            Domain.objects.create(tenant=tenant, domain=f"{schema.replace('_', '-')}.localhost")
        create_s = time.monotonic() - started
        assert (
            template.schemas_behind(
                list(
                    Tenant.objects.exclude(schema_name="public").values_list(
                        "schema_name", flat=True
                    )
                )
            )
            == []
        ), "a cloned schema is not up to date"
        runs: dict[str, list[float]] = {"skip": [], "all": []}
        for _ in range(2):
            runs["skip"].append(migrate())
            runs["all"].append(migrate("--all-schemas"))
        # the template schema is migrated in both (one schema): subtract it from neither
        best = {k: min(v) for k, v in runs.items()}
        result = {
            "tenants": args.tenants,
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "create_s": round(create_s, 1),
            "skip_s": [round(v, 2) for v in runs["skip"]],
            "all_schemas_s": [round(v, 2) for v in runs["all"]],
            "skip_ms_per_tenant": round(best["skip"] * 1000 / args.tenants, 1),
            "all_ms_per_tenant": round(best["all"] * 1000 / args.tenants, 1),
            "ratio_all_to_skip": round(best["all"] / best["skip"], 1),
            "at_1000_tenants_s": {
                "skip": round(best["skip"] / args.tenants * 1000, 1),
                "all_schemas": round(best["all"] / args.tenants * 1000, 1),
            },
        }
    finally:
        connection.close()
        if not args.keep:
            _admin(
                base_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own name
                f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
                f'DROP DATABASE IF EXISTS "{dbname}"',
            )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.tenants} tenants (created in {result['create_s']} s); {result['cpus']} CPUs, "
        f"load {result['loadavg_1m']}"
    )
    print(
        f"{'no-op migrate_schemas --tenant':34} {'runs (s)':>16} {'ms/tenant':>10} {'1,000 tenants (s)':>18}"
    )
    print(
        f"{'skip up-to-date schemas (now)':34} {result['skip_s']!s:>16} "
        f"{result['skip_ms_per_tenant']:>10} {result['at_1000_tenants_s']['skip']:>18}"
    )
    print(
        f"{'--all-schemas (baseline)':34} {result['all_schemas_s']!s:>16} "
        f"{result['all_ms_per_tenant']:>10} {result['at_1000_tenants_s']['all_schemas']:>18}"
    )
    print(f"baseline / now: {result['ratio_all_to_skip']}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
