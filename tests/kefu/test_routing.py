"""Sessions, round-robin assignment, the queue and closing, through the service layer."""

from __future__ import annotations

from django_tenants.utils import schema_context

from im.models import Message
from im.syslines import message_text
from kefu import senders
from kefu.models import AgentState, Session
from kefu.services import agents as kefu_agents
from kefu.services import messages
from kefu.services import sessions as kefu_sessions
from tests.conftest import make_desk, make_visitor
from weiyu.realtime import capture_events


def _send(visitor, text: str, cid: str):
    return messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=cid
    )


def test_first_message_opens_a_session_assigned_round_robin(acme):
    # given a workgroup with three online agents
    desk = make_desk(acme, agents=3)
    visitors = [make_visitor(desk)[0] for _ in range(4)]
    with schema_context("acme"):
        # when four visitors write in turn
        for n, visitor in enumerate(visitors):
            _send(visitor, f"hello {n}", f"c{n}")
        # then the agents take them in turn, wrapping around
        sessions = [Session.objects.get(visitor=v) for v in visitors]
        ids = sorted(a.pk for a in desk.agents)
        assert [s.agent_id for s in sessions] == [ids[0], ids[1], ids[2], ids[0]]
        assert all(s.status == Session.Status.OPEN for s in sessions)
        assert AgentState.objects.get(user_id=ids[0]).open_count == 2


def test_visitor_queued_when_nobody_is_available_then_assigned_when_agent_comes_online(acme):
    # given a workgroup whose only agent is away
    desk = make_desk(acme, agents=1, status="away")
    first, _ = make_visitor(desk)
    second, _ = make_visitor(desk)
    with schema_context("acme"), capture_events() as events:
        # when two visitors write
        _send(first, "anyone?", "q1")
        _send(second, "hello?", "q2")
        # then both wait, and each is told its position
        positions = {
            tuple(groups): event["position"]
            for event, groups in events
            if event["type"] == "queue.position"
        }
        assert positions[(f"acme.v.{first.pk}",)] == 1
        assert positions[(f"acme.v.{second.pk}",)] == 2
        assert Session.objects.get(visitor=first).status == Session.Status.QUEUED
        # when the agent goes online
        events.clear()
        kefu_agents.agent_status_set(user=desk.agents[0], status="online")
        # then the first in line is assigned and the second moves up
        assert Session.objects.get(visitor=first).agent_id == desk.agents[0].pk
        assert Session.objects.get(visitor=second).agent_id == desk.agents[0].pk  # cap 5: both fit
        assigned = [groups for event, groups in events if event["type"] == "conversation.assigned"]
        assert [f"acme.u.{desk.agents[0].pk}"] in assigned
        assert [f"acme.v.{first.pk}"] in assigned


def test_cap_respected_and_queue_moves_when_a_conversation_closes(acme):
    # given one online agent with a cap of one
    desk = make_desk(acme, agents=1, cap=1)
    agent = desk.agents[0]
    first, _ = make_visitor(desk)
    second, _ = make_visitor(desk)
    with schema_context("acme"):
        _send(first, "one", "a1")
        _send(second, "two", "a2")
        s1 = Session.objects.get(visitor=first)
        assert s1.agent_id == agent.pk
        assert Session.objects.get(visitor=second).status == Session.Status.QUEUED
        # when the agent closes the first conversation
        kefu_sessions.conversation_close_by_member(
            conversation_id=s1.conversation_id, sender=senders.agent_sender(agent)
        )
        # then the second visitor is assigned, and the first conversation shows it ended
        assert Session.objects.get(visitor=second).agent_id == agent.pk
        assert AgentState.objects.get(user=agent).open_count == 1
        last = Message.objects.filter(conversation_id=s1.conversation_id).order_by("-seq").first()
        assert last.msg_type == "system"
        assert message_text(last, language="en") == "The conversation has ended."


def test_visitor_message_after_close_starts_a_new_conversation(acme):
    desk = make_desk(acme, agents=1)
    visitor, _ = make_visitor(desk)
    with schema_context("acme"):
        m1, _ = _send(visitor, "first chat", "n1")
        session = Session.objects.get(conversation_id=m1.conversation_id)
        kefu_sessions.session_close(
            session_id=session.pk, closed_by=senders.visitor_sender(visitor)
        )
        m2, created = _send(visitor, "second chat", "n2")
        assert created
        assert m2.conversation_id != m1.conversation_id
        assert Session.objects.filter(visitor=visitor).count() == 2


def test_resend_with_same_client_msg_id_stores_nothing(acme):
    desk = make_desk(acme, agents=1)
    visitor, _ = make_visitor(desk)
    with schema_context("acme"):
        m1, created1 = _send(visitor, "only once", "dup-1")
        m2, created2 = _send(visitor, "only once", "dup-1")
        assert created1
        assert not created2
        assert m1.pk == m2.pk
        assert (
            Message.objects.filter(conversation_id=m1.conversation_id, content="only once").count()
            == 1
        )


def test_first_agent_reply_sets_first_response_time(acme):
    desk = make_desk(acme, agents=1)
    visitor, _ = make_visitor(desk)
    with schema_context("acme"):
        m1, _ = _send(visitor, "hi", "f1")
        session = Session.objects.get(conversation_id=m1.conversation_id)
        assert session.first_response_at is None
        messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=m1.conversation_id,
            content="hello!",
            client_msg_id="r1",
        )
        session.refresh_from_db()
        assert session.first_response_at is not None
        assert session.first_response_at >= session.assigned_at


def test_a_busy_agent_keeps_their_chats_but_gets_no_new_ones(acme):
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    first, _ = make_visitor(desk)
    second, _ = make_visitor(desk)
    with schema_context("acme"):
        _send(first, "hi", "b1")
        assert Session.objects.get(visitor=first).agent_id == agent.pk
        state = kefu_agents.agent_status_set(user=agent, status="busy")
        assert state.status == "busy"
        _send(second, "hello", "b2")
        assert Session.objects.get(visitor=second).status == Session.Status.QUEUED
        assert Session.objects.get(visitor=first).status == Session.Status.OPEN
        kefu_agents.agent_status_set(user=agent, status="online")
        assert Session.objects.get(visitor=second).agent_id == agent.pk
