#!/usr/bin/env python
"""``migrate_schemas`` over many tenants: a no-op run and one ``AddField`` migration, each beside
its baseline of the same run.

    .venv/bin/python bench/migrate_schemas.py [--tenants 40] [--baseline-sample N] [--rounds 1]
                                              [--json] [--keep]

What it does (docs/benchmarks.md, "migrate_schemas at many tenants"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_migbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does, with the settings of
   ``bench/migbench_settings.py``: the product's plus ``migprobe``, a bench-only tenant app of one
   table whose migrations the bench writes into a temporary directory (removed at the end), so
   the product's migrations and ``makemigrations --check`` never see them.
2. ``--tenants`` tenants made cheaply (``scratchdb.tenants_make``: each schema a copy of the
   template, the rows in one statement); the time is printed on its own.
3. **No-op**: times ``migrate_schemas --tenant`` (every schema read once and skipped) and the
   baseline, Django's ``migrate`` in every schema (django-tenants' way, ``--all-schemas``), each
   twice, alternating, in this process with the system checks on as on the command line. With
   ``--baseline-sample N`` the baseline runs ``migrate_schemas --schema`` in N of the tenants
   instead and is extrapolated to all of them (printed as such).
4. **AddField**: per round, writes a migration adding one column to ``migprobe_probe`` and runs
   ``manage.py migrate_schemas --tenant`` in a child process as a deploy does, three times, each
   with a migration of its own: ``--all-schemas`` (the baseline: django-tenants' standard
   executor, Django's whole ``migrate`` in each schema, one after the other), then the command's
   own path with ``--executor=standard`` and with ``--executor=multiprocessing``
   (``TENANT_MULTIPROCESSING_MAX_PROCESSES`` = the CPUs). After each run every tenant schema
   and the template must have the column.

Prints seconds per run, ms per tenant, the ratios, and the goals of issue 16 at 1,000 tenants
(no-op ≤ 5 min, one AddField ≤ 10 min).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import ROOT, scratch_database, tenants_make  # bench/ is not a package: on sys.path

BENCH = Path(__file__).resolve().parent

PREFIX = "mb_"
#: issue 16's goals at 1,000 tenants, seconds
GOAL_NOOP_S = 300
GOAL_ADDFIELD_S = 600

_INITIAL = """from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Probe",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("label", models.CharField(default="", max_length=32)),
            ],
        ),
    ]
"""

_ADD_FIELD = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migprobe", "{parent}")]
    operations = [
        migrations.AddField(
            model_name="probe",
            name="{field}",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
    ]
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=0,
        help="run the no-op baseline in this many tenants and extrapolate (0: all of them)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="AddField runs per executor")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    migrations_dir = Path(tempfile.mkdtemp(prefix="migbench"))
    package = migrations_dir / "migprobe_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "0001_initial.py").write_text(_INITIAL)
    os.environ["WEIYU_MIGBENCH_DIR"] = str(migrations_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "migbench_settings"
    try:
        with scratch_database("migbench", keep=args.keep):
            result = _measure(
                args.tenants, sample=args.baseline_sample, rounds=args.rounds, package=package
            )
    finally:
        shutil.rmtree(migrations_dir)
    _report(result, as_json=args.json)
    return 0


def _noop(tenants: int, sample: int) -> dict:
    """The no-op runs (step 3 of the module's docstring): seconds per run, both ways."""
    from django.core.management import call_command

    from tenants.models import Tenant

    def migrate(*extra: str) -> float:
        with contextlib.redirect_stdout(io.StringIO()):
            started = time.monotonic()
            call_command("migrate_schemas", *extra, stdout=io.StringIO(), skip_checks=False)
            return time.monotonic() - started

    sampled = 0 < sample < tenants
    if sampled:
        schemas = list(
            Tenant.objects.filter(schema_name__startswith=PREFIX)
            .order_by("schema_name")
            .values_list("schema_name", flat=True)
        )
        picked = schemas[:: len(schemas) // sample][:sample]
    runs: dict[str, list[float]] = {"skip": [], "all": []}
    for _ in range(2):
        runs["skip"].append(migrate("--tenant"))
        if sampled:
            spent = sum(migrate("--schema", schema) for schema in picked)
            runs["all"].append(spent * tenants / sample)
        else:
            runs["all"].append(migrate("--tenant", "--all-schemas"))
    return {"sampled": sample if sampled else None, **runs}


def _add_field(schemas: list[str], *, rounds: int, package: Path) -> dict:
    """The AddField runs (step 4 of the module's docstring) over the tenant schemas ``schemas``:
    seconds per run per way."""
    from django.db import connection

    from tenants import template

    # every tenant and the template (not the spares: they are copied again after each run)
    expected = [*schemas, template.template_schema()]

    runs: dict[str, list[float]] = {"baseline": [], "standard": [], "multiprocessing": []}
    options = {
        "baseline": ["--all-schemas", "--executor=standard"],
        "standard": ["--executor=standard"],
        "multiprocessing": ["--executor=multiprocessing"],
    }
    parent = "0001_initial"
    number = 1
    log = package.parent / "migrate_schemas.log"
    for _ in range(rounds):
        for way, spent_runs in runs.items():
            number += 1
            field = f"added_{number}"
            name = f"{number:04d}_probe_{field}"
            (package / f"{name}.py").write_text(_ADD_FIELD.format(parent=parent, field=field))
            parent = name
            command = [sys.executable, "manage.py", "migrate_schemas", "--tenant", *options[way]]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])}
            with log.open("w") as out:
                started = time.monotonic()
                subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=out, check=False)
                spent = time.monotonic() - started
            printed = log.read_text()
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'migprobe_probe' AND column_name = %s "
                    "AND table_schema = ANY(%s)",
                    [field, expected],
                )
                (with_column,) = cursor.fetchone()
            skipping = way != "baseline"
            if with_column != len(expected) or (
                skipping and f"{len(schemas)} to migrate" not in printed
            ):
                raise RuntimeError(
                    f"{way}: {with_column} of {len(expected)} schemas have {field}:\n"
                    + printed[-3000:]
                )
            spent_runs.append(spent)
    return runs


