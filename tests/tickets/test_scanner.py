"""The SLA scanner run by a real Celery worker: SIGKILLed in the middle of a scan, then run again
by a new worker twice at once — every due clock still gets exactly one warning, one breach and one
escalation notification."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.models import Workgroup
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_agent, unique
from tests.servers import celery_worker_start
from tickets.models import Notification, SlaClock, SlaPolicy, Ticket, TicketCounter
from tickets.tasks import sla_scan_task

CLOCKS = 1500


@pytest.fixture
def due_tenant():
    """A fresh tenant with CLOCKS tickets whose first-response target passed an hour ago."""
    schema = unique("slakill")
    tenant_create(
        name="SLA",
        schema_name=schema,
        domain=f"{schema}.localhost",
        admin_username="boss",
        admin_password=PASSWORD,
    )
    with schema_context(schema):
        agent = make_agent(name="ann", status="offline")
        lead = make_agent(name="lee", status="offline")
        workgroup = Workgroup.objects.create(name="support", lead=lead)
        policy = SlaPolicy.objects.create(name="fast", escalate_lead_after_s=0)
        policy.workgroups.add(workgroup)
        now = timezone.now()
        tickets = Ticket.objects.bulk_create(
            Ticket(
                number=n,
                subject=f"ticket {n}",
                source=Ticket.Source.API,
                assignee=agent,
                workgroup=workgroup,
                sla_policy=policy,
            )
            for n in range(1, CLOCKS + 1)
        )
        TicketCounter.objects.create(pk=1, last=CLOCKS)
        started = now - dt.timedelta(hours=2)
        SlaClock.objects.bulk_create(
            SlaClock(
                ticket=t,
                kind=SlaClock.Kind.FIRST_RESPONSE,
                target_s=3600,
                started_at=started,
                running_since=started,
                warn_at=started + dt.timedelta(minutes=45),
                due_at=started + dt.timedelta(hours=1),
            )
            for t in tickets
        )
    connection.set_schema_to_public()
    return schema


def _counts(schema: str) -> dict[str, int]:
    with schema_context(schema):
        return dict(
            Notification.objects.values_list("kind")
            .annotate(n=Count("id"))
            .values_list("kind", "n")
        )


def _total(schema: str) -> int:
    return sum(_counts(schema).values())


def test_a_killed_worker_neither_loses_nor_repeats_a_notification(due_tenant):
    schema = due_tenant
    queue = unique("sla-queue")
    expected = 3 * CLOCKS  # warning, breach, escalation to the lead
    # given a worker scanning in small transactions
    worker = celery_worker_start(queue=queue, name="sla-1", concurrency=1, SLA_SCAN_BATCH="20")
    try:
        sla_scan_task.apply_async(args=[schema], queue=queue)
        # when it is SIGKILLed as soon as the first batches are committed
        deadline = time.monotonic() + 60
        while _total(schema) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.kill()
    finally:
        worker.kill()
    at_kill = _total(schema)
    assert 0 < at_kill < expected, "the scan must be cut off in the middle"
    # then a new worker, given the scan twice at once (beat may queue it again), finishes it
    worker = celery_worker_start(queue=queue, name="sla-2", concurrency=2, SLA_SCAN_BATCH="20")
    try:
        sla_scan_task.apply_async(args=[schema], queue=queue)
        sla_scan_task.apply_async(args=[schema], queue=queue)
        deadline = time.monotonic() + 120
        while _total(schema) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # anything extra would show up now
    finally:
        worker.stop()
    assert _counts(schema) == {
        "sla_warning": CLOCKS,
        "sla_breach": CLOCKS,
        "sla_escalation": CLOCKS,
    }
    with schema_context(schema):
        per_clock = (
            Notification.objects.values("clock_id", "kind").annotate(n=Count("id")).filter(n__gt=1)
        )
        assert list(per_clock) == []
        assert not SlaClock.objects.filter(breach_notified_at__isnull=True).exists()
