#!/usr/bin/env python
"""Sign-up benchmark: N companies through the public sign-up, timed per step, beside the baseline
of creating an empty schema in the same run.

    .venv/bin/python bench/signup.py [--signups 100] [--json] [--keep]

What it does (docs/benchmarks.md, "Sign-up"):

1. A fresh database next to ``$DATABASE_URL``'s (its name + ``_signupbench``, dropped at the end
   unless ``--keep``), migrated by ``migrate_schemas`` as a deploy does (public + template, the
   spare schema pool filled).
2. The product's Celery worker (``celery -A weiyu worker --concurrency 2``, on a queue of this
   run in ``$REDIS_URL``) and an SMTP server of its own (aiosmtpd on 127.0.0.1) it sends mail to,
   as in production: the verification mail and the spare pool's refill are the worker's jobs.
3. ``--signups`` companies, each through the real HTTP views (Django's test client on the
   platform domain): ``POST /signup/`` (checks, the stored sign-up, the mail queued), the mail
   received over SMTP, then ``POST`` to its link (provisioning: a spare schema renamed, or the
   template copied when none is ready; the trial plan, the administrator), then the welcome link
   on the new domain (the administrator signed in, redirected to ``/admin/onboarding/``).
   Between two sign-ups, untimed: the worker refills the pool (awaited, as sign-ups seconds
   apart would find it), and the baseline: ``CREATE SCHEMA`` of an empty schema (and its drop),
   so both see the same load.
4. Prints p50/p95/max (ms) of the form, the mail's arrival, the verification (provisioning), the
   sign-in, the whole sign-up (form + verification + sign-in), the empty schema, and how many
   provisionings took a spare.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchdb import (  # bench/ is not a package: on sys.path
    ROOT,
    SchemaTimes,
    deploy,
    quantiles,
    scratch_database,
)

#: the Procfile's worker
WORKER = [sys.executable, "-m", "celery", "-A", "weiyu", "worker", "--concurrency", "2"]
#: seconds to wait for a mail or a refilled pool before the run fails
WAIT_S = 300.0


class Inbox:
    """What the SMTP server receives (aiosmtpd handler): ``messages`` = [email.message]."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def _wait(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"signup bench: no {what} after {WAIT_S:g} s")
        time.sleep(0.01)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    with scratch_database("signupbench", keep=args.keep):
        result = _measure(args.signups)
    _report(result, as_json=args.json)
    return 0


def _measure(signups: int) -> dict:
    """Deploy, start the worker and the SMTP server, then ``signups`` sign-ups through the pages,
    each beside an empty schema."""
    from aiosmtpd.controller import Controller

    queue = f"signupbench{os.getpid()}"
    os.environ["CELERY_QUEUE"] = queue  # this run's tasks, to this run's worker only
    os.environ["WEIYU_RATE_LIMITS"] = "off"  # one address signs up every company here
    os.environ["WEIYU_FAST_PASSWORD_HASHER"] = "1"  # noqa: S105 - a switch; the hash is not measured

    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from tenants import pool

    times: dict[str, list[float]] = {
        "form": [],
        "mail": [],
        "verify": [],
        "sign_in": [],
        "total": [],
        "empty_schema": [],
    }
    deploy_s = deploy()
    handler = SchemaTimes().attach()
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd needs one named)
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    worker = _worker_start(queue=queue, smtp_port=smtp_port)
    schemas = []
    try:
        for _n in range(signups):
            sub = f"s{uuid.uuid4().hex[:12]}"
            web = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
            mails = len(inbox.messages)
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
            mail = _wait(lambda n=mails: inbox.messages[n:], "verification mail")[0]
            t_mail = time.monotonic()
            body = mail.get_body(("plain",)).get_content()
            link = re.search(r"/signup/verify/\S+/", body).group(0)
            t2 = time.monotonic()
            response = web.post(link)
            t3 = time.monotonic()
            assert response.status_code == 302, response.content[:500]
            welcome = urlsplit(response["Location"])
            tenant_web = Client(HTTP_HOST=welcome.hostname)
            response = tenant_web.get(welcome.path)
            t4 = time.monotonic()
            assert response["Location"] == "/admin/onboarding/", response
            connection.set_schema_to_public()
            schemas.append(sub)
            times["form"].append((t1 - t0) * 1000)
            times["mail"].append((t_mail - t1) * 1000)
            times["verify"].append((t3 - t2) * 1000)
            times["sign_in"].append((t4 - t3) * 1000)
            times["total"].append((t1 - t0 + t4 - t2) * 1000)
            # the worker's refill, untimed: the next sign-up finds the pool as it would seconds
            # later in production
            _wait(lambda: len(pool.spare_schemas()) >= pool.pool_size(), "refilled spare pool")
            # the baseline, taking turns with the sign-ups
            empty = f"e{uuid.uuid4().hex[:12]}"
            with connection.cursor() as cursor:
                t0 = time.monotonic()
                cursor.execute(f'CREATE SCHEMA "{empty}"')
                times["empty_schema"].append((time.monotonic() - t0) * 1000)
                cursor.execute(f'DROP SCHEMA "{empty}"')
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        smtp.stop()
    hows = [handler.how.get(s, "") for s in schemas]
    return {
        "signups": signups,
        "migrate_schemas_s": round(deploy_s, 2),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "from_spare": sum(how.startswith("renamed") for how in hows),
        **{step: quantiles(values) for step, values in times.items()},
    }


def _worker_start(*, queue: str, smtp_port: int) -> subprocess.Popen[bytes]:
    """The product's Celery worker on this run's database and ``queue``, mailing to
    127.0.0.1:``smtp_port``; its output goes to ``.data/signupbench-worker.log``."""
    env = dict(
        os.environ,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        WEIYU_SEMANTIC="off",
    )
    log = ROOT / ".data" / "signupbench-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [*WORKER, "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _report(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['signups']} sign-ups; migrate_schemas (public + template) "
        f"{result['migrate_schemas_s']} s; {result['cpus']} CPUs, load {result['loadavg_1m']}"
    )
    print(f"provisioning took a spare schema {result['from_spare']} times of {result['signups']}")
    print(f"{'step':36} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    labels = {
        "form": "POST /signup/ (checks, mail queued)",
        "mail": "verification mail received (SMTP)",
        "verify": "POST verify link (provisioning)",
        "sign_in": "welcome link (signed in)",
        "total": "whole sign-up (form+verify+sign-in)",
        "empty_schema": "baseline: CREATE SCHEMA (empty)",
    }
    for step, label in labels.items():
        row = result[step]
        print(f"{label:36} {row['p50']!s:>8} {row['p95']!s:>8} {row['max']!s:>8}")


if __name__ == "__main__":
    sys.exit(main())