def _measure(tenants: int, *, sample: int, rounds: int, package: Path) -> dict:
    """Deploy, clone ``tenants`` tenants, time the no-op and AddField runs."""
    import django

    django.setup()
    from django.core.management import call_command

    from tenants import template
    from tenants.models import Tenant
    from tenants.services import public_tenant_ensure

    with contextlib.redirect_stdout(io.StringIO()):
        call_command("migrate_schemas", interactive=False, verbosity=0)
    public_tenant_ensure(domains=["localhost"])
    _names, create_s = tenants_make(tenants, prefix=PREFIX)
    schemas = list(
        Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
    )
    assert template.schemas_behind(schemas) == [], "a cloned schema is not up to date"
    noop = _noop(tenants, sample)
    add = _add_field(schemas, rounds=rounds, package=package)
    best = {
        "skip": min(noop["skip"]),
        "all": min(noop["all"]),
        "add_baseline": min(add["baseline"]),
        "standard": min(add["standard"]),
        "multiprocessing": min(add["multiprocessing"]),
    }
    return {
        "tenants": tenants,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "create_s": round(create_s, 1),
        "noop": {
            "baseline_sampled_tenants": noop["sampled"],
            "skip_s": [round(v, 1) for v in noop["skip"]],
            "all_schemas_s": [round(v, 1) for v in noop["all"]],
            "skip_ms_per_tenant": round(best["skip"] * 1000 / tenants, 1),
            "all_ms_per_tenant": round(best["all"] * 1000 / tenants, 1),
            "ratio_all_to_skip": round(best["all"] / best["skip"], 1),
        },
        "add_field": {
            "baseline_s": [round(v, 1) for v in add["baseline"]],
            "standard_s": [round(v, 1) for v in add["standard"]],
            "multiprocessing_s": [round(v, 1) for v in add["multiprocessing"]],
            "baseline_ms_per_tenant": round(best["add_baseline"] * 1000 / tenants, 1),
            "standard_ms_per_tenant": round(best["standard"] * 1000 / tenants, 1),
            "multiprocessing_ms_per_tenant": round(best["multiprocessing"] * 1000 / tenants, 1),
            "ratio_baseline_to_standard": round(best["add_baseline"] / best["standard"], 2),
            "ratio_baseline_to_multiprocessing": round(
                best["add_baseline"] / best["multiprocessing"], 2
            ),
        },
        "at_1000_tenants_s": {key: round(value / tenants * 1000, 1) for key, value in best.items()},
    }


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    noop, add, at = result["noop"], result["add_field"], result["at_1000_tenants_s"]
    print(
        f"{result['tenants']} tenants (created in {result['create_s']} s, not counted below); "
        f"{result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    head = ("runs (s)", "ms/tenant", "1,000 tenants (s)")
    print(f"{'no-op migrate_schemas --tenant':42} {head[0]:>16} {head[1]:>10} {head[2]:>18}")
    print(
        f"{'skip up-to-date schemas (now)':42} {noop['skip_s']!s:>16} "
        f"{noop['skip_ms_per_tenant']:>10} {at['skip']:>18}"
    )
    label = "--all-schemas (baseline)"
    if noop["baseline_sampled_tenants"]:
        label = f"migrate in {noop['baseline_sampled_tenants']} tenants, extrapolated"
    print(
        f"{label:42} {noop['all_schemas_s']!s:>16} {noop['all_ms_per_tenant']:>10} {at['all']:>18}"
    )
    print(f"baseline / now: {noop['ratio_all_to_skip']}×; goal ≤ {GOAL_NOOP_S} s at 1,000")
    print(
        f"{'one AddField, migrate_schemas --tenant':42} {head[0]:>16} {head[1]:>10} {head[2]:>18}"
    )
    print(
        f"{'--all-schemas, standard (baseline)':42} {add['baseline_s']!s:>16} "
        f"{add['baseline_ms_per_tenant']:>10} {at['add_baseline']:>18}"
    )
    print(
        f"{'skipping path, standard':42} {add['standard_s']!s:>16} "
        f"{add['standard_ms_per_tenant']:>10} {at['standard']:>18}"
    )
    print(
        f"{'skipping path, multiprocessing ×' + str(result['cpus']):42} "
        f"{add['multiprocessing_s']!s:>16} {add['multiprocessing_ms_per_tenant']:>10} "
        f"{at['multiprocessing']:>18}"
    )
    print(
        f"baseline / standard: {add['ratio_baseline_to_standard']}×, baseline / "
        f"multiprocessing: {add['ratio_baseline_to_multiprocessing']}×; "
        f"goal ≤ {GOAL_ADDFIELD_S} s at 1,000"
    )


if __name__ == "__main__":
    sys.exit(main())
