"""Fixtures for tickets: a tenant with a workgroup, agents, a lead, a supervisor and SLA policies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from kefu.models import Channel, Workgroup
from org.models import BusinessCalendar, BusinessHours, User
from tenants.models import Tenant
from tests.conftest import make_agent, make_visitor, unique
from tickets.models import SlaPolicy, SlaTarget


@dataclass
class Desk:
    tenant: Tenant
    workgroup: Workgroup
    channel: Channel
    agent: User
    other: User
    lead: User
    supervisor: User
    staff: User
    policy: SlaPolicy


def make_policy(
    *,
    workgroup: Workgroup,
    name: str = "Standard",
    calendar: BusinessCalendar | None = None,
    **targets: Any,
) -> SlaPolicy:
    """The workgroup's policy with the given ``<priority>=(first, next, resolution)`` targets
    (seconds; None: no target). Tests share the tenant, so no test sets a default policy."""
    policy = SlaPolicy.objects.create(name=name, calendar=calendar)
    policy.workgroups.add(workgroup)
    for priority, (first, following, resolution) in targets.items():
        SlaTarget.objects.create(
            policy=policy,
            priority=priority,
            first_response_s=first,
            next_response_s=following,
            resolution_s=resolution,
        )
    return policy


def office_hours(tz: str = "Asia/Shanghai") -> BusinessCalendar:
    cal = BusinessCalendar.objects.create(name=unique("cal"), timezone=tz)
    for weekday in range(5):
        BusinessHours.objects.create(
            calendar=cal, weekday=weekday, opens=dt.time(9), closes=dt.time(18)
        )
    return cal


@pytest.fixture
def desk(acme: Tenant) -> Iterator[Desk]:
    with schema_context(acme.schema_name):
        agent = make_agent(name="tina", status="offline")
        other = make_agent(name="omar", status="offline")
        lead = make_agent(name="lena", status="offline")
        supervisor = make_agent(name="sam", status="offline")
        staff = User.objects.create_user(username=unique("stan"), password="x", role="staff")
        workgroup = Workgroup.objects.create(name=unique("support"), lead=lead)
        workgroup.agents.add(agent, other, lead)
        channel = Channel.objects.create(name=unique("site"), workgroup=workgroup)
        policy = make_policy(
            workgroup=workgroup,
            normal=(3600, 1800, 8 * 3600),
            urgent=(600, 300, 3600),
            low=(None, None, 86400),
        )
        policy.supervisor = supervisor
        policy.escalate_lead_after_s = 0
        policy.escalate_supervisor_after_s = 1800
        policy.save()
        yield Desk(acme, workgroup, channel, agent, other, lead, supervisor, staff, policy)
        connection.set_schema_to_public()


def visitor_of(desk: Desk):
    return make_visitor(desk)[0]  # type: ignore[arg-type]
