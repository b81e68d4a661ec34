"""Demo data for tickets (``manage.py demo_setup``): office hours, a default SLA policy and one
ticket left by a website visitor, so the inbox's Tickets tab has something to show."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kefu.services import visitors as kefu_services
from org.models import BusinessCalendar, BusinessHours
from tickets.models import Category, SlaPolicy, SlaTarget, Ticket
from tickets.services import tickets as ticket_services

HOURS = 3600


def populate(*, admin: Any, workgroup: Any, channel: Any, **_: Any) -> None:
    """Idempotent: does nothing once a default policy exists."""
    if SlaPolicy.objects.filter(is_default=True).exists():
        return
    calendar = BusinessCalendar.objects.create(
        name="工作时间 Office hours", timezone="Asia/Shanghai"
    )
    for weekday in range(5):
        BusinessHours.objects.create(
            calendar=calendar, weekday=weekday, opens=dt.time(9), closes=dt.time(18)
        )
    policy = SlaPolicy.objects.create(
        name="标准 Standard", is_default=True, calendar=calendar, supervisor=admin
    )
    targets = {
        "urgent": (30 * 60, 30 * 60, 4 * HOURS),
        "high": (1 * HOURS, 1 * HOURS, 8 * HOURS),
        "normal": (4 * HOURS, 4 * HOURS, 24 * HOURS),
        "low": (8 * HOURS, 8 * HOURS, 72 * HOURS),
    }
    for priority, (first, following, resolution) in targets.items():
        SlaTarget.objects.create(
            policy=policy,
            priority=priority,
            first_response_s=first,
            next_response_s=following,
            resolution_s=resolution,
        )
    for name in ("订单 Orders", "账户 Account", "技术 Technical"):
        Category.objects.get_or_create(name=name)
    if channel is not None and not Ticket.objects.exists():
        visitor, _token = kefu_services.visitor_start(channel=channel, language="zh-CN")
        ticket_services.ticket_leave_message(
            visitor=visitor,
            name="王芳 Wang Fang",
            email="wang.fang@example.com",
            body="我的订单 #8812 还没有发货，请帮忙查一下。\nMy order #8812 has not shipped yet.",
        )
