"""``manage.py vapid_keygen``: a new VAPID key pair for web push alerts (org.push)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from django.core.management.base import BaseCommand
from py_vapid import Vapid02

from org.push import b64url


class Command(BaseCommand):
    help = (
        "Print a new VAPID key pair for web push: the WEIYU_VAPID_PRIVATE_KEY line to put in "
        "every server's environment, and its public key. Browsers subscribed with the old key "
        "must subscribe again (on their next visit to the Alerts page)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        vapid = Vapid02()
        vapid.generate_keys()
        private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
        public = vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.stdout.write(f"WEIYU_VAPID_PRIVATE_KEY={b64url(private)}")
        self.stdout.write(f"# public key (applicationServerKey): {b64url(public)}")
