"""``manage.py email_poll --tenant acme --channel 7``: fetch an e-mail channel's new mails from
its IMAP folder now (the beat does it every ``WEIYU_EMAIL_POLL_S`` seconds; docs/channels.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_tenant_model, schema_context

from kefu.channels.base import DeliveryError
from kefu.channels.mail_inbound import imap_poll_once
from kefu.models import Channel


class Command(BaseCommand):
    help = "Fetch an e-mail channel's new mails from its IMAP folder now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's schema name")
        parser.add_argument("--channel", type=int, required=True, help="the channel's id")

    def handle(self, *args: Any, **opts: Any) -> None:
        schema = opts["tenant"]
        if not get_tenant_model().objects.filter(schema_name=schema).exists():
            raise CommandError(f"no tenant with schema {schema!r}")
        with schema_context(schema):
            channel = Channel.objects.filter(
                pk=opts["channel"], kind=Channel.Kind.EMAIL, is_active=True
            ).first()
            if channel is None or not hasattr(channel, "account"):
                raise CommandError("no active e-mail channel with an account has this id")
            try:
                count = imap_poll_once(channel=channel)
            except DeliveryError as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(f"{count} new mail(s)")
