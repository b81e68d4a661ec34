"""``manage.py email_idle --tenant acme --channel 7``: receive an e-mail channel's mail as soon
as it arrives, with IMAP IDLE, instead of waiting for the beat's next poll (docs/channels.md,
"E-mail"). Fetches what is new, waits in IDLE (at most ``--wait`` seconds), fetches again, and
so on until stopped. For a server without IDLE, rely on the beat's polling."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context

from kefu.channels.base import DeliveryError
from kefu.channels.mail_inbound import imap_idle_wait, imap_poll_once
from kefu.models import Channel


class Command(BaseCommand):
    help = "Receive an e-mail channel's mail as it arrives (IMAP IDLE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's schema name")
        parser.add_argument("--channel", type=int, required=True, help="the channel's id")
        parser.add_argument(
            "--wait", type=int, default=1500, help="seconds in IDLE before polling anyway (≤1740)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        schema = opts["tenant"]
        if not get_tenant_model().objects.filter(schema_name=schema).exists():
            raise CommandError(f"no tenant with schema {schema!r}")
        if not 10 <= opts["wait"] <= 1740:
            raise CommandError("--wait is 10 to 1740 seconds (servers end IDLE after 30 minutes)")
        with schema_context(schema):
            channel = Channel.objects.filter(
                pk=opts["channel"], kind=Channel.Kind.EMAIL, is_active=True
            ).first()
            if channel is None or not hasattr(channel, "account"):
                raise CommandError("no active e-mail channel with an account has this id")
            while True:
                try:
                    count = imap_poll_once(channel=channel)
                    self.stdout.write(f"{count} new mail(s)")
                    imap_idle_wait(channel=channel, timeout_s=opts["wait"])
                except DeliveryError as exc:
                    if exc.permanent:
                        raise CommandError(exc.message) from exc
                    self.stderr.write(exc.message)
                    time.sleep(30)  # the server is unreachable: try again shortly
