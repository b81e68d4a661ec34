"""Web push alerts (org.alerts, org.push) against a push service the test starts: a loopback
HTTP server that checks each request as a browser vendor's would — the VAPID JWT's ES256
signature against the key in ``Authorization: vapid t=…,k=…``, its ``aud`` and ``exp`` — and
decrypts the aes128gcm body with the subscribing "browser's" private key. The pushes are sent
by a real Celery worker; the subscription is made through the API of a signed-in session."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from im.services import groups
from im.services import messages as im_messages
from kefu.senders import agent_sender
from org import push
from org.models import PushSubscription
from tests.conftest import PASSWORD, inbox_open, make_agent, unique
from tests.servers import celery_worker_start, free_port
from tests.waits import wait_until
from tickets.models import Notification
from tickets.services.notifications import notifications_create
from weiyu.celery import app


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """A browser's side of a subscription: its ECDH key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.endpoint = endpoint

    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64url(point), "auth": _b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


class PushService:
    """A push service on loopback: verifies each POST's VAPID token (ES256, ``aud``, ``exp``)
    and records ``(path, public key, claims, headers, body)`` of the valid ones; answers
    ``status[path]`` (default 201). Invalid requests are recorded in ``refused``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, str, dict[str, Any], dict[str, str], bytes]] = []
        self.refused: list[str] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    key, claims = service.verify(self.headers.get("Authorization", ""))
                except (AssertionError, InvalidSignature, ValueError, KeyError) as exc:
                    with service.lock:
                        service.refused.append(f"{self.path}: {exc!r}")
                    self.send_response(401)
                    self.end_headers()
                    return
                with service.lock:
                    service.received.append((self.path, key, claims, dict(self.headers), body))
                    status = service.status.get(self.path, 201)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def verify(self, header: str) -> tuple[str, dict[str, Any]]:
        """RFC 8292: ``vapid t=<JWT>,k=<public key>``; the JWT signed with ES256 by that key,
        for this origin, not expired and at most a day ahead."""
        scheme, _, rest = header.partition(" ")
        assert scheme == "vapid", f"scheme {scheme!r}"
        params = dict(part.split("=", 1) for part in rest.split(","))
        token, key = params["t"], params["k"]
        signed, _, signature = token.rpartition(".")
        head, payload = (json.loads(_unb64url(p)) for p in signed.split("."))
        assert head == {"typ": "JWT", "alg": "ES256"}, head
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(key))
        raw = _unb64url(signature)
        assert len(raw) == 64, "an ES256 signature is r||s, 64 bytes"
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, signed.encode(), ec.ECDSA(hashes.SHA256()))
        assert payload["aud"] == self.origin, payload
        assert time.time() < payload["exp"] <= time.time() + 24 * 3600, payload
        assert payload["sub"].startswith(("mailto:", "https:")), payload
        return key, payload

    def at(self, path: str) -> list[tuple[str, str, dict[str, Any], dict[str, str], bytes]]:
        with self.lock:
            return [r for r in self.received if r[0] == path]


@pytest.fixture(scope="module")
def service():
    server = PushService()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def vapid_key():
    """The platform key of this run, given to the worker and this process through the
    environment's setting (WEIYU_VAPID_PRIVATE_KEY)."""
    key = ec.generate_private_key(ec.SECP256R1())
    raw = _b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    with override_settings(WEIYU_VAPID_PRIVATE_KEY=raw):
        push.vapid.cache_clear()
        yield raw
    push.vapid.cache_clear()


@pytest.fixture(scope="module")
def worker(service, vapid_key):
    queue = unique("alerts")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    proc = celery_worker_start(
        queue=queue,
        name="alerts",
        concurrency=1,
        WEIYU_SEMANTIC="off",
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{service.port}",
        WEIYU_VAPID_PRIVATE_KEY=vapid_key,
    )
    yield proc
    proc.stop()
    app.conf.task_default_queue = previous


@pytest.fixture
def allow(service):
    """This process may accept the loopback push service as an endpoint (refused otherwise)."""
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{service.port}"):
        yield


def _agent(**kwargs: Any):
    with schema_context("acme"):
        return make_agent(inbox=False, **kwargs)


