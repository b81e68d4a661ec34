"""``manage.py create_tenant``: provision a tenant from the shell (TEN-1)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.services import tenant_create
from weiyu.errors import ServiceError


class Command(BaseCommand):
    help = "Create a tenant with its own schema, a domain and a first administrator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Acme Inc.'")
        parser.add_argument("--schema", required=True, help="PostgreSQL schema, e.g. acme")
        parser.add_argument("--domain", required=True, help="Host name, e.g. acme.localhost")
        parser.add_argument("--admin-username", required=True)
        parser.add_argument("--admin-email", default="")
        parser.add_argument(
            "--admin-password",
            help="Password of the first administrator (default: $WEIYU_ADMIN_PASSWORD, else asked).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["admin_password"] or os.environ.get("WEIYU_ADMIN_PASSWORD")
        if not password:
            if not options.get("interactive", True) or not os.isatty(0):
                raise CommandError("Give --admin-password or set WEIYU_ADMIN_PASSWORD.")
            password = getpass.getpass("Password for the first administrator: ")
        try:
            tenant = tenant_create(
                name=options["name"],
                schema_name=options["schema"],
                domain=options["domain"],
                admin_username=options["admin_username"],
                admin_password=password,
                admin_email=options["admin_email"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Created tenant {tenant.name!r} (schema {tenant.schema_name}) at {options['domain']}"
            )
        )
