"""Pure helpers of visitor blocking (KF-11); the blocking services live in
:mod:`kefu.services.blocking`. Imported by :mod:`kefu.models`, so it imports no kefu module."""

from __future__ import annotations

import ipaddress
from typing import Any


def parse_network(value: str) -> Any:
    """An ``ipaddress`` network for ``value`` (a single address is a /32 or /128), or None."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
