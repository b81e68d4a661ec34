#!/usr/bin/env python
"""Sign-up benchmark: N companies through the public sign-up, timed per step, beside the baseline
of creating an empty schema in the same run.

    .venv/bin/python bench/signup.py [--signups 20] [--json] [--keep]

What it does (docs/benchmarks.md, "Sign-up"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_signupbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does (public + template).
2. ``--signups`` companies, each through the real HTTP views (Django's test client on the
   platform domain): ``POST /signup/`` (checks, the stored sign-up, the verification mail
   composed by the task — run in process, into memory), then ``POST`` to the mail's link
   (provisioning: the template clone, the trial plan, the administrator), then the welcome link
   on the new domain (the administrator signed in, redirected to ``/admin/onboarding/``).
   Between two sign-ups, the baseline: ``CREATE SCHEMA`` of an empty schema (and its drop), so
   both see the same load.
3. Prints p50/p95/max (ms) of the form, the verification (provisioning), the sign-in, the whole
   sign-up, and the empty schema.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import quantiles, scratch_database  # bench/ is not a package: on sys.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    with scratch_database("signupbench", keep=args.keep):
        result = _measure(args.signups)
    _report(result, as_json=args.json)
    return 0


def _measure(signups: int) -> dict:
    """Deploy, then ``signups`` sign-ups through the pages, each beside an empty schema."""
    os.environ["WEIYU_RATE_LIMITS"] = "off"  # one address signs up every company here
    os.environ["WEIYU_FAST_PASSWORD_HASHER"] = "1"  # noqa: S105 - a switch; the hash is not measured

    import django

    django.setup()
    from django.core import mail
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client, override_settings

    from tenants.services import public_tenant_ensure
    from weiyu.celery import app

    app.conf.task_always_eager = True  # the verification mail is composed in this process
    times: dict[str, list[float]] = {
        "form": [],
        "verify": [],
        "sign_in": [],
        "total": [],
        "empty_schema": [],
    }
    started = time.monotonic()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    deploy_s = time.monotonic() - started
    public_tenant_ensure(domains=["localhost"])
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        mail.outbox = []
        for _n in range(signups):
            sub = f"s{uuid.uuid4().hex[:12]}"
            web = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
            t0 = time.monotonic()
            response = web.post(
                "/signup/",
                {
                    "company": f"Company {sub}",
                    "subdomain": sub,
                    "email": f"owner@{sub}.example.com",
                    "password": "a-long-and-unusual-passphrase",
                    "website": "",
                },
            )
            t1 = time.monotonic()
            assert response.status_code == 200, response.content[:500]
            link = re.search(r"/signup/verify/\S+/", mail.outbox[-1].body).group(0)
            response = web.post(link)
            t2 = time.monotonic()
            assert response.status_code == 302, response.content[:500]
            welcome = urlsplit(response["Location"])
            tenant_web = Client(HTTP_HOST=welcome.hostname)
            response = tenant_web.get(welcome.path)
            t3 = time.monotonic()
            assert response["Location"] == "/admin/onboarding/", response
            connection.set_schema_to_public()
            times["form"].append((t1 - t0) * 1000)
            times["verify"].append((t2 - t1) * 1000)
            times["sign_in"].append((t3 - t2) * 1000)
            times["total"].append((t3 - t0) * 1000)
            # the baseline, taking turns with the sign-ups
            empty = f"e{uuid.uuid4().hex[:12]}"
            with connection.cursor() as cursor:
                t0 = time.monotonic()
                cursor.execute(f'CREATE SCHEMA "{empty}"')
                times["empty_schema"].append((time.monotonic() - t0) * 1000)
                cursor.execute(f'DROP SCHEMA "{empty}"')
    return {
        "signups": signups,
        "migrate_schemas_s": round(deploy_s, 2),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **{step: quantiles(values) for step, values in times.items()},
    }


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['signups']} sign-ups; migrate_schemas (public + template) "
        f"{result['migrate_schemas_s']} s; {result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    print(f"{'step':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    labels = {
        "form": "POST /signup/ (checks, mail)",
        "verify": "POST verify link (provisioning)",
        "sign_in": "welcome link (signed in)",
        "total": "whole sign-up",
        "empty_schema": "baseline: CREATE SCHEMA (empty)",
    }
    for step, label in labels.items():
        row = result[step]
        print(f"{label:34} {row['p50']!s:>8} {row['p95']!s:>8} {row['max']!s:>8}")


if __name__ == "__main__":
    sys.exit(main())
