"""Signed webhooks against a receiver the test starts (a real HTTP server on loopback), delivered
by a real Celery worker: signatures verified with the docs' own sample, retries after 500s and
timeouts, order per conversation, replay, disabling with an e-mail, SSRF refusal, tenants kept
apart, nothing sent for a rolled back change."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.db import transaction
from django.test import override_settings
from django_tenants.utils import schema_context

from kefu.models import Session
from kefu.senders import agent_sender
from kefu.services import messages, sessions
from kefu.services.visitors import visitor_update
from org.models import User
from org.webhooks import services
from org.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tests.mail import SmtpInbox
from tests.servers import celery_worker_start, free_port
from tests.waits import wait_until
from weiyu.celery import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


class Receiver:
    """A loopback HTTP server recording every POST: ``requests`` = [(path, headers, body,
    monotonic time, status answered)]. ``plan[path]``: the statuses to answer in turn (then
    200); the status ``"slow"`` answers 200 after ``slow_s`` seconds (past the worker's
    timeout)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, float, int]] = []
        self.plan: dict[str, list[Any]] = {}
        self.slow_s = 4.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    steps = receiver.plan.get(self.path) or []
                    step = steps.pop(0) if steps else 200
                if step == "slow":
                    time.sleep(receiver.slow_s)
                    step = 200
                with receiver.lock:
                    receiver.requests.append(
                        (self.path, dict(self.headers), body, time.monotonic(), step)
                    )
                try:
                    self.send_response(step)
                    self.end_headers()
                    self.wfile.write(b"received")
                except OSError:
                    pass  # the worker gave up waiting (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[tuple[str, dict[str, str], bytes, float, int]]:
        with self.lock:
            return [r for r in self.requests if r[0] == path]


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def smtp_inbox():
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture(scope="module")
def worker(receiver, smtp_inbox):
    """A Celery worker (two processes, so order is not kept by accident) on a queue of its own,
    allowed to reach the receiver on loopback, with short retry delays."""
    queue = unique("webhooks")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    proc = celery_worker_start(
        queue=queue,
        name="webhooks",
        concurrency=2,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,  # the retries it schedules itself come back to it
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{receiver.port}",
        WEIYU_WEBHOOK_RETRY_BASE_S="0.5",
        WEIYU_WEBHOOK_MAX_ATTEMPTS="3",
        WEIYU_WEBHOOK_DISABLE_AFTER="2",
        WEIYU_WEBHOOK_TIMEOUT_S="1.5",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_inbox[0]),
    )
    yield proc
    proc.stop()
    app.conf.task_default_queue = previous


@pytest.fixture(autouse=True)
def _endpoints_removed():
    """Each test's endpoints are gone afterwards, so its events do not reach the next one's."""
    yield
    for schema in ("acme", "globex"):
        with schema_context(schema):
            for endpoint in WebhookEndpoint.objects.all():
                services.endpoint_delete(endpoint=endpoint)


@pytest.fixture
def allow(receiver):
    """The test process may subscribe the receiver (loopback is refused otherwise)."""
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{receiver.port}"):
        yield


def subscribe(receiver: Receiver, path: str, events: list[str]) -> tuple[WebhookEndpoint, str]:
    endpoint, secret = services.endpoint_create(url=receiver.url(path), events=events)
    return endpoint, secret


