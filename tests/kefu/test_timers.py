"""Service timers run by a real Celery worker with its beat, on short durations: queue wait
limits (overflow to another workgroup, or an offer to leave a message)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message
from im.syslines import message_text
from kefu.models import AgentState, Session, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import messages
from tests.conftest import make_agent, make_desk, make_visitor, unique
from tests.waits import WAIT_S, wait_until
from weiyu.celery import app


@pytest.fixture(scope="module")
def beat_worker():
    from tests.servers import celery_worker_start

    queue = unique("timers")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="timers", concurrency=2, beat=True, KEFU_TIMER_INTERVAL_S="1",
        SLA_SCAN_INTERVAL_S="60", WEIYU_SEMANTIC="off",
    )  # fmt: skip
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


def _send(visitor, text: str = "hello"):
    return messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
    )


def _wait_for(predicate, timeout: float = WAIT_S):
    """The first truthy ``predicate()`` (run in acme), waiting for the worker's beat."""

    def in_acme():
        with schema_context("acme"):
            return predicate()

    return wait_until(in_acme, timeout=timeout, interval=0.2)


def test_a_visitor_waiting_too_long_overflows_to_the_backup_workgroup(acme, beat_worker):
    # given a workgroup nobody serves right now, which overflows after 2 s to a staffed one
    desk = make_desk(acme, agents=1, status="away")
    with schema_context("acme"):
        backup = Workgroup.objects.create(name=unique("backup"))
        helper = make_agent()
        backup.agents.add(helper)
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(
            max_wait_s=2, overflow_action="overflow", overflow_workgroup=backup
        )
        visitor, _ = make_visitor(desk)
        started = time.monotonic()
        _send(visitor)
        assert Session.objects.get(visitor=visitor).status == "queued"

    # when the wait passes, the worker moves the visitor on and the backup agent takes them
    session = _wait_for(
        lambda: Session.objects.filter(visitor=visitor, status="open", agent=helper).first()
    )
    waited = time.monotonic() - started
    assert session is not None
    assert session.workgroup_id == backup.pk
    assert session.overflowed_at is not None
    assert waited >= 2  # not before the wait limit (how soon after depends on the machine)


def test_a_visitor_waiting_too_long_is_asked_to_leave_a_message(acme, beat_worker):
    desk = make_desk(acme, agents=1, status="away")
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(
            max_wait_s=1, overflow_action="leave_message"
        )
        visitor, _ = make_visitor(desk, language="zh-CN")
        _send(visitor, "有人吗")

    session = _wait_for(lambda: Session.objects.filter(visitor=visitor, status="closed").first())
    assert session is not None
    with schema_context("acme"):
        notice = Message.objects.get(
            conversation_id=session.conversation_id, meta__leave_message=True
        )
    assert "留言" in notice.content


def test_an_unanswered_visitor_triggers_a_reminder_then_goes_to_another_agent(acme, beat_worker):
    # given two agents; the one who gets the visitor does not answer
    desk = make_desk(acme, agents=2)
    first, second = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(remind_after_s=1, reassign_after_s=3)
        kefu_agents.agent_status_set(user=second, status="away")
        visitor, _ = make_visitor(desk)
        _send(visitor, "hello?")
        session = Session.objects.get(visitor=visitor)
        assert session.agent_id == first.pk
        kefu_agents.agent_status_set(user=second, status="online")

    # then the visitor goes to the other agent, with a line telling them…
    moved = _wait_for(
        lambda: Session.objects.filter(pk=session.pk, agent=second, status="open").first()
    )
    assert moved is not None
    assert moved.reassigned_from_id == first.pk
    # …after the first agent was reminded (a slow beat may do both in one pass: reminders first)
    assert moved.reminded_at is not None
    assert moved.reminded_at <= moved.assigned_at
    with schema_context("acme"):
        texts = [
            message_text(m, language="en")
            for m in Message.objects.filter(
                conversation_id=session.conversation_id, msg_type="system"
            )
        ]
        assert "Sorry for the wait. We are connecting you to another colleague." in texts
        assert AgentState.objects.get(user=first).open_count == 0


def test_an_answered_visitor_is_not_reassigned_and_idle_conversations_close(acme, beat_worker):
    desk = make_desk(acme, agents=2)
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(
            reassign_after_s=2, idle_close_after_min=1, idle_close_message="Bye for now!"
        )
        visitor, _ = make_visitor(desk)
        _send(visitor, "hello")
        session = Session.objects.get(visitor=visitor)
        messages.agent_message_send(
            user=session.agent, conversation_id=session.conversation_id, content="Hi!"
        )
        agent_id = session.agent_id
    with schema_context("acme"):
        # past the re-assignment delay and a minute of silence (moved back in time rather than
        # waited for): one beat pass looks at re-assignment, then at idle conversations
        past = timezone.now() - timedelta(minutes=2)
        Session.objects.filter(pk=session.pk).update(
            last_visitor_at=past, last_agent_at=past, assigned_at=past, created_at=past
        )
    closed = _wait_for(lambda: Session.objects.filter(pk=session.pk, status="closed").first())
    assert closed is not None
    assert closed.closed_by == "system"
    # answered, so it was closed by the same agent rather than re-assigned first
    assert (closed.agent_id, closed.reassigned_from_id) == (agent_id, None)
    with schema_context("acme"):
        assert Message.objects.filter(
            conversation_id=session.conversation_id, content="Bye for now!"
        ).exists()