def _signed_in(user) -> Client:
    client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    answer = client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert answer.status_code == 302, answer.content.decode()[:300]
    return client


def _subscribe(client: Client, service: PushService) -> tuple[Browser, str]:
    path = f"/push/{unique('sub')}"
    browser = Browser(service.origin + path)
    answer = client.post(
        "/api/v1/org/me/push-subscriptions", browser.subscription(), content_type="application/json"
    )
    assert answer.status_code == 201, answer.content
    return browser, path


def _team_mention(author, mentioned: list) -> int:
    """``author`` writes in a new group of theirs, mentioning ``mentioned``; the group's id."""
    with schema_context("acme"):
        group = groups.group_create(
            creator=author, title=unique("Ops"), member_ids=[u.pk for u in mentioned]
        )
        im_messages.message_send(
            conversation_id=group.pk,
            sender=agent_sender(author),
            content="Can someone look at the refund for order 4411 before noon? " * 3,
            client_msg_id=unique("m"),
            mentions=[u.member_key for u in mentioned],
        )
    return group.pk


def test_a_mention_and_a_ticket_alert_reach_the_browser_signed_and_encrypted(
    service, worker, allow, vapid_key
):
    author, agent = _agent(name="ann"), _agent(name="ben")
    client = _signed_in(agent)
    page = client.get("/api/v1/org/me/alerts").json()
    assert page["vapid_public_key"] == push.vapid_public_key()
    browser, path = _subscribe(client, service)

    group_id = _team_mention(author, [agent])
    wait_until(lambda: service.at(path), what="the mention's push")
    (_path, key, _claims, headers, body) = service.at(path)[0]
    assert key == push.vapid_public_key()  # signed with the platform's key, as subscribed
    assert headers["Content-Encoding"] == "aes128gcm"
    assert int(headers["TTL"]) > 0
    alert = browser.decrypt(body)
    assert alert["title"] == f"{author.name} mentioned you"
    # a short preview only, not the whole message
    assert alert["body"].startswith("Can someone look at the refund for order 4411")
    assert len(alert["body"]) <= 80
    assert alert["url"] == f"/inbox/#c{group_id}"

    with schema_context("acme"):
        notifications_create(
            recipients=[agent], kind=Notification.Kind.SLA_WARNING, text="#12 Broken tap is due"
        )
    wait_until(lambda: len(service.at(path)) == 2, what="the SLA warning's push")
    alert = browser.decrypt(service.at(path)[1][4])
    assert (alert["title"], alert["body"]) == ("SLA warning", "#12 Broken tap is due")
    assert headers["Urgency"] == "normal"
    assert service.at(path)[1][3]["Urgency"] == "high"  # an SLA warning is urgent
    assert service.refused == []
    with schema_context("acme"):
        assert PushSubscription.objects.get(user=agent).last_sent_at is not None


def test_no_push_while_an_inbox_is_open_nor_for_a_kind_turned_off(service, worker, allow):
    author = _agent(name="ann")
    at_desk, away, muted = _agent(name="cat"), _agent(name="dan"), _agent(name="eve")
    paths = {}
    for user in (at_desk, away, muted):
        _browser, paths[user.pk] = _subscribe(_signed_in(user), service)
    with schema_context("acme"):
        inbox_open(at_desk)
    answer = _signed_in(muted).put(
        "/api/v1/org/me/alerts", {"push": {"mention": False}}, content_type="application/json"
    )
    assert answer.status_code == 200
    assert answer.json()["push"]["mention"] is False

    # one alert for the three, handled in order of their ids: when the last one's push has
    # arrived the other two were decided
    _team_mention(author, [at_desk, muted, away])
    wait_until(lambda: service.at(paths[away.pk]), what="the push of the one away")
    assert service.at(paths[at_desk.pk]) == []
    assert service.at(paths[muted.pk]) == []


