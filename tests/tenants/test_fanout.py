"""Beat passes over the tenants (tenants/fanout.py): a tenant with live work is visited every
pass, by a real Celery worker; an idle tenant is not visited at all between two sweeps; a sweep
visits every active tenant, marked or not."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.models import Session
from kefu.services.messages import visitor_message_send
from kefu.tasks import timers_scan_all_task
from tenants import fanout
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_agent, make_desk, make_visitor, unique
from tests.servers import celery_worker_start
from tests.waits import wait_until
from tickets.models import Notification, SlaPolicy, SlaTarget, Ticket
from tickets.services import clocks
from tickets.tasks import sla_scan_all_task
from weiyu.celery import app

_queues = itertools.count(1)


def _tenant(prefix: str) -> str:
    schema = unique(prefix)
    tenant_create(
        name=prefix.title(),
        schema_name=schema,
        domain=f"{schema}.localhost",
        admin_username="boss",
        admin_password=PASSWORD,
    )
    connection.set_schema_to_public()
    return schema


@pytest.fixture(autouse=True)
def _sweeps_after() -> Iterator[None]:
    """Later tests' beat passes start with a sweep again, as on a fresh Redis, and no pass left
    under way here holds theirs back."""
    yield
    client = fanout._redis()
    for kind in fanout.KINDS:
        client.delete(fanout._key(kind, "sweep"))
    for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:fanout:pass:*"):
        client.delete(key)


def _no_sweep(kind: str) -> None:
    """The kind's sweep counts as done for ten minutes, and its live set starts empty."""
    client = fanout._redis()
    client.delete(fanout._key(kind))
    client.set(fanout._key(kind, "sweep"), "1", ex=600)


def _slaclock_scans(schema: str) -> int:
    """How often PostgreSQL saw the schema's SLA clock table read (index or sequential scans),
    this connection's own reads included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # flushed as this statement ends
        cursor.execute(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'tickets_slaclock'",
            [schema],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def worker_queue():
    """A Celery worker on a queue of its own, where this process's tasks go meanwhile."""
    queue = f"fanout{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(queue=queue, name="fanout", concurrency=1, CELERY_QUEUE=queue)
    yield queue
    worker.stop()
    app.conf.task_default_queue = previous


def test_a_tenant_with_a_due_sla_clock_is_scanned_and_an_idle_one_is_not_visited(worker_queue):
    # given two tenants, between two sweeps, one with a ticket whose first response was due an
    # hour ago (its clock started by the ticket service, which marks the tenant live)
    idle, busy = _tenant("idle"), _tenant("busy")
    _no_sweep("sla")
    with schema_context(busy):
        agent = make_agent(name="ann", status="offline")
        policy = SlaPolicy.objects.create(name="fast", is_default=True)
        SlaTarget.objects.create(policy=policy, priority="normal", first_response_s=60)
        ticket = Ticket.objects.create(
            number=1, subject="Printer on fire", source=Ticket.Source.API, assignee=agent
        )
        with transaction.atomic():
            clocks.sla_clocks_start(ticket=ticket, now=timezone.now() - dt.timedelta(hours=1))
    connection.set_schema_to_public()
    schemas, sweep = fanout.due_schemas("sla")
    assert not sweep
    assert busy in schemas
    assert idle not in schemas
    idle_reads, busy_reads = _slaclock_scans(idle), _slaclock_scans(busy)

    # when the beat's SLA pass runs on a real worker
    sla_scan_all_task()

    # then the busy tenant's agent is told of the breach, and it stays live (its clock runs)
    def breach_notified() -> bool:
        with schema_context(busy):
            return Notification.objects.filter(
                recipient=agent, kind=Notification.Kind.SLA_BREACH
            ).exists()

    wait_until(breach_notified)
    connection.set_schema_to_public()
    wait_until(lambda: busy in fanout.due_schemas("sla")[0])  # the scan is over
    wait_until(lambda: _slaclock_scans(busy) > busy_reads)  # the worker's statistics are in
    # and the idle tenant's schema was not read at all
    assert _slaclock_scans(idle) == idle_reads


