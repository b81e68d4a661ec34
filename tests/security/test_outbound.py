"""Finding 4 of the security review (issue 12): a tenant admin chose the LLM provider's base URL
and made the worker POST the API key and visitor text to loopback services. Requests to
tenant-chosen URLs now go through weiyu.outbound; these tests aim it at real servers on loopback,
through an IP, a host name that resolves to loopback and a redirect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from kbase import llm
from kbase.admin import LlmProviderForm
from kbase.models import LlmProvider
from tests.fake_llm import FakeLlm
from tests.servers import free_port
from weiyu import outbound


class Local:
    """A plain HTTP server on 127.0.0.1: answers ``body``, or a redirect to ``location``;
    counts the requests that reached it."""

    def __init__(self, body: bytes = b"internal secret", location: str | None = None) -> None:
        self.hits = 0
        local = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                local.hits += 1
                if location:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local() -> Iterator[Local]:
    server = Local()
    yield server
    server.stop()


def _get(url: str, **kwargs: object) -> httpx2.Response:
    with outbound.guarded_client(timeout_s=5) as client:
        response = client.get(url, **kwargs)
        response.read()
        return response


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_by_address_or_by_name(local, host):
    with pytest.raises(httpx2.ConnectError, match="private, loopback or reserved"):
        _get(f"http://{host}:{local.port}/")
    assert local.hits == 0


def test_an_allow_listed_self_hosted_service_is_reached(local):
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{local.port}"):
        response = _get(f"http://127.0.0.1:{local.port}/")
    assert (response.status_code, response.content) == (200, b"internal secret")
    # the allow-list names a port, not the whole host
    with (
        override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{free_port()}"),
        pytest.raises(httpx2.ConnectError),
    ):
        _get(f"http://127.0.0.1:{local.port}/")


def test_a_redirect_to_loopback_is_refused(local):
    # given an allowed server that redirects to a refused one
    bouncer = Local(location=f"http://127.0.0.1:{local.port}/")
    try:
        with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{bouncer.port}"):
            # redirects are not followed by the client
            first = _get(f"http://127.0.0.1:{bouncer.port}/")
            assert first.status_code == 302
            # and a caller that follows one (as SDKs do) is refused at the next hop
            with pytest.raises(httpx2.ConnectError):
                _get(f"http://127.0.0.1:{bouncer.port}/", follow_redirects=True)
    finally:
        bouncer.stop()
    assert local.hits == 0


def test_the_response_size_is_capped():
    big = Local(body=b"x" * (2 * 1024 * 1024))
    try:
        with (
            override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{big.port}"),
            outbound.guarded_client(timeout_s=5, max_bytes=1024 * 1024) as client,
            pytest.raises(outbound.ResponseTooLargeError),
        ):
            client.get(f"http://127.0.0.1:{big.port}/").read()
    finally:
        big.stop()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "Only http"),
        ("gopher://example.com/", "Only http"),
        ("http://169.254.169.254/latest/meta-data/", "reserved"),
        ("http://[fd00:ec2::254]/", "reserved"),
        ("http://100.100.100.200/", "reserved"),
        ("http://10.1.2.3/", "reserved"),
        ("http://192.168.1.1/", "reserved"),
        ("http://0.0.0.0:6379/", "reserved"),
        ("http://224.0.0.1/", "reserved"),
        ("http://[::1]:6379/", "reserved"),
        ("http://localhost:6379/", "reserved"),
        ("http://no-such-host.invalid/", "cannot be resolved"),
    ],
)
def test_urls_a_tenant_may_not_use(url, reason):
    with pytest.raises(outbound.OutboundRefusedError, match=reason):
        outbound.check_url(url)


def test_public_addresses_pass_the_check():
    # an address literal: no DNS needed in the test
    outbound.check_url("https://1.1.1.1/v1")
    assert outbound.is_public(outbound.ipaddress.ip_address("2606:4700:4700::1111"))


def test_the_admin_form_says_why_a_base_url_is_refused(acme):
    form = LlmProviderForm(
        data={
            "name": "Mine",
            "preset": LlmProvider.Preset.CUSTOM,
            "base_url": "http://127.0.0.1:6379/v1",
            "model": "m",
            "api_key": "sk",
            "timeout_s": 10,
            "temperature": 0.2,
            "priority": 0,
            "is_active": True,
        }
    )
    assert not form.is_valid()
    assert "private, loopback or reserved" in form.errors["base_url"][0]


def test_the_robot_does_not_post_visitor_text_to_a_loopback_provider(acme):
    # given a provider whose base URL points at a service on loopback (not allow-listed)
    server = FakeLlm(port=0).start()
    try:
        with schema_context("acme"):
            LlmProvider.objects.all().delete()
            LlmProvider.objects.create(
                name="Inside",
                preset=LlmProvider.Preset.CUSTOM,
                base_url=server.base_url,
                model="good",
                api_key="sk-secret",
                timeout_s=5,
            )
            # when the robot asks it
            with pytest.raises(llm.LlmUnavailableError) as refused:
                llm.grounded_answer("my card number is 4242", [], language="en")
            LlmProvider.objects.all().delete()
    finally:
        server.stop()
    # then nothing was sent, and the reason is named
    assert server.requests == []
    assert "private, loopback or reserved" in str(refused.value)