def chat(tenant) -> tuple[Any, Any, int]:
    """A desk, its visitor and the conversation their first message opened."""
    desk = make_desk(tenant, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context(tenant.schema_name):
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
    return desk, visitor, message.conversation_id


def docs_sample(name: str) -> str:
    """The code block of docs/webhooks.md that follows the line ``<!-- name -->``."""
    text = DOCS.read_text()
    match = re.search(rf"<!-- {name} -->\s*```\w+\n(.*?)```", text, re.S)
    assert match, f"no sample {name} in docs/webhooks.md"
    return match.group(1)


def js_verify(tmp_path: Path, body: bytes, header: str, secret: str) -> str:
    """Run the docs' JavaScript sample under node: the event's conversation status, or the
    error's message."""
    (tmp_path / "verify.js").write_text(docs_sample("js-verify"))
    (tmp_path / "body.json").write_bytes(body)
    driver = (
        "const { verify } = require('./verify.js');"
        "const fs = require('node:fs');"
        "try { const e = verify(fs.readFileSync('body.json'), process.argv[1], process.argv[2]);"
        "  console.log(e.data.conversation.status); }"
        "catch (err) { console.log(err.message); }"
    )
    done = subprocess.run(
        ["node", "-e", driver, header, secret],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_delivery_is_signed_and_the_docs_sample_verifies_it(
    acme, receiver, worker, allow, tmp_path
):
    # given an endpoint subscribed to conversation and message events
    path = f"/{unique('signed')}"
    with schema_context("acme"):
        _endpoint, secret = subscribe(
            receiver, path, ["conversation.created", "message.created", "conversation.closed"]
        )
    # when a visitor starts a conversation and an agent closes it
    desk, visitor, cid = chat(acme)
    with schema_context("acme"):
        session = Session.objects.get(conversation_id=cid)
        wait_until(lambda: Session.objects.get(pk=session.pk).agent_id, what="assigned")
        sessions.session_close(session_id=session.pk, closed_by=agent_sender(desk.agents[0]))
    # then the receiver gets them, each verified by the Python sample of the docs
    namespace: dict[str, Any] = {}
    exec(docs_sample("python-verify"), namespace)  # noqa: S102 (our own documentation's code)
    verify = namespace["verify"]
    got = wait_until(
        lambda: (
            (r := receiver.at(path))
            and any(json.loads(x[2])["type"] == "conversation.closed" for x in r)
            and r
        ),
        what="conversation.closed delivered",
    )
    types = [json.loads(body)["type"] for _p, _h, body, _t, _s in got]
    assert types[0] == "conversation.created"
    assert "message.created" in types
    assert types[-1] == "conversation.closed"
    for _p, headers, body, _t, _s in got:
        event = verify(body, headers["Weiyu-Signature"], secret)
        assert event["data"]
        assert headers["Weiyu-Event"] == event["type"]
    hello = next(json.loads(b) for _p, _h, b, _t, _s in got if b"hello" in b)
    assert hello["data"]["message"]["content"] == "hello"
    assert hello["data"]["message"]["conversation_id"] == cid
    closed = json.loads(got[-1][2])
    assert closed["data"]["conversation"]["status"] == "closed"
    assert closed["data"]["conversation"]["contact"]["id"] == visitor.pk
    # and a forged body, a wrong secret or an old timestamp is refused by the sample
    _p, headers, body, _t, _s = got[-1]
    with pytest.raises(ValueError, match="signature"):
        verify(body.replace(b"closed", b"opened"), headers["Weiyu-Signature"], secret)
    with pytest.raises(ValueError, match="signature"):
        verify(body, headers["Weiyu-Signature"], "whsec_wrong")
    stale = int(time.time()) - services.REPLAY_WINDOW_S - 60
    old = services.signature_header(secret=secret, body=body, timestamp=stale)
    with pytest.raises(ValueError, match="old"):
        verify(body, old, secret)
    # and the JavaScript sample of the docs accepts the real delivery and refuses a forged one
    assert js_verify(tmp_path, body, headers["Weiyu-Signature"], secret) == "closed"
    forged = body.replace(b"closed", b"opened")
    assert "bad signature" in js_verify(tmp_path, forged, headers["Weiyu-Signature"], secret)


def test_500_and_timeout_are_retried_with_a_log_of_each_attempt(acme, receiver, worker, allow):
    # given a receiver that answers 500, then is too slow, then accepts
    path = f"/{unique('flaky')}"
    receiver.plan[path] = [500, "slow", 200]
    with schema_context("acme"):
        endpoint, _secret = subscribe(receiver, path, ["contact.updated"])
        admin = User.objects.get(username="bob")
    desk = make_desk(acme)
    visitor, _token = make_visitor(desk)
    # when a contact is changed
    with schema_context("acme"):
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"email": "ann@example.com"})
        # then the third attempt is delivered and the log shows all three
        delivery = wait_until(
            lambda: WebhookDelivery.objects.filter(
                endpoint=endpoint, status=WebhookDelivery.Status.SUCCEEDED
            ).first(),
            what="delivered after retries",
        )
        log = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert delivery.attempts == 3
    assert [a.response_code for a in log] == [500, None, 200]
    assert "500" in log[0].error
    assert log[1].error  # no answer in time
    assert log[1].duration_ms >= 1000
    assert all(a.request_body == log[0].request_body for a in log)
    assert json.loads(log[2].request_body)["data"]["contact"]["email"] == "ann@example.com"
    # the retry waited (base 0.5 s, then 2 s)
    times = [t for _p, _h, _b, t, _s in receiver.at(path)]
    assert times[-1] - times[0] >= 2.0


