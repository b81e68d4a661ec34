"""Snooze and scheduled replies in real Chromium, with a real Celery worker and its beat: a
snoozed conversation comes back by itself; a reply scheduled on the customer's clock reaches the
widget at its time; and killed mid-send, the worker's replacement delivers it exactly once."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import psycopg
import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import ScheduledMessage, Session
from kefu.services import scheduled
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, unique
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in
from tests.servers import celery_worker_start, database_url
from tests.waits import wait_until
from weiyu.celery import app

pytestmark = pytest.mark.e2e

AGENT_ZONE = "Europe/Berlin"
CUSTOMER_ZONE = "Asia/Shanghai"


@pytest.fixture
def beat_queue():
    """A Celery queue of the test's own; the beat of the workers started on it sends there."""
    queue = unique("snooze")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous


def _worker(queue: str, name: str):
    # timers every second; a pass a killed worker left unfinished holds the next back 5 s at
    # most (tenants.fanout), as its 30 s would against the 5 s interval in production
    return celery_worker_start(
        queue=queue, name=name, concurrency=1, beat=True, KEFU_TIMER_INTERVAL_S="1",
        WEIYU_FANOUT_PASS_STALE_S="5", SLA_SCAN_INTERVAL_S="600", KEFU_STATS_INTERVAL_S="600",
        WEIYU_SEMANTIC="off",
    )  # fmt: skip


def _desk(django_db_blocker, prefix: str):
    with django_db_blocker.unblock():
        schema = unique(prefix)
        tenant = tenant_create(
            name=prefix.title(), schema_name=schema, domain=f"{schema}.localhost",
            admin_username="bob", admin_password=PASSWORD,
        )  # fmt: skip
        return make_desk(tenant, agents=1)


def _chat(browser, daphne_server, desk, text: str):
    """The agent's inbox (in Berlin) with the visitor's conversation open, and the widget of the
    visitor (in Shanghai) who wrote ``text``."""
    host = f"{desk.tenant.schema_name}.localhost"
    agent_ctx = browser.new_context(locale="en-US", timezone_id=AGENT_ZONE)
    visitor_ctx = browser.new_context(locale="en-US", timezone_id=CUSTOMER_ZONE)
    inbox = agent_ctx.new_page()
    _sign_in(inbox, daphne_server.url(host, "/inbox/login/"), desk.agents[0].username)
    _page, widget = _open_widget(visitor_ctx, daphne_server.url(host, "/"))
    _say(widget, text)
    inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
    inbox.locator("#messages .msg", has_text=text).wait_for(timeout=TIMEOUT)
    with schema_context(desk.tenant.schema_name):
        session = Session.objects.select_related("visitor").get(visitor__channel=desk.channel)
    return agent_ctx, visitor_ctx, inbox, widget, session


def _wall(when: dt.datetime, zone: str) -> str:
    """``when`` as a datetime-local input in ``zone`` reads it."""
    return when.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_snoozed_conversation_comes_back_by_itself(
    daphne_server, browser, django_db_blocker, beat_queue
):
    desk = _desk(django_db_blocker, "snooze")
    worker = _worker(beat_queue, "snooze-beat")
    agent_ctx, visitor_ctx, inbox, _widget, session = _chat(
        browser, daphne_server, desk, "Where is my parcel?"
    )
    try:
        # when the agent snoozes it until a time on their clock, 15 seconds ahead
        inbox.click("#snooze-btn")
        until = timezone.now() + dt.timedelta(seconds=15)
        inbox.fill("#snooze-at", _wall(until, AGENT_ZONE))
        inbox.check("#snooze-dialog input[value='custom']")
        inbox.click("#snooze-ok")
        # then the header says it is snoozed, and an internal line records it
        bar = inbox.locator("#snooze-bar")
        bar.wait_for(timeout=TIMEOUT)
        assert "Snoozed until" in bar.inner_text()
        inbox.locator("#messages .msg.system", has_text="snoozed the conversation until").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            session.refresh_from_db()
            assert abs((session.snoozed_until - until).total_seconds()) < 1
            stored_until = session.snoozed_until  # whole seconds, as the input gave it
        # and when the time comes the beat brings it back, pushed live to the inbox
        bar.wait_for(state="hidden", timeout=TIMEOUT)
        inbox.locator("#messages .msg.system", has_text="The snooze ended").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            session.refresh_from_db()
            assert session.snoozed_at is None
            assert timezone.now() >= stored_until
    finally:
        agent_ctx.close()
        visitor_ctx.close()
        worker.stop()


