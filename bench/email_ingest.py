#!/usr/bin/env python
"""E-mail ingest benchmark: a local IMAP server holding many mails, read by an e-mail channel.

    .venv/bin/python bench/email_ingest.py [--mails 10000] [--senders 500] [--reply-share 0.3]

What it does (docs/benchmarks.md, "E-mail ingest"):

1. Starts a real IMAP server (pymap, in memory) and appends ``--mails`` mails to its INBOX from
   ``--senders`` customers: plain-text mails with a signature and quoted history, a share
   (``--reply-share``) answering an earlier mail of the same customer (``In-Reply-To``), the
   rest starting new threads; one in 20 carries a small PDF.
2. **Baseline**: fetches every mail once and times the raw parse of all of them
   (:func:`kefu.channels.mail.mail_parse`: MIME, quote and signature trimming, attachments).
3. **Ingest**: an e-mail channel of the tenant ``bench`` (``$DATABASE_URL``, default
   ``…/weiyu_bench``) on a workgroup whose one online agent takes every conversation; :func:`kefu.channels.mail_inbound.
   imap_poll_once` is called until the folder is drained, with Celery eager, so each poll
   fetches, stores every mail once and handles it into the inbox (contact, thread,
   conversation, message, attachment) before the next. Prints mails/s of the ingest, the raw
   parse rate, their ratio, and checks that every mail is stored exactly once.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import random
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import (  # bench/ is not a package: found through sys.path
    ROOT,
    _ensure_database,
    agent_present,
    bench_env,
    bench_tenant,
)

USER, PASSWORD = "support", "bench-pass"
QUOTE = "\n\nBest regards,\n{name}\nCustomer Ltd\n\nOn Mon, 1 Dec 2026, Shop wrote:\n> {quoted}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _imap_start(port: int) -> subprocess.Popen:
    code = (
        "import sys; from pymap.main import main; sys.argv = ['pymap', '--host', '127.0.0.1', "
        f"'--port', '{port}', '--no-tls', '--no-service', 'admin', 'dict', '--demo-user', "
        f"'{USER}', '--demo-password', '{PASSWORD}']; main()"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            imaplib.IMAP4("127.0.0.1", port, timeout=5).logout()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the IMAP server did not start")


def _mails(count: int, senders: int, reply_share: float, to: str) -> list[bytes]:
    rng = random.Random(14)
    last_id: dict[int, str] = {}
    out = []
    for n in range(count):
        who = rng.randrange(senders)
        msg = EmailMessage()
        msg["From"] = f"Customer {who} <c{who}@customer.test>"
        msg["To"] = to
        msg["Message-ID"] = make_msgid(domain="customer.test")
        answering = who in last_id and rng.random() < reply_share
        msg["Subject"] = f"Re: question {who}" if answering else f"Question {n} from {who}"
        if answering:
            msg["In-Reply-To"] = msg["References"] = last_id[who]
        msg.set_content(
            f"Hello, this is mail {n}. Where is order {rng.randrange(10**6)}?"
            + QUOTE.format(name=f"Customer {who}", quoted="Your order has shipped.")
        )
        if n % 20 == 0:
            msg.add_attachment(
                b"%PDF-1.4 bench " + bytes(2048),
                maintype="application",
                subtype="pdf",
                filename="invoice.pdf",
            )
        last_id[who] = str(msg["Message-ID"])
        out.append(msg.as_bytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--reply-share", type=float, default=0.3)
    args = parser.parse_args()

    port = _free_port()
    env = bench_env()
    env["WEIYU_OUTBOUND_ALLOW"] = f"127.0.0.1:{port}"
    os.environ.update(env)
    _ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django_tenants.utils import schema_context

    from kefu.channels.mail import mail_parse
    from kefu.channels.mail_inbound import imap_poll_once
    from kefu.models import AgentState, Channel, ChannelAccount, ChannelEvent, Workgroup
    from kefu.services import agents as kefu_agents
    from org.models import User
    from weiyu.celery import app

    call_command("migrate_schemas", "--shared", interactive=False, verbosity=0)
    tenant = bench_tenant()
    app.conf.task_always_eager = True
    imap = _imap_start(port)
    try:
        address = f"help{os.getpid()}@shop.test"
        mails = _mails(args.mails, args.senders, args.reply_share, address)
        client = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        client.login(USER, PASSWORD)
        started = time.perf_counter()
        for raw in mails:
            client.append("INBOX", None, None, raw)
        print(f"appended {len(mails)} mails in {time.perf_counter() - started:.1f} s", flush=True)
        client.select("INBOX", readonly=True)
        _s, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        fetched = [bytes(item[1]) for item in data if isinstance(item, tuple)]
        client.logout()

        started = time.perf_counter()
        for raw in fetched:
            mail_parse(raw)
        parse_s = time.perf_counter() - started
        parse_rate = len(fetched) / parse_s

        with schema_context(tenant.schema_name):
            workgroup = Workgroup.objects.create(name=f"mail bench {os.getpid()}")
            # one agent who takes every conversation (a queue of thousands is another benchmark)
            agent = User.objects.create_user(
                username=f"mail{os.getpid()}", password=None, role="agent", display_name="Agent"
            )
            AgentState.objects.create(user=agent, max_concurrent=args.mails + 1)
            workgroup.agents.add(agent)
            agent_present(agent)
            kefu_agents.agent_status_set(user=agent, status=AgentState.Status.ONLINE)
            channel = Channel.objects.create(
                name=f"mail bench {os.getpid()}", kind="email", workgroup=workgroup
            )
            ChannelAccount.objects.create(
                channel=channel, email_address=address, imap_host="127.0.0.1", imap_port=port,
                imap_tls="none", imap_user=USER, imap_password=PASSWORD,
            )  # fmt: skip
            started = time.perf_counter()
            polls = 0
            while imap_poll_once(channel=channel):
                polls += 1
            ingest_s = time.perf_counter() - started
            stored = ChannelEvent.objects.filter(channel=channel).count()
            unhandled = ChannelEvent.objects.filter(channel=channel, handled_at=None).count()
            failed = ChannelEvent.objects.filter(channel=channel).exclude(error="").count()
        ingest_rate = stored / ingest_s
        print(f"raw parse:  {len(fetched)} mails in {parse_s:.2f} s = {parse_rate:,.0f} mails/s")
        print(
            f"ingest:     {stored} mails in {ingest_s:.1f} s over {polls} polls = "
            f"{ingest_rate:,.1f} mails/s (IMAP fetch, store once, thread, conversation, message)"
        )
        print(f"ratio ingest/parse: {ingest_rate / parse_rate:.3f}")
        print(f"stored once: {stored == len(mails)}; not handled: {unhandled}; errors: {failed}")
    finally:
        imap.terminate()
        imap.wait(timeout=30)


if __name__ == "__main__":
    main()