def test_events_of_one_conversation_arrive_in_order(acme, receiver, worker, allow):
    # given an endpoint whose first answer is a 500
    path = f"/{unique('order')}"
    receiver.plan[path] = [500]
    with schema_context("acme"):
        subscribe(receiver, path, ["message.created"])
    _desk, visitor, cid = chat(acme)
    # when the visitor sends three more messages at once
    with schema_context("acme"):
        for text in ("one", "two", "three"):
            messages.visitor_message_send(
                visitor=visitor, conversation_id=cid, content=text, client_msg_id=unique("c")
            )
    # then they arrive in order; the second waited for the first's retry to succeed
    wanted = ["one", "two", "three"]

    def delivered() -> list[str]:
        contents = [
            json.loads(b)["data"]["message"]["content"]
            for _p, _h, b, _t, status in receiver.at(path)
            if status == 200
        ]
        return [c for c in contents if c in wanted]

    assert wait_until(lambda: delivered() == wanted, what="in order")
    first_try = receiver.at(path)[0]
    assert first_try[4] == 500
    assert json.loads(first_try[2])["data"]["message"]["content"] in ("hello", "one")
    arrivals = [
        json.loads(b)["data"]["message"]["content"] for _p, _h, b, _t, _s in receiver.at(path)
    ]
    # every message was sent after all earlier ones had succeeded
    assert arrivals.index("two") > arrivals.index("one")
    assert arrivals.count("two") == 1


def test_replay_sends_the_same_event_again(acme, receiver, worker, allow):
    # given a delivered event
    path = f"/{unique('replay')}"
    with schema_context("acme"):
        endpoint, _secret = subscribe(receiver, path, ["contact.updated"])
        admin = User.objects.get(username="bob")
    desk = make_desk(acme)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "Ann"})
        first = wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="succeeded").first()
        )
    # when the admin clicks "Replay" in the delivery log of the back office
    client = agent_client(admin)
    page = client.get(f"/admin/webhooks/webhookdelivery/{first.pk}/change/")
    assert page.status_code == 200
    assert b"Replay" in page.content
    response = client.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "replay", "_selected_action": [first.pk]},
        follow=True,
    )
    assert b"1 delivery queued again" in response.content
    # then the same event arrives a second time, signed afresh, recorded as a replay
    got = wait_until(lambda: len(receiver.at(path)) == 2 and receiver.at(path))
    ids = {json.loads(b)["id"] for _p, _h, b, _t, _s in got}
    assert len(ids) == 1
    with schema_context("acme"):
        replay = wait_until(lambda: WebhookDelivery.objects.filter(replay_of=first).first())
        assert wait_until(lambda: WebhookDelivery.objects.get(pk=replay.pk).status == "succeeded")


