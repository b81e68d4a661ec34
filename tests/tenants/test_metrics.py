"""``/metrics`` for operators (issue 16, OPS-4): a scraper on the machine (or holding the token)
reads requests, websocket connections, messages per tenant, Celery queues and their lag, and
tenants — summed over the web processes of one launcher."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from urllib.parse import quote

import pytest
import redis
import websockets
from django.conf import settings
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

from kefu.channels.api import api_channel_credentials_rotate
from kefu.models import Channel, ChannelAccount
from tests.channels import channel_worker, vendors  # noqa: F401 (fixtures)
from tests.conftest import make_desk, make_visitor, unique
from tests.kefu.conversations import customer_conversation
from tests.servers import LiveServer, serve_start
from tests.waits import WAIT_S, wait_until
from weiyu.celery import app as celery_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client: Client | None = None, **headers: str) -> dict:
    response = (client or Client()).get("/metrics", HTTP_HOST="localhost", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def test_a_local_scraper_sees_each_stored_message_of_its_tenant_and_requests(acme):
    key = ("weiyu_messages_total", (("kind", "visitor"), ("origin", "web"), ("tenant", "acme")))
    before = scrape().get(key, 0.0)
    requests_key = ("weiyu_http_requests_total", (("method", "GET"), ("status", "200")))
    requests_before = scrape().get(requests_key, 0.0)

    with schema_context("acme"):
        desk = make_desk(acme, agents=1)
        customer_conversation(
            desk, desk.agents[0], lines=[("visitor", "hello"), ("agent", "hi"), ("visitor", "ok")]
        )

    after = scrape()
    assert after[key] == before + 2
    agent = ("weiyu_messages_total", (("kind", "agent"), ("origin", "web"), ("tenant", "acme")))
    assert after[agent] >= 1
    # the scrapes themselves are answered requests
    assert after[requests_key] >= requests_before + 1
    assert after[("weiyu_tenants", (("state", "active"),))] >= 2


def test_messages_a_celery_worker_stores_are_counted_in_the_scrape(
    acme,
    vendors,  # noqa: F811 (the fixture)
    channel_worker,  # noqa: F811 (the fixture)
):
    # given an API channel: each message posted to it is stored by a Celery worker
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        channel = Channel.objects.create(
            name=unique("api"), kind=Channel.Kind.API, workgroup=desk.workgroup
        )
        key, _secret = api_channel_credentials_rotate(channel=channel)
        ChannelAccount.objects.filter(channel=channel).update(
            api_base_url=f"{vendors.base_url}/receiver"
        )
    counted = (
        "weiyu_messages_total",
        (("kind", "visitor"), ("origin", "worker"), ("tenant", "acme")),
    )
    before = scrape().get(counted, 0.0)
    web_before = scrape().get(
        ("weiyu_messages_total", (("kind", "visitor"), ("origin", "web"), ("tenant", "acme"))), 0.0
    )

    # when a customer's two messages come in through it
    for text in ("where is my parcel?", "order 7"):
        answer = Client(HTTP_HOST="acme.localhost").post(
            f"/api/v1/kefu/channels/{channel.public_key}/messages",
            json.dumps({"contact": {"id": unique("crm")}, "text": text}),
            "application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert answer.status_code == 202, answer.content

    # then a scrape of the web process counts both, as the worker's
    def both_counted() -> dict | None:
        now = scrape()
        return now if now.get(counted, 0.0) >= before + 2 else None

    found = wait_until(both_counted, what="the worker's messages in the scrape")
    assert found[counted] == before + 2
    web = ("weiyu_messages_total", (("kind", "visitor"), ("origin", "web"), ("tenant", "acme")))
    assert found.get(web, 0.0) == web_before


def test_a_remote_scraper_needs_the_operators_token():
    remote = Client(REMOTE_ADDR="203.0.113.9")
    refused = remote.get("/metrics", HTTP_HOST="localhost")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"

    with override_settings(WEIYU_METRICS_TOKEN="scrape-" + unique("t")):
        token = settings.WEIYU_METRICS_TOKEN
        assert remote.get("/metrics", HTTP_HOST="localhost").status_code == 403
        wrong = remote.get("/metrics", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer nope")
        assert wrong.status_code == 403
        # with a token set, loopback alone is not enough either
        assert Client().get("/metrics", HTTP_HOST="localhost").status_code == 403
        assert scrape(remote, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_waiting_celery_task_shows_as_queue_length_and_lag():
    queue = unique("metrics-test-")
    with override_settings(WEIYU_METRICS_QUEUES=[queue]):
        assert scrape()[("weiyu_celery_queue_length", (("queue", queue),))] == 0
        # nothing consumes this queue: the task waits there
        celery_app.send_task("tenants.tasks.nothing_here", queue=queue)
        found = scrape()
        assert found[("weiyu_celery_queue_length", (("queue", queue),))] == 1
        age = found[("weiyu_celery_oldest_task_age_seconds", (("queue", queue),))]
        assert 0 < age < WAIT_S
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
        assert scrape()[("weiyu_celery_queue_length", (("queue", queue),))] == 0


@pytest.fixture
def launcher() -> LiveServer:
    server = serve_start(workers=2, name="serve-metrics")
    yield server
    server.stop()


def http_scrape(server: LiveServer) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_S)
    try:
        conn.request("GET", "/metrics", headers={"Host": "localhost"})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return samples(body)
    finally:
        conn.close()


def test_two_web_processes_report_one_sum_of_their_sockets(acme, launcher):
    with schema_context("acme"):
        desk = make_desk(acme, agents=1)
        tokens = [make_visitor(desk)[1] for _ in range(3)]
    key = ("weiyu_websocket_connections", (("kind", "visitor"),))

    async def visitors_online() -> None:
        sockets = []
        try:
            for token in tokens:
                ws = await ws_connect(
                    f"ws://acme.localhost:{launcher.port}/ws/visitor/?token={quote(token)}",
                    host="127.0.0.1",
                    port=launcher.port,
                    origin=f"http://acme.localhost:{launcher.port}",
                    proxy=None,
                    open_timeout=WAIT_S,
                )
                sockets.append(ws)
                assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "hello"
            # whichever child holds each socket, a scrape of any child counts all three
            for _ in range(4):
                found = await asyncio.to_thread(http_scrape, launcher)
                assert found.get(key) == 3, found.get(key)
        finally:
            for ws in sockets:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.close()

    asyncio.run(visitors_online())
    wait_until(lambda: http_scrape(launcher).get(key) == 0, what="the sockets counted as closed")
