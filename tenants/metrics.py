"""Prometheus metrics for operators: ``GET /metrics`` (docs/operations.md, "Metrics").

What is counted where:

- ``weiyu_http_requests_total{method,status}`` and ``weiyu_http_request_duration_seconds{method}``
  by :class:`MetricsMiddleware`, for every HTTP request Django answers (websocket frames are not
  requests);
- ``weiyu_websocket_connections{kind}`` (open sockets now: ``visitor``, ``agent``, ``member``) by
  the websocket consumers (:func:`socket_opened` / :func:`socket_closed`);
- ``weiyu_messages_total{tenant,kind,origin}`` by the one send path (:func:`message_stored`):
  every stored message, by tenant schema, sender kind and the kind of process that stored it —
  ``origin="web"`` (counted in the process's memory) or ``origin="worker"`` (a Celery worker:
  robot answers, scheduled messages, timer and system lines, channel messages; counted in one
  Redis hash, ``<CHANNEL_PREFIX>:metrics:messages``, that every scrape reads, so the workers'
  counts reach ``/metrics`` wherever they run). ``rate()`` of it is messages per second, and
  ``topk(10, sum by (tenant) (rate(weiyu_messages_total[5m])))`` the top talkers;
- at scrape time, from Redis and the public schema: ``weiyu_celery_queue_length{queue}``,
  ``weiyu_celery_oldest_task_age_seconds{queue}`` (how long the oldest task still waiting has
  waited: the Celery lag; every task is stamped when published, ``weiyu.celery.stamp_sent_at``)
  and ``weiyu_tenants{state}``.

Several web processes (``python -m weiyu.serve``) share one ``PROMETHEUS_MULTIPROC_DIR`` that the
launcher creates and wipes; each process writes its counters to its own files there and a scrape
of any process adds them all up (prometheus_client's multiprocess mode). Without that variable
(a single ``daphne``, ``runserver``, the tests' in-process client) the process's own registry is
served.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from tenants.models import Tenant
from weiyu import celery as weiyu_celery
from weiyu.celery import SENT_AT_HEADER

logger = logging.getLogger(__name__)

#: the environment variable prometheus_client reads at import to switch to multiprocess mode
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "weiyu_http_requests_total", "HTTP requests answered.", ["method", "status"]
)
HTTP_SECONDS = Histogram(
    "weiyu_http_request_duration_seconds",
    "Time to answer an HTTP request (s), from the first middleware to the response.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SOCKETS = Gauge(
    "weiyu_websocket_connections",
    "Websocket connections open now, by kind of participant.",
    ["kind"],
    multiprocess_mode="livesum",
)
MESSAGES = Counter(
    "weiyu_messages_total",
    "Messages stored, by tenant schema, sender kind and origin (web or worker).",
    ["tenant", "kind", "origin"],
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess() -> bool:
    """True when this process writes its metrics to a shared ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(os.environ.get(MULTIPROC_ENV))


def _worker_messages_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:metrics:messages"


def message_stored(schema: str, kind: str) -> None:
    """Count one stored message of tenant ``schema`` from a sender of ``kind`` (``visitor``,
    ``agent``, ``member``, ``robot``, ``system``). In a web process: a few microseconds, no I/O.
    In a Celery worker (:data:`weiyu.celery.IN_WORKER`): one ``HINCRBY`` of the Redis hash
    every scrape reads (Redis unreachable: not counted, logged)."""
    if not weiyu_celery.IN_WORKER:
        MESSAGES.labels(schema, kind, "web").inc()
        return
    try:
        _counters().hincrby(_worker_messages_key(), f"{schema}\t{kind}", 1)
    except redis.RedisError as exc:
        logger.warning("metrics: a worker's message not counted, Redis unreachable: %s", exc)


def _worker_messages() -> list[tuple[str, str, float]]:
    """``[(tenant, kind, count)]`` of the messages Celery workers stored (all time)."""
    found = []
    for field, value in _counters().hgetall(_worker_messages_key()).items():
        schema, _sep, kind = field.decode().partition("\t")
        found.append((schema, kind, float(value)))
    return found


def tenant_forget(schema: str) -> int:
    """Remove the deleted tenant ``schema``'s worker message counts from the Redis hash, so
    scrapes stop reporting a tenant that no longer exists (a web process's own counts go with
    its restart). Returns how many fields were removed; Redis unreachable: 0, logged."""
    prefix = f"{schema}\t".encode()
    try:
        client = _counters()
        fields = [f for f in client.hkeys(_worker_messages_key()) if f.startswith(prefix)]
        return client.hdel(_worker_messages_key(), *fields) if fields else 0
    except redis.RedisError as exc:
        logger.warning(
            "metrics: counts of deleted tenant %s kept, Redis unreachable: %s", schema, exc
        )
        return 0


