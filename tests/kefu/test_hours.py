"""Work hours per workgroup, in the calendar's own time zone, with holidays (KF-7)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message
from kefu import hours
from kefu.models import Session, Workgroup
from kefu.services import messages
from org.models import BusinessCalendar, BusinessHours, Holiday
from tests.conftest import make_desk, make_visitor, unique
from weiyu.errors import ServiceError


def _calendar(zone: str, *, this_hour_only: bool = False, holiday_today: bool = False):
    """A calendar open all week (or only during the current local hour of ``zone``)."""
    calendar = BusinessCalendar.objects.create(name=unique("hours"), timezone=zone)
    local = timezone.now().astimezone(ZoneInfo(zone))
    for weekday in range(7):
        if this_hour_only:
            if weekday != local.weekday():
                continue
            opens = dt.time(local.hour, 0)
            closes = dt.time((local.hour + 1) % 24, 0)
        else:
            opens, closes = dt.time(0, 0), dt.time(0, 0)  # midnight to midnight
        BusinessHours.objects.create(calendar=calendar, weekday=weekday, opens=opens, closes=closes)
    if holiday_today:
        Holiday.objects.create(calendar=calendar, date=local.date(), name="Festival")
    hours._cache.clear()
    return calendar


def test_the_hours_are_read_in_the_calendars_own_time_zone(acme):
    with schema_context("acme"):
        la = _calendar("America/Los_Angeles", this_hour_only=True)
        tokyo = _calendar("Asia/Tokyo", this_hour_only=True)
        # "this hour" in Los Angeles is open there …
        assert hours.workgroup_hours(calendar_id=la.pk)[0] is True
        # … while the same wall-clock hour in Tokyo (16-17 hours apart) is not now
        la_hour = timezone.now().astimezone(ZoneInfo("America/Los_Angeles")).hour
        tokyo_now = timezone.now().astimezone(ZoneInfo("Asia/Tokyo"))
        tokyo_row = BusinessHours.objects.get(calendar=tokyo)
        tokyo_row.opens = dt.time(la_hour, 0)
        tokyo_row.closes = dt.time((la_hour + 1) % 24, 0) if la_hour < 23 else dt.time(0, 0)
        tokyo_row.save()
        hours._cache.clear()
        is_open, opens = hours.workgroup_hours(calendar_id=tokyo.pk)
        assert is_open is (tokyo_now.hour == la_hour)
        local_opening = opens.astimezone(ZoneInfo("Asia/Tokyo"))
        assert (local_opening.hour, local_opening.minute) == (la_hour, 0)
        assert local_opening.weekday() == tokyo_row.weekday
        assert opens > timezone.now() or is_open


def test_a_holiday_closes_the_workgroup_until_the_next_day(acme):
    with schema_context("acme"):
        calendar = _calendar("Europe/Berlin", holiday_today=True)
        is_open, opens = hours.workgroup_hours(calendar_id=calendar.pk)
        assert is_open is False
        berlin_today = timezone.now().astimezone(ZoneInfo("Europe/Berlin")).date()
        local = opens.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.date(), local.hour, local.minute) == (
            berlin_today + dt.timedelta(days=1),
            0,
            0,
        )


def test_outside_hours_the_widget_offers_a_message_and_a_chat_is_not_started(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        calendar = _calendar("Asia/Shanghai", holiday_today=True)
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(calendar=calendar)
    # the widget learns it is closed, and when it opens
    client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    body = client.post(
        "/api/v1/widget/session",
        json.dumps({"channel": desk.channel.public_key, "language": "en"}),
        content_type="application/json",
    ).json()
    assert (body["open"], body["agents_online"]) == (False, False)
    assert body["opens_at"] is not None
    # a message that would start a chat is refused with the reason, and nothing is stored
    with schema_context("acme"):
        visitor, _ = make_visitor(desk)
        with pytest.raises(ServiceError) as closed:
            messages.visitor_message_send(
                visitor=visitor, conversation_id=None, content="hello?", client_msg_id=unique("c")
            )
        assert closed.value.code == "closed"
        assert "open again at" in closed.value.message
        assert not Session.objects.filter(visitor=visitor).exists()
        assert not Message.objects.filter(sender_key=visitor.member_key).exists()
        # within hours again, the chat starts as usual
        Holiday.objects.filter(calendar=calendar).delete()
        hours._cache.clear()
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello?", client_msg_id=unique("c")
        )
        assert Session.objects.get(visitor=visitor).agent_id == desk.agents[0].pk
