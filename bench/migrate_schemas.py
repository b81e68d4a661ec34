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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import scratch_database  # bench/ is not a package: found through sys.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    with scratch_database("migbench", keep=args.keep):
        result = _measure(args.tenants)
    _report(result, as_json=args.json)
    return 0


def _measure(tenants: int) -> dict:
    """Deploy, clone ``tenants`` tenants, time the two no-op runs (see the module's docstring)."""
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

    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate_schemas", interactive=False, verbosity=0)
    public_tenant_ensure(domains=["localhost"])
    source = template.template_schema()
    started = time.monotonic()
    for _ in range(tenants):
        schema = f"mb_{uuid.uuid4().hex[:10]}"
        template.schema_clone(source=source, target=schema)
        connection.set_schema_to_public()
        Tenant.objects.bulk_create(
            [Tenant(name=schema, schema_name=schema)]
        )  # no save(): no schema
        tenant = Tenant.objects.get(schema_name=schema)
        Domain.objects.create(tenant=tenant, domain=f"{schema.replace('_', '-')}.localhost")
    create_s = time.monotonic() - started
    schemas = list(
        Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
    )
    assert template.schemas_behind(schemas) == [], "a cloned schema is not up to date"
    runs: dict[str, list[float]] = {"skip": [], "all": []}
    for _ in range(2):
        runs["skip"].append(migrate())
        runs["all"].append(migrate("--all-schemas"))
    # the template schema is migrated in both (one schema): subtracted from neither
    best = {k: min(v) for k, v in runs.items()}
    return {
        "tenants": tenants,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "create_s": round(create_s, 1),
        "skip_s": [round(v, 2) for v in runs["skip"]],
        "all_schemas_s": [round(v, 2) for v in runs["all"]],
        "skip_ms_per_tenant": round(best["skip"] * 1000 / tenants, 1),
        "all_ms_per_tenant": round(best["all"] * 1000 / tenants, 1),
        "ratio_all_to_skip": round(best["all"] / best["skip"], 1),
        "at_1000_tenants_s": {
            "skip": round(best["skip"] / tenants * 1000, 1),
            "all_schemas": round(best["all"] / tenants * 1000, 1),
        },
    }


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['tenants']} tenants (created in {result['create_s']} s); {result['cpus']} CPUs, "
        f"load {result['loadavg_1m']}"
    )
    head = ("no-op migrate_schemas --tenant", "runs (s)", "ms/tenant", "1,000 tenants (s)")
    print(f"{head[0]:34} {head[1]:>16} {head[2]:>10} {head[3]:>18}")
    print(
        f"{'skip up-to-date schemas (now)':34} {result['skip_s']!s:>16} "
        f"{result['skip_ms_per_tenant']:>10} {result['at_1000_tenants_s']['skip']:>18}"
    )
    print(
        f"{'--all-schemas (baseline)':34} {result['all_schemas_s']!s:>16} "
        f"{result['all_ms_per_tenant']:>10} {result['at_1000_tenants_s']['all_schemas']:>18}"
    )
    print(f"baseline / now: {result['ratio_all_to_skip']}×")


if __name__ == "__main__":
    sys.exit(main())
