"""``manage.py telegram_poll --tenant acme --channel 7 [--once] [--timeout 30]``: receive a
Telegram bot's updates by long polling instead of a webhook (a server Telegram cannot reach,
development). Runs until stopped; each update is stored once and handled by the Celery workers
like a webhook call (docs/channels.md)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context

from kefu.channels.base import DeliveryError
from kefu.channels.inbound import telegram_poll_once
from kefu.models import Channel


class Command(BaseCommand):
    help = "Receive a Telegram bot channel's updates by long polling (instead of the webhook)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's schema name")
        parser.add_argument("--channel", type=int, required=True, help="the channel's id")
        parser.add_argument("--once", action="store_true", help="poll once, then stop")
        parser.add_argument(
            "--timeout", type=int, default=30, help="seconds Telegram may hold a poll (0-50)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        schema = opts["tenant"]
        if not get_tenant_model().objects.filter(schema_name=schema).exists():
            raise CommandError(f"no tenant with schema {schema!r}")
        if not 0 <= opts["timeout"] <= 50:
            raise CommandError("--timeout is 0 to 50 seconds")
        with schema_context(schema):
            channel = Channel.objects.filter(
                pk=opts["channel"], kind=Channel.Kind.TELEGRAM, is_active=True
            ).first()
            if channel is None or not hasattr(channel, "account"):
                raise CommandError("no active Telegram channel with an account has this id")
            while True:
                try:
                    count = telegram_poll_once(channel=channel, timeout_s=opts["timeout"])
                    self.stdout.write(f"{count} update(s)")
                except DeliveryError as exc:
                    if opts["once"]:
                        raise CommandError(exc.message) from exc
                    self.stderr.write(exc.message)
                    time.sleep(5)  # Telegram unreachable: poll again shortly
                if opts["once"]:
                    return
