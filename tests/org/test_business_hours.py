"""The business-hours calculator (org/business_hours.py): examples across a weekend, a
holiday and both daylight-saving changes, then properties checked by hypothesis on random
calendars, zones and instants."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from org.business_hours import Calendar, add, between

UTC = dt.UTC
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_SIX = ((9 * 60, 18 * 60),)
WEEKDAYS = (NINE_TO_SIX,) * 5 + ((), ())
HOUR = 3600


def at(tz: ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def test_a_target_runs_over_the_weekend_and_a_holiday():
    # Friday 2026-09-25 16:00 in Shanghai, 4 business hours; Monday is a holiday (National Day
    # falls later, but any date will do)
    cal = Calendar(SHANGHAI, WEEKDAYS, frozenset({dt.date(2026, 9, 28)}))
    due = add(cal, at(SHANGHAI, 2026, 9, 25, 16), 4 * HOUR)
    # 2 h on Friday, nothing on Saturday, Sunday and the Monday holiday, 2 h on Tuesday
    assert due == at(SHANGHAI, 2026, 9, 29, 11)
    assert between(cal, at(SHANGHAI, 2026, 9, 25, 16), due) == 4 * HOUR


def test_a_clock_started_outside_hours_starts_at_the_next_opening():
    cal = Calendar(SHANGHAI, WEEKDAYS)
    assert add(cal, at(SHANGHAI, 2026, 9, 26, 22), 30 * 60) == at(SHANGHAI, 2026, 9, 28, 9, 30)
    # and a target that ends exactly at closing time is due at closing time
    assert add(cal, at(SHANGHAI, 2026, 9, 28, 17), HOUR) == at(SHANGHAI, 2026, 9, 28, 18)


def test_clocks_going_forward_and_back_in_berlin():
    night_shift = (((0, 6 * 60),),) * 7  # 00:00-06:00 local, every day
    cal = Calendar(BERLIN, night_shift)
    # 2026-03-29: 02:00-03:00 does not exist, the shift lasts 5 real hours
    spring = at(BERLIN, 2026, 3, 29, 0)
    assert between(cal, spring, at(BERLIN, 2026, 3, 29, 6)) == 5 * HOUR
    # 2026-10-25: 02:00-03:00 happens twice, the shift lasts 7 real hours
    autumn = at(BERLIN, 2026, 10, 25, 0)
    assert between(cal, autumn, at(BERLIN, 2026, 10, 25, 6)) == 7 * HOUR
    assert add(cal, autumn, 7 * HOUR) == at(BERLIN, 2026, 10, 25, 6)


def test_the_same_instant_is_business_time_in_one_zone_and_not_in_another():
    instant = dt.datetime(2026, 9, 28, 3, 0, tzinfo=UTC)  # 11:00 Shanghai, 23:00 New York (Sun)
    assert between(Calendar(SHANGHAI, WEEKDAYS), instant, instant + dt.timedelta(hours=1)) == HOUR
    assert between(Calendar(NEW_YORK, WEEKDAYS), instant, instant + dt.timedelta(hours=1)) == 0


def test_around_the_clock_is_plain_arithmetic():
    start = at(BERLIN, 2026, 10, 24, 12)
    assert add(None, start, 36 * HOUR) == start + dt.timedelta(hours=36)
    assert between(None, start, start + dt.timedelta(hours=36)) == 36 * HOUR


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="needs some business hours"):
        Calendar(SHANGHAI, ((),) * 7)
    with pytest.raises(ValueError, match="overlapping"):
        Calendar(SHANGHAI, (((9 * 60, 12 * 60), (11 * 60, 13 * 60)), *((),) * 6))
    with pytest.raises(ValueError, match="timezone-aware"):
        add(Calendar(SHANGHAI, WEEKDAYS), dt.datetime(2026, 1, 1), 60)  # noqa: DTZ001
    with pytest.raises(ValueError, match=">= 0"):
        add(Calendar(SHANGHAI, WEEKDAYS), at(SHANGHAI, 2026, 1, 1), -1)


# --- properties ---------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        ZoneInfo(z)
        for z in (
            "UTC",
            "Asia/Shanghai",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "America/Santiago",
            "Asia/Kolkata",
        )
    ]
)


@st.composite
def days(draw) -> tuple[tuple[int, int], ...]:
    cuts = sorted(draw(st.sets(st.integers(0, 1440), max_size=6)))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    return tuple((cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2) if cuts[i] < cuts[i + 1])


@st.composite
def calendars(draw) -> Calendar:
    week = tuple(draw(days()) for _ in range(7))
    if not any(week):
        week = (NINE_TO_SIX, *week[1:])
    base = dt.date(2026, 1, 1)
    holidays = frozenset(
        base + dt.timedelta(days=n) for n in draw(st.sets(st.integers(0, 730), max_size=40))
    )
    return Calendar(draw(ZONES), week, holidays)


instants = st.datetimes(
    min_value=dt.datetime(2026, 1, 1),  # noqa: DTZ001 (hypothesis: naive bounds, aware values)
    max_value=dt.datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
durations = st.integers(0, 30 * 24 * HOUR)


def reachable(cal: Calendar, seconds: int) -> bool:
    """Whether ``seconds`` of business time fit well inside the calculator's horizon."""
    weekly = sum(end - start for day in cal.week for start, end in day) * 60
    return seconds <= weekly * 52


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations)
def test_the_time_added_is_the_time_between(cal, start, seconds):
    assume(reachable(cal, seconds))
    due = add(cal, start, seconds)
    assert due >= start
    assert between(cal, start, due) == pytest.approx(seconds, abs=1e-5)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations, durations)
def test_adding_in_two_steps_is_adding_at_once(cal, start, first, second):
    assume(reachable(cal, first + second))
    assert add(cal, add(cal, start, first), second) == add(cal, start, first + second)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, instants, instants)
def test_business_time_splits_at_any_point(cal, a, b, c):
    a, b, c = sorted((a, b, c))
    assert between(cal, a, c) == pytest.approx(between(cal, a, b) + between(cal, b, c), abs=1e-5)
    assert between(cal, a, c) <= (c - a).total_seconds()


@settings(max_examples=100, deadline=None)
@given(calendars(), instants, st.integers(1, 10 * 24 * HOUR))
def test_holidays_and_closed_days_never_count(cal, start, seconds):
    assume(reachable(cal, seconds))
    due = add(cal, start, seconds)
    for a, b in _intervals_between(cal, start, due):
        local = a.astimezone(cal.tz)
        assert local.date() not in cal.holidays or b == a


def _intervals_between(cal, start, end):
    from org.business_hours import intervals

    for a, b in intervals(cal, start):
        if a >= end:
            return
        yield a, min(b, end)
