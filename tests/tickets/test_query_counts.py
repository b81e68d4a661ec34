"""Query budgets: the SLA scanner's cost per batch of due clocks, and opening a ticket.

A change that adds a query per clock or per ticket shows up here first (STYLE.md, hot paths)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from tests.tickets.conftest import Desk
from tickets.models import Notification, SlaClock, Ticket
from tickets.services import sla
from tickets.services import tickets as ticket_services


def _create(desk: Desk, **extra) -> Ticket:
    return ticket_services.ticket_create(
        subject="Printer on fire",
        body="It started this morning.",
        source=Ticket.Source.INBOX,
        creator=desk.agent,
        workgroup_id=desk.workgroup.pk,
        requester_user_id=desk.staff.pk,
        **extra,
    )


def _drain(now: dt.datetime) -> None:
    """Handle whatever other tests left due in the shared tenant before ``now``."""
    while any(sla.sla_scan(now=now).values()):
        pass


def test_the_scanner_costs_two_queries_per_batch_and_two_per_clock(desk, monkeypatch):
    # given 7 urgent tickets opened in the future (nothing else due around them) and batches of 3
    with schema_context(desk.tenant.schema_name):
        later = timezone.now() + dt.timedelta(days=40)
        _drain(later - dt.timedelta(days=1))
        with mock.patch("django.utils.timezone.now", return_value=later):
            tickets = [
                _create(desk, priority="urgent", assignee_id=desk.agent.pk) for _ in range(7)
            ]
        monkeypatch.setattr(sla, "BATCH", 3)
        # when the scanner runs past their first-response warning (75 % of 10 min)
        with CaptureQueriesContext(connection) as queries:
            done = sla.sla_scan(now=later + dt.timedelta(minutes=8))
        # then each batch is one transaction of 4 statements (BEGIN; lock the due clocks with
        # their ticket, lead and supervisor; their watchers; COMMIT) plus 2 per clock (mark it;
        # insert its notifications); the breach and escalation steps, with nothing due, cost 3
        # each (BEGIN, an empty lock, COMMIT)
        assert done == {"warning": 7, "breach": 0, "escalation": 0}
        batches = [3, 3, 1]
        assert len(queries) == sum(4 + 2 * n for n in batches) + 3 + 3, [
            q["sql"][:120] for q in queries
        ]
        assert (
            Notification.objects.filter(
                clock__ticket__in=tickets, kind=Notification.Kind.SLA_WARNING
            ).count()
            == 7
        )


def test_opening_a_ticket_takes_a_fixed_number_of_queries(desk):
    with schema_context(desk.tenant.schema_name):
        _create(desk)  # the counter row exists, caches are warm
        # when an agent opens a ticket for a colleague, assigned to another agent
        with CaptureQueriesContext(connection) as queries:
            ticket = _create(desk, assignee_id=desk.other.pk, tags=["printer"])
        # then 18 statements: BEGIN; the requester, the assignee and the workgroup looked up (3);
        # the number taken from the locked counter (2); the ticket and its first comment (2); the
        # policy found and stored, its targets read, two clocks inserted (5); the creator
        # watches (1); the assignee notified (1); ticket.updated's recipients (watchers, the
        # workgroup's agents: 2); COMMIT
        assert len(queries) == 18, [q["sql"][:120] for q in queries]
        assert SlaClock.objects.filter(ticket=ticket).count() == 2
