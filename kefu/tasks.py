"""Celery tasks of customer service. Thin: they enter a tenant and call one service.

The tasks that a service enqueues itself are defined beside that service, under their names here
(``kefu.tasks.<name>``), and re-exported below: :func:`~kefu.robot.answers.robot_answer_task`,
:func:`~kefu.robot.drafts.assist_draft_task`,
:func:`~kefu.transcripts.transcript_email_task` and :func:`~kefu.exports.export_job_task`.
That keeps this module on top of every service
(the beat scans call them all) without a service importing it back.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu import exports, privacy, stats
from kefu.channels.delivery import delivery_send_task
from kefu.channels.inbound import channel_event_task, channel_events_prune
from kefu.channels.mail_inbound import (
    imap_poll_all_task,
    imap_poll_task,
    imap_poll_tenant_task,
)
from kefu.exports import export_job_task
from kefu.models import AgentState, ScheduledMessage, Session, Transfer
from kefu.robot.answers import robot_answer_task
from kefu.robot.drafts import assist_draft_task
from kefu.services import agents, automation, queue, routing, scheduled, snooze, transfers
from kefu.transcripts import transcript_email_task
from tenants import fanout

__all__ = [
    "assist_draft_task",
    "channel_event_task",
    "delivery_send_task",
    "export_job_task",
    "exports_purge_task",
    "imap_poll_all_task",
    "imap_poll_task",
    "imap_poll_tenant_task",
    "queue_dispatch_scan_task",
    "queue_dispatch_task",
    "robot_answer_task",
    "stats_rollup_all_task",
    "stats_rollup_task",
    "timers_scan_all_task",
    "timers_scan_task",
    "transcript_email_task",
]


@shared_task
def queue_dispatch_task(schema: str) -> int:
    """Assign what waits in every workgroup queue of one tenant; returns the number assigned."""
    with schema_context(schema):
        workgroup_ids = set(
            Session.objects.filter(status=Session.Status.QUEUED).values_list(
                "workgroup_id", flat=True
            )
        )
        return sum(routing.workgroup_dispatch(workgroup_id=wid) for wid in workgroup_ids)


@shared_task
def queue_dispatch_scan_task() -> int:
    """Beat (every 15 s): a safety net behind the event-driven dispatch — e.g. an agent whose
    status was changed directly in the database — for the tenants with live conversations or
    agents (the ``timers`` set; every active tenant once a sweep), in chunks
    (:func:`tenants.fanout.fanout`). Returns how many tenants."""
    return fanout.fanout("kefu.tasks.queue_dispatch_task", kind="timers")


def _timers_live() -> bool:
    """Whether the current tenant has something a timers scan may act on: a conversation not
    closed, a connected agent, a pending transfer or a pending scheduled message."""
    return (
        Session.objects.exclude(status=Session.Status.CLOSED).exists()
        or AgentState.objects.filter(connected=True).exists()
        or Transfer.objects.filter(status=Transfer.Status.PENDING).exists()
        or ScheduledMessage.objects.filter(state=ScheduledMessage.State.PENDING).exists()
    )


@shared_task
def timers_scan_task(schema: str) -> int:
    """One tenant's service timers: queue wait limits (:func:`kefu.services.queue.queue_wait_scan`),
    expired transfers (:func:`kefu.services.transfers.expire_scan`), reminders, re-assignments
    and idle closes (:func:`kefu.services.automation.timers_scan`), agents whose last tab closed
    (:func:`kefu.services.agents.offline_scan`), snoozes that ended
    (:func:`kefu.services.snooze.snooze_wake_scan`) and scheduled messages due
    (:func:`kefu.services.scheduled.scheduled_due_send`); returns how many were acted on. The
    tenant stays in the live ``timers`` set of :mod:`tenants.fanout` while it has such work."""
    with schema_context(schema):
        seen = fanout.live_seen("timers", schema)  # before looking: a mark made meanwhile stays
        done = (
            queue.queue_wait_scan()
            + transfers.expire_scan()
            + automation.timers_scan()
            + agents.offline_scan()
            + snooze.snooze_wake_scan()
            + scheduled.scheduled_due_send()
        )
        if _timers_live():
            fanout.live_add("timers", schema, renew=False)
        else:
            fanout.live_done("timers", schema, seen)
        return done


@shared_task
def timers_scan_all_task() -> int:
    """Beat (every ``KEFU_TIMER_INTERVAL_S``, default 5 s): :func:`timers_scan_task` for the
    tenants in the live ``timers`` set (every active tenant once a sweep), in chunks
    (:func:`tenants.fanout.fanout`). Returns how many tenants."""
    return fanout.fanout("kefu.tasks.timers_scan_task", kind="timers")


@shared_task(acks_late=True)
def stats_rollup_task(schema: str, day: str) -> int:
    """Recompute one tenant's statistics of one local day (ISO date); returns the rows written."""
    with schema_context(schema):
        return stats.rollup(dt.date.fromisoformat(day))


@shared_task
def stats_rollup_all_task() -> int:
    """Beat (every ``KEFU_STATS_INTERVAL_S``, default 300 s): today's and yesterday's statistics
    of every active tenant (:func:`stats_rollup_task`), in chunks
    (:func:`tenants.fanout.fanout`). Returns how many tenants."""
    today = timezone.localdate()
    count = 0
    for day in (today, today - dt.timedelta(days=1)):
        count = fanout.fanout("kefu.tasks.stats_rollup_task", args=(day.isoformat(),))
    return count


@shared_task
def retention_task(schema: str) -> dict:
    """Apply one tenant's retention policy (``kefu.privacy.retention_apply``); the report."""
    with schema_context(schema):
        return privacy.retention_apply()


@shared_task
def exports_purge_task(schema: str) -> int:
    """Delete one tenant's list exports older than ``WEIYU_EXPORTS_KEEP_DAYS``
    (:func:`kefu.exports.exports_purge`); returns how many."""
    with schema_context(schema):
        return exports.exports_purge()


@shared_task
def channel_events_prune_task(schema: str) -> int:
    """Delete one tenant's inbound channel events past their retention
    (:func:`kefu.channels.inbound.channel_events_prune`); the rows deleted."""
    with schema_context(schema):
        return channel_events_prune()


@shared_task
def channel_events_prune_all_task() -> int:
    """Beat (hourly): :func:`channel_events_prune_task` for every active tenant, in chunks
    (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("kefu.tasks.channel_events_prune_task")


@shared_task
def retention_all_task() -> int:
    """Beat (daily): :func:`retention_task` and :func:`exports_purge_task` for every active
    tenant, in chunks (:func:`tenants.fanout.fanout`); returns how many tenants."""
    fanout.fanout("kefu.tasks.retention_task")
    return fanout.fanout("kefu.tasks.exports_purge_task")
