"""The client's address, in one place: ``scope["client"]``, set by :class:`TrustedProxyMiddleware`.

Without trusted proxies (``WEIYU_TRUSTED_PROXIES`` empty, the default) the client is the TCP
peer and every ``X-Forwarded-For`` / ``X-Forwarded-Proto`` header is ignored: anyone can send
one. Behind a reverse proxy or load balancer, name its addresses (CIDRs, comma-separated); when
the peer is one of them, the client is the **right-most** address of ``X-Forwarded-For`` that is
not a trusted proxy — the one the outermost trusted proxy saw. Addresses further left were
written by the client itself and are never used. ``X-Forwarded-Proto`` (right-most value) then
gives the scheme, so Django sees ``https`` behind a TLS-terminating proxy.

Django's ``request.META["REMOTE_ADDR"]`` (django-axes, the widget's visitor records, every rate
limit) and websocket consumers (``scope["client"]``) read the result; nothing else parses
forwarded headers. :func:`client_ip` reads it from a scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7"`` → networks. Raises ``ImproperlyConfigured`` on a bad one."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"WEIYU_TRUSTED_PROXIES takes addresses or CIDRs, not {item!r}"
            ) from exc
    return tuple(networks)


@lru_cache(maxsize=1)
def _trusted() -> tuple[Network, ...]:
    return parse_networks(settings.WEIYU_TRUSTED_PROXIES)


@receiver(setting_changed)
def _proxies_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "WEIYU_TRUSTED_PROXIES":
        _trusted.cache_clear()


def _address(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address | None, networks: Iterable[Network]) -> bool:
    """Whether ``address`` lies in one of ``networks``."""
    return address is not None and any(address in net for net in networks)


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    values: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            values += value.decode("latin-1").split(",")
    return values


def resolve(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], networks: Iterable[Network]
) -> tuple[str | None, str | None]:
    """``(client address, scheme or None)`` of a connection from ``peer`` with ``headers``.

    The peer itself unless it is a trusted proxy; then the right-most untrusted address of
    ``X-Forwarded-For`` (all such headers, in order) — or the left-most when every one is
    trusted — and the right-most ``X-Forwarded-Proto`` (``http``/``https``). A value that is
    not an address stops the walk: the hop to its right (a trusted proxy) is the client."""
    networks = tuple(networks)
    peer_address = _address(peer) if peer else None
    if not networks or not is_trusted(peer_address, networks):
        return peer, None
    client = str(peer_address)
    for value in reversed(_header_values(headers, b"x-forwarded-for")):
        address = _address(value)
        if address is None:
            break
        client = str(address)
        if not is_trusted(address, networks):
            break
    protos = [p.strip().lower() for p in _header_values(headers, b"x-forwarded-proto")]
    scheme = protos[-1] if protos and protos[-1] in ("http", "https") else None
    return client, scheme


def client_ip(scope: dict[str, Any]) -> str:
    """The client's address of an ASGI scope (after :class:`TrustedProxyMiddleware`), or ``""``."""
    client = scope.get("client")
    return str(client[0]) if client else ""


class TrustedProxyMiddleware:
    """Replace ``scope["client"]`` (and ``scope["scheme"]``) by what trusted proxies forwarded,
    for HTTP and websocket connections alike (:func:`resolve`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket"):
            networks = _trusted()
            if networks:
                peer = scope.get("client")
                client, scheme = resolve(peer[0] if peer else None, scope["headers"], networks)
                scope = dict(scope, client=(client, 0) if client else peer)
                if scheme:
                    ws = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[scheme] if ws else scheme
        return await self.app(scope, receive, send)
