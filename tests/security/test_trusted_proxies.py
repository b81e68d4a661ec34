"""Finding 6 of issue 12: ``X-Forwarded-For`` was believed from anyone (daphne's
``--proxy-headers`` takes its left-most value), so a visitor chose its address, dodged address
blocks and got others blocked. Now forwarded headers count only from ``WEIYU_TRUSTED_PROXIES``,
and the client is the right-most address they did not write (weiyu.clientaddr)."""

from __future__ import annotations

import ipaddress
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import override_settings
from django_tenants.utils import schema_context

from kefu.models import Visitor
from tests.conftest import make_desk
from tests.waits import WAIT_S
from weiyu.asgi import application
from weiyu.clientaddr import TrustedProxyMiddleware, parse_networks, resolve

PROXIES = parse_networks("10.0.0.0/8, 2001:db8::/32")


def _headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # no proxy in front: the header is the client's own writing, ignored
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # one trusted proxy: the address it appended; the left-most (spoofed) one is ignored
        ("10.0.0.2", "1.2.3.4, 198.51.100.7", "198.51.100.7"),
        # two trusted proxies in a row: still the right-most untrusted hop
        ("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.1.1.1", "198.51.100.7"),
        # every hop trusted: the left-most
        ("10.0.0.2", "10.9.9.9, 10.1.1.1", "10.9.9.9"),
        # garbage left of a good hop stops the walk there
        ("10.0.0.2", "not-an-ip, 198.51.100.7", "198.51.100.7"),
        # garbage written by the client where the proxy's hop should be: the proxy itself
        ("10.0.0.2", "198.51.100.7, <script>", "10.0.0.2"),
        # a trusted peer without the header
        ("10.0.0.2", None, "10.0.0.2"),
        # IPv6 proxy, port-suffixed and bracketed values
        ("2001:db8::1", "[2001:db8:ffff::5]:443, 198.51.100.8:1234", "198.51.100.8"),
        ("2001:db8::1", "2001:db8::2, 2a00:1450::1", "2a00:1450::1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(peer, forwarded, client):
    headers = _headers(("x-forwarded-for", forwarded)) if forwarded else []
    assert resolve(peer, headers, PROXIES)[0] == client


def test_several_forwarded_headers_are_read_in_order():
    headers = _headers(("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "198.51.100.9"))
    assert resolve("10.0.0.2", headers, PROXIES)[0] == "198.51.100.9"


def test_the_scheme_comes_from_a_trusted_proxy_only():
    headers = _headers(("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "https"))
    assert resolve("10.0.0.2", headers, PROXIES) == ("198.51.100.7", "https")
    assert resolve("203.0.113.9", headers, PROXIES) == ("203.0.113.9", None)
    odd = _headers(("x-forwarded-proto", "gopher"))
    assert resolve("10.0.0.2", odd, PROXIES) == ("10.0.0.2", None)


def test_a_bad_proxy_setting_is_refused_at_start():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        parse_networks("10.0.0.0/8, proxy.internal")


async def _start_session(peer: str, channel: str, *headers: tuple[str, str]) -> dict:
    body = json.dumps({"channel": channel}).encode()
    communicator = HttpCommunicator(
        application,
        "POST",
        "/api/v1/widget/session",
        body=body,
        headers=_headers(
            ("host", "acme.localhost"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            *headers,
        ),
    )
    communicator.scope["client"] = (peer, 40000)
    response = await communicator.get_response(timeout=WAIT_S)
    assert response["status"] == 200, response["body"]
    return json.loads(response["body"])


def _ip_of(visitor_id: int) -> str:
    with schema_context("acme"):
        return str(Visitor.objects.get(pk=visitor_id).ip_address)


def test_a_visitor_behind_no_trusted_proxy_cannot_choose_its_address(acme):
    key = make_desk(acme, agents=1).channel.public_key
    start = async_to_sync(_start_session)
    # without trusted proxies, a forged header changes nothing
    body = start("203.0.113.50", key, ("x-forwarded-for", "8.8.8.8"))
    assert _ip_of(body["visitor"]["id"]) == "203.0.113.50"
    with override_settings(WEIYU_TRUSTED_PROXIES="10.0.0.0/8"):
        # from an untrusted peer: still the peer
        body = start("203.0.113.51", key, ("x-forwarded-for", "8.8.8.8"))
        assert _ip_of(body["visitor"]["id"]) == "203.0.113.51"
        # through the trusted proxy: the address the proxy saw, not the one the client wrote
        body = start("10.0.0.2", key, ("x-forwarded-for", "8.8.8.8, 198.51.100.77"))
        assert _ip_of(body["visitor"]["id"]) == "198.51.100.77"


async def test_websockets_get_the_same_client_address(acme):
    seen = {}

    async def app(scope, receive, send):
        seen["client"], seen["scheme"] = scope["client"], scope.get("scheme")
        await send({"type": "websocket.close", "code": 4000})

    with override_settings(WEIYU_TRUSTED_PROXIES="10.0.0.0/8"):
        communicator = WebsocketCommunicator(
            TrustedProxyMiddleware(app),
            "/ws/visitor/",
            headers=_headers(
                ("host", "acme.localhost"),
                ("x-forwarded-for", "8.8.8.8, 198.51.100.78"),
                ("x-forwarded-proto", "https"),
            ),
        )
        communicator.scope["client"] = ("10.0.0.3", 40000)
        connected, _code = await communicator.connect(timeout=WAIT_S)
    assert not connected
    assert seen["client"][0] == "198.51.100.78"
    assert seen["scheme"] == "wss"
    assert ipaddress.ip_address(seen["client"][0])