def test_a_gone_subscription_is_deleted_and_sign_out_everywhere_ends_them(service, worker, allow):
    author, agent = _agent(name="ann"), _agent(name="fay")
    laptop, phone = _signed_in(agent), _signed_in(agent)
    _browser, gone_path = _subscribe(laptop, service)
    _browser, kept_path = _subscribe(phone, service)
    service.status[gone_path] = 410  # the browser unsubscribed behind our back

    _team_mention(author, [agent])
    wait_until(lambda: service.at(kept_path), what="the push to the phone")
    with schema_context("acme"):
        wait_until(
            lambda: not PushSubscription.objects.filter(endpoint__endswith=gone_path).exists(),
            what="the 410 subscription deleted",
        )
        assert PushSubscription.objects.filter(endpoint__endswith=kept_path).exists()

    # "log out everywhere" from another browser ends the phone's session and its alerts
    _browser, other_path = _subscribe(laptop, service)
    assert laptop.post("/account/security/sessions/end/").status_code in (200, 302)
    with schema_context("acme"):
        assert list(
            PushSubscription.objects.filter(user=agent).values_list("endpoint", flat=True)
        ) == [service.origin + other_path]


def test_endpoints_and_preferences_are_checked(service, vapid_key):
    agent = _agent(name="gus")
    client = _signed_in(agent)
    browser = Browser(service.origin + "/push/x")

    def post(data: object) -> Any:
        return client.post(
            "/api/v1/org/me/push-subscriptions", data, content_type="application/json"
        )

    # loopback without the operator's allow-list, plain http to a public host, a private one
    for endpoint in (
        service.origin + "/push/x",
        "http://push.example.com/x",
        "https://10.0.0.8/push",
        "javascript:alert(1)",
    ):
        answer = post({**browser.subscription(), "endpoint": endpoint})
        assert answer.status_code == 400, endpoint
        assert answer.json()["error"] == "invalid"
    bad_keys = browser.subscription()
    bad_keys["keys"]["p256dh"] = _b64url(b"\x04" + b"1" * 10)
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{service.port}"):
        assert post(bad_keys).status_code == 400
        assert post(["not", "a", "subscription"]).status_code == 400
    with schema_context("acme"):
        assert not PushSubscription.objects.filter(user=agent).exists()

    for bad in (
        {"digest_after_minutes": -1},
        {"digest_after_minutes": 1441},
        {"digest_after_minutes": "15"},
        {"push": {"birthday": True}},
        {"push": {"sla": "yes"}},
        {"quiet_when_inbox_open": None},
        {"colour": "red"},
    ):
        answer = client.put("/api/v1/org/me/alerts", bad, content_type="application/json")
        assert answer.status_code == 400, bad
        assert answer.json()["error"] == "invalid"
    answer = client.put(
        "/api/v1/org/me/alerts",
        {"digest_after_minutes": 0, "quiet_when_inbox_open": False},
        content_type="application/json",
    )
    assert answer.status_code == 200
    assert answer.json()["digest_after_minutes"] == 0
    assert answer.json()["quiet_when_inbox_open"] is False
    assert Client(HTTP_HOST="acme.localhost").get("/api/v1/org/me/alerts").status_code in (401, 403)


def test_the_alerts_page_is_linked_from_the_inbox_and_saves_the_form(vapid_key):
    agent = _agent(name="hal")
    client = _signed_in(agent)
    inbox = client.get("/inbox/").content.decode()
    assert 'href="/inbox/alerts/"' in inbox
    page = client.get("/inbox/alerts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Enable notifications" in html
    assert push.vapid_public_key() in html
    answer = client.post(
        "/inbox/alerts/", {"push": ["sla", "transfer"], "digest_after_minutes": "30"}
    )
    assert answer.status_code == 200
    assert "Saved." in answer.content.decode()
    prefs = client.get("/api/v1/org/me/alerts").json()
    assert prefs["push"] == {
        "assignment": False,
        "transfer": True,
        "mention": False,
        "sla": True,
    }
    assert prefs["digest_after_minutes"] == 30
    assert prefs["quiet_when_inbox_open"] is False
    answer = client.post("/inbox/alerts/", {"digest_after_minutes": "forever"})
    assert answer.status_code == 400
    worker = client.get("/inbox/push-sw.js")
    assert worker.status_code == 200
    assert worker["Content-Type"].startswith("text/javascript")
    assert b"showNotification" in worker.content
