"""The one HTTP client for URLs a tenant chooses (today: the LLM providers' base URL; tomorrow
webhooks): server-side request forgery kept out (docs/security.md, "Outgoing requests").

A tenant admin types a URL and the worker POSTs the API key and visitor text to it and shows the
answer as a draft, so a URL pointing inside our network would let them read our services. The
rules, checked by :func:`check_url` (for forms) and again on every connection:

- only ``http`` and ``https``;
- every address the host resolves to must be public: loopback, private (RFC 1918, ULA),
  link-local (cloud metadata ``169.254.169.254`` and ``fd00:ec2::254`` among them), shared
  (100.64/10, Alibaba's metadata ``100.100.100.200``), multicast, reserved and unspecified
  addresses are refused, IPv4-mapped IPv6 included;
- except the ``host:port`` pairs of ``settings.WEIYU_OUTBOUND_ALLOW`` (env
  ``WEIYU_OUTBOUND_ALLOW="127.0.0.1:11434,[::1]:11434"``), for self-hosted models;
- the socket connects to the address that was checked (resolution happens once, in
  :class:`_GuardedBackend.connect_tcp`), so a DNS answer that changes between check and connect
  (DNS rebinding) cannot reach a refused address; TLS still verifies the URL's host name;
- redirects are not followed, and each new connection (a caller that follows one itself)
  is checked the same way;
- a timeout for the whole exchange and a cap on the response size
  (``WEIYU_OUTBOUND_MAX_BYTES``, default 10 MB).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore2
import httpx2
from django.conf import settings
from django.utils.translation import gettext as _

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: bytes of response body read at most when settings.WEIYU_OUTBOUND_MAX_BYTES is not set
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: seconds to open a connection
CONNECT_TIMEOUT_S = 5.0


class OutboundRefusedError(httpx2.TransportError):
    """A URL or address the guard refuses; ``str(exc)`` says why, for the admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ResponseTooLargeError(httpx2.TransportError):
    """The response body went past the size cap."""


def parse_allow_list(raw: str) -> frozenset[tuple[str, int]]:
    """``"127.0.0.1:11434, [::1]:11434"`` → ``{("127.0.0.1", 11434), ("::1", 11434)}``.

    Raises ``ValueError`` for an entry that is not ``ip:port`` (host names are not accepted:
    the rule is about the address connected to)."""
    pairs = set()
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"WEIYU_OUTBOUND_ALLOW: {entry!r} is not ip:port")
        ip = ipaddress.ip_address(host.strip("[]"))
        pairs.add((str(ip), int(port)))
    return frozenset(pairs)


def _allowed() -> frozenset[tuple[str, int]]:
    return parse_allow_list(getattr(settings, "WEIYU_OUTBOUND_ALLOW", ""))


def is_public(ip: IpAddress) -> bool:
    """Whether an address may be reached: globally routable and not multicast (after unwrapping
    IPv4-mapped/6to4-style IPv6 to the IPv4 address inside)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            ip = inner
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of ``host`` to connect to on ``port``, each one public or allow-listed.

    Raises :class:`OutboundRefusedError` when the name does not resolve or when any address it
    resolves to is refused (one bad answer refuses the host: a name that also points inside is
    not one we talk to)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundRefusedError(
            _("The host %(host)s cannot be resolved.") % {"host": host}
        ) from exc
    allowed = _allowed()
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not is_public(ip) and (str(ip), port) not in allowed:
            raise OutboundRefusedError(
                _(
                    "%(host)s resolves to %(ip)s, a private, loopback or reserved address; "
                    "outgoing requests may only go to public addresses (the platform operator "
                    "can allow a self-hosted service in WEIYU_OUTBOUND_ALLOW)."
                )
                % {"host": host, "ip": ip}
            )
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise OutboundRefusedError(_("The host %(host)s cannot be resolved.") % {"host": host})
    return addresses


def check_url(url: str) -> None:
    """Refuse a URL a tenant may not make us call (the rules in this module's docstring).

    Raises :class:`OutboundRefusedError` with a message for the admin."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OutboundRefusedError(_("Only http:// and https:// addresses can be used."))
    if not parts.hostname:
        raise OutboundRefusedError(_("The address has no host."))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise OutboundRefusedError(_("The address has an invalid port.")) from exc
    checked_addresses(parts.hostname, port)


class _GuardedBackend(httpcore2.SyncBackend):
    """Resolves once, checks every address, connects to a checked one."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = checked_addresses(host, port)
        except OutboundRefusedError as exc:
            # httpcore maps its own errors only; this one keeps its message through httpx
            raise httpcore2.ConnectError(str(exc)) from exc
        for address in addresses[:-1]:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore2.ConnectError:
                continue  # the next checked address of the host
        return super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)


class _CappedStream(httpx2.SyncByteStream):
    def __init__(self, stream: httpx2.SyncByteStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLargeError(f"response larger than {self._limit} bytes")
            yield chunk

    def close(self) -> None:
        self._stream.close()


class GuardedTransport(httpx2.HTTPTransport):
    """An httpx2 transport that applies this module's rules; proxies from the environment are
    ignored (they would connect for us to addresses we did not check)."""

    def __init__(self, *, max_bytes: int | None = None) -> None:
        super().__init__(trust_env=False)
        ssl_context = httpx2.create_ssl_context(trust_env=False)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context, network_backend=_GuardedBackend(), max_connections=10
        )
        self._max_bytes = max_bytes or getattr(
            settings, "WEIYU_OUTBOUND_MAX_BYTES", DEFAULT_MAX_BYTES
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.scheme not in ("http", "https"):
            raise OutboundRefusedError(_("Only http:// and https:// addresses can be used."))
        response = super().handle_request(request)
        response.stream = _CappedStream(
            cast(httpx2.SyncByteStream, response.stream), self._max_bytes
        )
        return response


def guarded_client(*, timeout_s: float, max_bytes: int | None = None) -> httpx2.Client:
    """An ``httpx2.Client`` for a tenant-chosen URL: :class:`GuardedTransport`, redirects off,
    ``timeout_s`` seconds for reads and writes (``CONNECT_TIMEOUT_S`` to connect), at most
    ``max_bytes`` of response. Pass it to SDKs as their HTTP client (``openai.OpenAI(
    http_client=...)``)."""
    return httpx2.Client(
        transport=GuardedTransport(max_bytes=max_bytes),
        timeout=httpx2.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        follow_redirects=False,
        trust_env=False,
    )