def test_a_scheduled_reply_arrives_in_the_widget_at_its_time(
    daphne_server, browser, django_db_blocker, beat_queue
):
    desk = _desk(django_db_blocker, "sched")
    worker = _worker(beat_queue, "sched-beat")
    agent_ctx, visitor_ctx, inbox, widget, session = _chat(
        browser, daphne_server, desk, "Can you call me back tomorrow?"
    )
    text = "Good morning! Calling you in five minutes."
    try:
        # when the agent schedules a reply, shown on the customer's clock (Shanghai)
        inbox.fill("#composer", text)
        inbox.click("#schedule-btn")
        zone_line = inbox.locator("#schedule-zone")
        zone_line.wait_for(timeout=TIMEOUT)
        assert CUSTOMER_ZONE in zone_line.inner_text()
        assert inbox.input_value("#schedule-text") == text
        send_at = timezone.now() + dt.timedelta(seconds=20)
        inbox.fill("#schedule-at", _wall(send_at, CUSTOMER_ZONE))
        inbox.click("#schedule-save")
        # then it waits above the composer, with its time in the customer's zone
        item = inbox.locator("#scheduled-list .scheduled-item")
        item.wait_for(timeout=TIMEOUT)
        assert CUSTOMER_ZONE in item.inner_text()
        assert text in item.inner_text()
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            row = ScheduledMessage.objects.get(conversation_id=session.conversation_id)
            assert abs((row.send_at - send_at).total_seconds()) < 1
            assert row.timezone == CUSTOMER_ZONE
        # and at its time it reaches the widget live, once, and leaves the waiting list
        bubble = widget.locator("#messages .msg:not(.system) .msg-text", has_text=text)
        bubble.wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(desk.tenant.schema_name):
            row.refresh_from_db()
            assert row.state == "sent"
            assert row.sent_at >= row.send_at  # not before its time (whole seconds)
        item.wait_for(state="detached", timeout=TIMEOUT)
        inbox.locator("#messages .msg .msg-text", has_text=text).wait_for(timeout=TIMEOUT)
        assert bubble.count() == 1
    finally:
        agent_ctx.close()
        visitor_ctx.close()
        worker.stop()


def _held_by_another(schema: str, scheduled_id: int) -> bool:
    """Whether another transaction holds the scheduled row (a worker claimed it)."""
    with psycopg.connect(database_url()) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        row = conn.execute(
            "SELECT id FROM kefu_scheduledmessage WHERE id = %s FOR UPDATE SKIP LOCKED",
            [scheduled_id],
        ).fetchone()
        return row is None


def _conversation_locked(schema: str, conversation_id: int) -> bool:
    """Whether another transaction holds the conversation's row (a NOWAIT lock fails)."""
    with psycopg.connect(database_url()) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        try:
            conn.execute(
                "SELECT id FROM im_conversation WHERE id = %s FOR UPDATE NOWAIT", [conversation_id]
            )
        except psycopg.errors.LockNotAvailable:
            return True
        return False


def test_a_worker_killed_mid_send_still_delivers_once(
    daphne_server, browser, django_db_blocker, beat_queue
):
    desk = _desk(django_db_blocker, "kill")
    schema = desk.tenant.schema_name
    agent_ctx, visitor_ctx, _inbox, widget, session = _chat(
        browser, daphne_server, desk, "Remind me at noon please"
    )
    text = "It is noon: here is your reminder."
    lock = psycopg.connect(database_url())
    worker = None
    try:
        # given a reply scheduled a moment ahead, and the conversation row held by another
        # transaction, so that the worker blocks inside its send, after claiming the row
        with django_db_blocker.unblock(), schema_context(schema):
            item = scheduled.scheduled_create(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                content=text,
                send_at=(timezone.now() + dt.timedelta(seconds=1)).isoformat(),
            )
        lock.execute(f'SET search_path TO "{schema}"')
        lock.execute(
            "SELECT id FROM im_conversation WHERE id = %s FOR UPDATE", [session.conversation_id]
        )
        # and no message may be written in this tenant meanwhile (a table lock as well as the
        # row's: the send must wait here whatever path it takes to the conversation)
        lock.execute("LOCK TABLE im_message IN SHARE MODE")
        assert _conversation_locked(schema, session.conversation_id)
        worker = _worker(beat_queue, "kill-beat")
        # when the worker has claimed it and is stuck writing the message, it is killed
        wait_until(lambda: _held_by_another(schema, item.pk), what="the worker's claim")
        worker.kill()
        lock.rollback()
        # then its transaction is rolled back: still pending, nothing written
        wait_until(lambda: not _held_by_another(schema, item.pk), what="the dead claim's end")
        with django_db_blocker.unblock(), schema_context(schema):
            item.refresh_from_db()
            assert item.state == "pending"
            assert not Message.objects.filter(content=text).exists()
        # and a new worker sends it, once, to the widget
        worker = _worker(beat_queue, "kill-beat-2")
        bubble = widget.locator("#messages .msg:not(.system) .msg-text", has_text=text)
        bubble.wait_for(timeout=TIMEOUT)
        with django_db_blocker.unblock(), schema_context(schema):
            wait_until(
                lambda: ScheduledMessage.objects.get(pk=item.pk).state == "sent",
                what="the scheduled row marked sent",
            )
            # a later one goes out too: the beat has scanned again since
            later = scheduled.scheduled_create(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                content="And one more thing.",
                send_at=(timezone.now() + dt.timedelta(seconds=1)).isoformat(),
            )
        widget.locator("#messages .msg .msg-text", has_text="And one more thing.").wait_for(
            timeout=TIMEOUT
        )
        with django_db_blocker.unblock(), schema_context(schema):
            assert ScheduledMessage.objects.get(pk=later.pk).state == "sent"
            assert Message.objects.filter(content=text).count() == 1
        assert bubble.count() == 1
    finally:
        if worker is not None:  # also when the test failed: a live beat would go on sending
            worker.stop()
        lock.close()
        agent_ctx.close()
        visitor_ctx.close()