def test_a_sweep_visits_every_active_tenant_and_a_scan_forgets_a_tenant_without_work():
    # given a tenant marked live for the service timers but with nothing to time
    quiet = _tenant("quiet")
    _no_sweep("timers")
    fanout.live_add("timers", quiet)
    assert quiet in fanout.due_schemas("timers")[0]

    # when the timers scan visits it
    assert fanout.chunk_run("kefu.tasks.timers_scan_task", [quiet]) == 1

    # then it is out of the live set: later passes skip it
    assert quiet not in fanout.due_schemas("timers")[0]
    # until a conversation starts there (the model's save marks it once committed)
    desk = make_desk(Tenant.objects.get(schema_name=quiet), agents=0)
    visitor, _token = make_visitor(desk)
    with schema_context(quiet), transaction.atomic():
        visitor_message_send(
            visitor=visitor, conversation_id=None, content="Hello?", client_msg_id="c1"
        )
        assert Session.objects.filter(status="queued").exists()
        assert quiet not in fanout.due_schemas("timers")[0]  # not before the commit
    connection.set_schema_to_public()
    assert quiet in fanout.due_schemas("timers")[0]

    # and when the sweep period is over, a pass visits every active tenant, live or not
    fanout._redis().delete(fanout._key("timers", "sweep"))
    fanout.live_clear("timers", quiet)
    schemas, sweep = fanout.due_schemas("timers")
    assert sweep
    assert {quiet, "acme", "globex"} <= set(schemas)
    assert settings.PUBLIC_SCHEMA_NAME not in schemas
    # and the next pass, within the sweep period, is back to the live tenants
    assert fanout.due_schemas("timers")[1] is False

    # the most recently marked tenant is served first; a scan keeping one does not move it ahead
    fanout.live_add("timers", "acme")
    fanout.live_add("timers", quiet)
    assert fanout.due_schemas("timers")[0][:2] == [quiet, "acme"]
    fanout.live_add("timers", "acme", renew=False)
    assert fanout.due_schemas("timers")[0][:2] == [quiet, "acme"]


def _queued(queue: str) -> int:
    """Task messages waiting in the broker's ``queue`` (a Redis list of kombu's)."""
    return fanout._redis().llen(queue)


def test_a_pass_still_under_way_holds_the_next_back_instead_of_queueing_behind_it():
    # given a tenant with an open conversation (live for the service timers), between two
    # sweeps, and beat's passes going to a queue no worker reads yet (a busy or slow worker)
    schema = _tenant("slow")
    desk = make_desk(Tenant.objects.get(schema_name=schema), agents=0)
    visitor, _token = make_visitor(desk)
    with schema_context(schema):
        visitor_message_send(
            visitor=visitor, conversation_id=None, content="Anyone?", client_msg_id="c1"
        )
    connection.set_schema_to_public()
    _no_sweep("timers")
    fanout.live_add("timers", schema)
    queue = f"fanout{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = None
    try:
        # when beat asks for the timers three intervals in a row
        sent = [timers_scan_all_task() for _ in range(3)]

        # then only the first pass is queued; the others are held back, not piled up behind it
        assert sent == [1, 0, 0]
        assert _queued(queue) == 1

        # and once a worker has done that pass, the next interval's pass goes out again
        worker = celery_worker_start(queue=queue, name="fanout-pass", concurrency=1)
        wait_until(lambda: _queued(queue) == 0)
        wait_until(lambda: timers_scan_all_task() == 1)
    finally:
        if worker is not None:
            worker.stop()
        app.conf.task_default_queue = previous


def test_a_pass_whose_chunks_make_no_progress_stops_holding_the_next_back(settings):
    # given a live tenant and a pass of the timers queued where no worker ever reads it (its
    # worker was killed), with progress expected within a second
    settings.WEIYU_FANOUT_PASS_STALE_S = 1
    schema = _tenant("stuck")
    _no_sweep("timers")
    fanout.live_add("timers", schema)
    queue = f"fanout{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        assert timers_scan_all_task() == 1
        assert timers_scan_all_task() == 0
        # when that second has passed, the next interval's pass goes out: the timers do not stop
        wait_until(lambda: timers_scan_all_task() == 1)
        assert _queued(queue) == 2
    finally:
        app.conf.task_default_queue = previous
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