def test_repeated_failure_disables_the_endpoint_and_mails_the_admins(
    acme, receiver, worker, allow, smtp_inbox
):
    # given an endpoint that always fails, and an administrator with an e-mail
    path = f"/{unique('dead')}"
    receiver.plan[path] = [500] * 50
    with schema_context("acme"):
        User.objects.filter(username="bob").update(email="bob@acme.example", language="en")
        endpoint, _secret = subscribe(receiver, path, ["contact.updated"])
        admin = User.objects.get(username="bob")
    desk = make_desk(acme)
    visitor, _token = make_visitor(desk)
    _port, inbox = smtp_inbox
    # when two deliveries fail every attempt (the worker disables after 2)
    with schema_context("acme"):
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "A"})
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "B"})
        # then the endpoint is disabled with the reason
        wait_until(
            lambda: not WebhookEndpoint.objects.get(pk=endpoint.pk).is_active, what="disabled"
        )
        endpoint.refresh_from_db()
        assert "500" in endpoint.disabled_reason
        assert WebhookDelivery.objects.filter(endpoint=endpoint, status="failed").count() == 2
    assert len(receiver.at(path)) == 6  # 2 deliveries, 3 attempts each
    # and the administrators got an e-mail naming the URL
    mail = wait_until(
        lambda: next((m for rcpt, m in inbox.messages if endpoint.url in str(m["Subject"])), None),
        what="e-mail",
    )
    assert "bob@acme.example" in mail["To"]
    assert "turn the endpoint on again" in mail.get_content()
    # and a third change is not sent while it stays off
    with schema_context("acme"):
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "C"})
        assert not WebhookDelivery.objects.filter(endpoint=endpoint, status="pending").exists()
        # the admin turns it back on once fixed: what was sent later is delivered
        receiver.plan[path] = []
        services.endpoint_enable(endpoint=endpoint)
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "D"})
        wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="succeeded").exists()
        )


def test_private_address_is_refused_and_logged(acme, receiver, worker):
    # given an endpoint that was allowed when it was made, whose address is private now (as a
    # DNS answer that changes would make it): the worker refuses it
    with schema_context("acme"):
        with override_settings(WEIYU_OUTBOUND_ALLOW="10.1.2.3:8080"):
            endpoint, _secret = services.endpoint_create(
                url="http://10.1.2.3:8080/hook", events=["contact.updated"]
            )
        admin = User.objects.get(username="bob")
    desk = make_desk(acme)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        # when an event is due
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "Eve"})
        # then the delivery fails at once with the refusal in the log, not retried
        delivery = wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="failed").first(),
            what="refused",
        )
        log = list(delivery.log.all())
    assert delivery.attempts == 1
    assert log[0].response_code is None
    assert "10.1.2.3" in log[0].error
    assert "WEIYU_OUTBOUND_ALLOW" in log[0].error  # the guard's reason, in the site's language
    # and a private URL cannot be subscribed in the first place
    with schema_context("acme"), pytest.raises(services.ServiceError) as caught:
        services.endpoint_create(url="http://169.254.169.254/latest", events=["ticket.created"])
    assert caught.value.field == "url"


def test_nothing_is_sent_for_a_rolled_back_change_nor_to_another_tenant(
    acme, globex, receiver, worker, allow
):
    # given endpoints in acme and globex
    acme_path, globex_path = f"/{unique('acme')}", f"/{unique('globex')}"
    with schema_context("acme"):
        endpoint, _ = subscribe(receiver, acme_path, ["contact.updated"])
        admin = User.objects.get(username="bob")
    with schema_context("globex"):
        subscribe(receiver, globex_path, ["contact.updated"])
    desk = make_desk(acme)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        # when one change rolls back and the next commits
        def change_then_fail() -> None:
            with transaction.atomic():
                visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "Rolled"})
                raise RuntimeError

        with pytest.raises(RuntimeError):
            change_then_fail()
        visitor_update(user=admin, visitor_id=visitor.pk, changes={"name": "Kept"})
        wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status="succeeded").exists()
        )
    # then acme's receiver got only the committed one, globex's nothing
    names = [
        json.loads(b)["data"]["contact"]["name"] for _p, _h, b, _t, _s in receiver.at(acme_path)
    ]
    assert names == ["Kept"]
    assert receiver.at(globex_path) == []
