"""``manage.py email_smtpd [--host 0.0.0.0] [--port 2525]``: the inbound SMTP endpoint of the
e-mail channels (docs/channels.md, "E-mail"). Point the support addresses' MX (or a forwarding
rule of the mail provider) at it; mail for an active e-mail channel's address is stored and
handled like an IMAP-fetched mail, any other recipient is refused (550). Runs until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kefu.channels.mail_inbound import InboundSmtpHandler


class Command(BaseCommand):
    help = "Receive mail for the e-mail channels' addresses over SMTP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
        parser.add_argument("--port", type=int, default=2525, help="the port to listen on")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not 1 <= opts["port"] <= 65535:
            raise CommandError("--port is 1 to 65535")
        controller = Controller(
            InboundSmtpHandler(),
            hostname=opts["host"],
            port=opts["port"],
            data_size_limit=settings.WEIYU_EMAIL_MAX_BYTES,
        )
        controller.start()
        self.stdout.write(f"receiving mail on {opts['host']}:{opts['port']}")
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            loop.run_until_complete(stop.wait())
        finally:
            controller.stop()
            loop.close()
