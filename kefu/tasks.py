"""Celery tasks of customer service. Thin: they enter a tenant and call one service."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import get_tenant_model, schema_context

from kefu import automation, presence, robot, routing, services, stats, transcripts, transfers
from kefu.models import Session


def _active_schemas() -> list[str]:
    """Schemas of the active tenants (the beat tasks fan out one task per tenant)."""
    return list(
        get_tenant_model()
        .objects.filter(is_active=True)
        .exclude(schema_name="public")
        .values_list("schema_name", flat=True)
    )


@shared_task
def queue_dispatch_task(schema: str) -> int:
    """Assign what waits in every workgroup queue of one tenant; returns the number assigned."""
    with schema_context(schema):
        workgroup_ids = set(
            Session.objects.filter(status=Session.Status.QUEUED).values_list(
                "workgroup_id", flat=True
            )
        )
        return sum(services.workgroup_dispatch(workgroup_id=wid) for wid in workgroup_ids)


@shared_task
def queue_dispatch_scan_task() -> None:
    """Beat (every 15 s): a safety net behind the event-driven dispatch — e.g. an agent whose
    status was changed directly in the database — fanned out as one task per active tenant."""
    for schema in _active_schemas():
        queue_dispatch_task.delay(schema)


@shared_task(acks_late=True)
def robot_answer_task(schema: str, session_id: int, message_id: int) -> int | None:
    """The robot answers one visitor message (:func:`kefu.robot.answer`); returns the id of its
    message, or None when there was nothing to answer. Safe to run twice."""
    with schema_context(schema):
        reply = robot.answer(session_id=session_id, message_id=message_id)
        return reply.pk if reply is not None else None


@shared_task(acks_late=True)
def assist_draft_task(schema: str, user_id: int, conversation_id: int, request_id: str) -> None:
    """Write an LLM draft reply for an agent (:func:`kefu.robot.assist_draft`), streamed to the
    agent's sockets as ``assist.draft`` frames."""
    with schema_context(schema):
        robot.assist_draft(user_id=user_id, conversation_id=conversation_id, request_id=request_id)


@shared_task
def timers_scan_task(schema: str) -> int:
    """One tenant's service timers: queue wait limits (:func:`kefu.routing.queue_wait_scan`),
    expired transfers (:func:`kefu.transfers.expire_scan`), reminders, re-assignments and idle
    closes (:func:`kefu.automation.timers_scan`), agents whose last tab closed
    (:func:`kefu.presence.offline_scan`); returns how many were acted on."""
    with schema_context(schema):
        return (
            routing.queue_wait_scan()
            + transfers.expire_scan()
            + automation.timers_scan()
            + presence.offline_scan()
        )


@shared_task
def timers_scan_all_task() -> None:
    """Beat (every ``KEFU_TIMER_INTERVAL_S``, default 5 s): one :func:`timers_scan_task` per
    active tenant."""
    for schema in _active_schemas():
        timers_scan_task.delay(schema)


@shared_task(acks_late=True)
def stats_rollup_task(schema: str, day: str) -> int:
    """Recompute one tenant's statistics of one local day (ISO date); returns the rows written."""
    import datetime as dt

    with schema_context(schema):
        return stats.rollup(dt.date.fromisoformat(day))


@shared_task
def stats_rollup_all_task() -> None:
    """Beat (every ``KEFU_STATS_INTERVAL_S``, default 300 s): today's and yesterday's statistics
    of every active tenant, one :func:`stats_rollup_task` each."""
    import datetime as dt

    from django.utils import timezone

    today = timezone.localdate()
    days = [today.isoformat(), (today - dt.timedelta(days=1)).isoformat()]
    for schema in _active_schemas():
        for day in days:
            stats_rollup_task.delay(schema, day)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def transcript_email_task(schema: str, session_id: int, address: str) -> bool:
    """E-mail a conversation's transcript to the visitor (:func:`kefu.transcripts.transcript_send`);
    SMTP errors retry with back-off. Returns whether a mail was sent."""
    with schema_context(schema):
        return transcripts.transcript_send(session_id=session_id, address=address)