def socket_opened(kind: str) -> None:
    """A websocket of ``kind`` was authenticated and is now open."""
    SOCKETS.labels(kind).inc()


def socket_closed(kind: str) -> None:
    """A websocket counted by :func:`socket_opened` closed."""
    SOCKETS.labels(kind).dec()


class MetricsMiddleware:
    """Counts every request and its duration (sync and async, so it never forces a thread hop)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._count(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> Any:
        started = time.perf_counter()
        response = await self.get_response(request)
        self._count(request, response, started)
        return response

    @staticmethod
    def _count(request: HttpRequest, response: HttpResponse, started: float) -> None:
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(method).observe(time.perf_counter() - started)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)


@cache
def _counters() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)


class WithWorkerMessages:
    """The families of ``source`` (the process's registry, or the web processes' shared
    directory), with the Celery workers' message counts (Redis) added to
    ``weiyu_messages_total`` as ``origin="worker"``: one family, as the text format requires."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        try:
            extra = _worker_messages()
        except redis.RedisError:
            logger.warning("metrics: the workers' message counts could not be read")
            extra = []
        for family in self.source.collect():
            if family.name == "weiyu_messages":
                for schema, kind, value in extra:
                    labels = {"tenant": schema, "kind": kind, "origin": "worker"}
                    family.add_sample("weiyu_messages_total", labels, value)
            yield family


def _celery_queues() -> list[str]:
    return list(dict.fromkeys([settings.CELERY_TASK_DEFAULT_QUEUE, *settings.WEIYU_METRICS_QUEUES]))


def _oldest_age(raw: bytes | None, now: float) -> float:
    """Seconds since the oldest waiting task (``raw``: the broker's envelope, JSON) was
    published; 0 when there is none or it carries no stamp."""
    if not raw:
        return 0.0
    try:
        sent_at = float(json.loads(raw)["headers"][SENT_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, now - sent_at)


class ScrapeCollector:
    """Figures read at scrape time: Celery queues (Redis) and tenants (the public schema)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "weiyu_celery_queue_length", "Celery tasks waiting in the broker.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "weiyu_celery_oldest_task_age_seconds",
            "Age of the oldest Celery task still waiting (s): the Celery lag.",
            labels=["queue"],
        )
        now = time.time()
        try:
            client = _redis()
            for queue in _celery_queues():
                # kombu's Redis transport pushes on the left and workers pop on the right
                pipe = client.pipeline(transaction=False)
                pipe.llen(queue)
                pipe.lindex(queue, -1)
                count, oldest = pipe.execute()
                length.add_metric([queue], float(count))
                age.add_metric([queue], _oldest_age(oldest, now))
        except redis.RedisError:
            # the broker is down: the scrape says so by leaving the Celery figures out
            logger.warning("metrics: the Celery broker did not answer")
        else:
            yield length
            yield age
        yield self._tenants()

    @staticmethod
    def _tenants() -> GaugeMetricFamily:
        family = GaugeMetricFamily("weiyu_tenants", "Tenants by state.", labels=["state"])
        tenants = Tenant.objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        counts = dict(tenants.values_list("is_active").annotate(n=Count("pk")).order_by())
        family.add_metric(["active"], float(counts.get(True, 0)))
        family.add_metric(["suspended"], float(counts.get(False, 0)))
        return family


def _authorised(request: HttpRequest) -> bool:
    token = settings.WEIYU_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` → the Prometheus text format (``text/plain; version=0.0.4``).

    Allowed with ``Authorization: Bearer $WEIYU_METRICS_TOKEN`` when that setting is set, else
    only from a loopback address (the scraper on the same machine or through a trusted proxy).
    Anything else → ``403 {"error": "forbidden", "message": …}``.
    """
    if not _authorised(request):
        return JsonResponse(
            {"error": "forbidden", "message": _("Metrics need the operator's token.")}, status=403
        )
    source = REGISTRY
    if multiprocess():
        source = CollectorRegistry()
        MultiProcessCollector(source)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WithWorkerMessages(source))
    body = generate_latest(registry)
    scraped = CollectorRegistry()
    scraped.register(ScrapeCollector())
    body += generate_latest(scraped)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
