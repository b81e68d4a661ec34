"""Routing under real concurrency: many visitors, few agents, many threads (DESIGN.md §4).

Every thread enters the tenant itself and closes its own database connection, as a worker would.
Events are captured (weiyu.realtime.capture_events) so what visitors are told can be checked.
Round robin assigns under the workgroup's lock only; the other strategies serve an arrival
directly when nobody waits (kefu.services.routing.session_claim), so the tests run both.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context

from im.models import Message, Participant
from kefu import senders
from kefu.models import AgentState, Session, Visitor, Workgroup
from kefu.services import events as kefu_events
from kefu.services import messages, routing
from kefu.services import sessions as kefu_sessions
from org.models import User
from tests.conftest import Desk, make_desk, make_visitor
from tests.threads import in_threads
from tests.waits import WAIT_S, wait_until
from weiyu.realtime import capture_events


def _first_message(visitor: Visitor) -> Message:
    message, created = messages.visitor_message_send(
        visitor=visitor,
        conversation_id=None,
        content=f"hello from {visitor.name}",
        client_msg_id=f"first-{visitor.pk}",
    )
    assert created
    return message


def _close_as_agent(session: Session) -> None:
    agent = User.objects.get(pk=session.agent_id)
    kefu_sessions.conversation_close_by_member(
        conversation_id=session.conversation_id, sender=senders.agent_sender(agent)
    )


def _sessions(*desks: Desk) -> list[Session]:
    return list(
        Session.objects.filter(workgroup__in=[d.workgroup for d in desks]).order_by(
            "queued_at", "id"
        )
    )


def _assert_loads_consistent(agents: Sequence[User]) -> None:
    """Each agent's recorded load equals what is really open, within the cap, one agent per chat."""
    for agent in agents:
        open_sessions = Session.objects.filter(agent=agent, status=Session.Status.OPEN)
        state = AgentState.objects.get(user=agent)
        assert state.open_count == open_sessions.count(), agent.username
        assert state.open_count <= state.max_concurrent, agent.username
        # the agent is in the conversation of each of them, and in no other open conversation
        live_memberships = Participant.objects.filter(
            member_key=agent.member_key, left_at__isnull=True, conversation__closed_at__isnull=True
        )
        assert sorted(live_memberships.values_list("conversation_id", flat=True)) == sorted(
            open_sessions.values_list("conversation_id", flat=True)
        )


def _assert_one_agent_per_conversation(sessions: Sequence[Session]) -> None:
    for session in sessions:
        agents_in = list(
            Participant.objects.filter(
                conversation_id=session.conversation_id, role=Participant.Role.AGENT
            ).values_list("user_id", flat=True)
        )
        if session.status == Session.Status.QUEUED:
            assert agents_in == [], session.pk
            assert session.agent_id is None
        else:
            assert agents_in == [session.agent_id], session.pk


#: the workgroup lock only, and the direct claim with the lock behind it
STRATEGIES = pytest.mark.parametrize("strategy", ["round_robin", "least_busy"])


def _desk(tenant, strategy: str, **kwargs) -> Desk:
    desk = make_desk(tenant, **kwargs)
    with schema_context(tenant.schema_name):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(strategy=strategy)
    return desk


def _arrive(desk: Desk, count: int, threads: int) -> list[Visitor]:
    visitors = [make_visitor(desk)[0] for _ in range(count)]
    in_threads(desk.tenant.schema_name, _first_message, visitors, threads)
    return visitors


@STRATEGIES
def test_forty_concurrent_first_messages_fill_six_slots_and_queue_the_rest(acme, strategy):
    # given three online agents with a cap of two each in one workgroup, and forty visitors
    desk = _desk(acme, strategy, agents=3, cap=2)

    # when all forty send their first message at the same time from twelve threads
    with capture_events():
        visitors = _arrive(desk, 40, threads=12)

    with schema_context("acme"):
        # then every visitor has exactly one session whose conversation starts with their message
        sessions = _sessions(desk)
        assert sorted(s.visitor_id for s in sessions) == sorted(v.pk for v in visitors)
        for session in sessions:
            first = Message.objects.get(conversation_id=session.conversation_id, seq=1)
            assert first.client_msg_id == f"first-{session.visitor_id}"
        # six are being served (two per agent) and thirty-four wait
        status = Counter(s.status for s in sessions)
        assert status == {Session.Status.OPEN: 6, Session.Status.QUEUED: 34}
        per_agent = Counter(s.agent_id for s in sessions if s.status == Session.Status.OPEN)
        assert per_agent == {agent.pk: 2 for agent in desk.agents}
        _assert_one_agent_per_conversation(sessions)
        _assert_loads_consistent(desk.agents)

        # and the waiting visitors are told their places in the order they were queued
        with capture_events() as events:
            kefu_events.queue_positions_publish(workgroup_id=desk.workgroup.pk)
        told = {
            groups[0]: event["position"]
            for event, groups in events
            if event["type"] == "queue.position"
        }
        queued = [s for s in sessions if s.status == Session.Status.QUEUED]
        assert told == {f"acme.v.{s.visitor_id}": n for n, s in enumerate(queued, start=1)}


@STRATEGIES
def test_concurrent_closes_drain_the_queue_first_come_first_served(acme, strategy):
    # given three agents with a cap of two, six visitors served and thirty-four waiting
    desk = _desk(acme, strategy, agents=3, cap=2)
    with capture_events():
        _arrive(desk, 40, threads=16)
        with schema_context("acme"):
            waiting = [s.pk for s in _sessions(desk) if s.status == Session.Status.QUEUED]
        assert len(waiting) == 34

        # when the agents close all their open conversations at once, round after round
        rounds = 0
        while True:
            with schema_context("acme"):
                open_now = list(Session.objects.filter(workgroup=desk.workgroup, status="open"))
                queued_now = Session.objects.filter(workgroup=desk.workgroup, status="queued")
                # then no slot stays free while someone waits, and no cap is exceeded
                assert len(open_now) == min(6, len(open_now) + queued_now.count())
                assert len(open_now) == 6 or not queued_now.exists()
                _assert_one_agent_per_conversation(_sessions(desk))
                _assert_loads_consistent(desk.agents)
            if not open_now:
                break
            in_threads("acme", _close_as_agent, open_now, threads=len(open_now))
            rounds += 1

    with schema_context("acme"):
        # then everyone was served, and those who waited were served in the order they came
        sessions = _sessions(desk)
        assert rounds == 7  # 6 + 6 + 6 + 6 + 6 + 6 + 4 (34 waiting after the first 6)
        assert all(s.status == Session.Status.CLOSED for s in sessions)
        by_id = {s.pk: s for s in sessions}
        served_order = sorted(waiting, key=lambda pk: (by_id[pk].assigned_at, pk))
        assert served_order == waiting
        assert all(by_id[pk].agent_id is not None for pk in waiting)
        assert AgentState.objects.filter(user__in=desk.agents, open_count=0).count() == 3


@STRATEGIES
def test_agent_in_two_workgroups_with_cap_one_never_gets_two_chats(acme, strategy):
    # given an online agent with a cap of one serving two workgroups
    sales = _desk(acme, strategy, agents=1, cap=1)
    support = _desk(acme, strategy, agents=0)
    agent = sales.agents[0]
    with schema_context("acme"):
        support.workgroup.agents.add(agent)
    visitors = [make_visitor(sales)[0] for _ in range(8)] + [
        make_visitor(support)[0] for _ in range(8)
    ]

    # when sixteen visitors write at once, half to each workgroup
    with capture_events():
        in_threads("acme", _first_message, visitors, threads=16)

    with schema_context("acme"):
        # then the agent has exactly one chat, and fifteen visitors wait
        sessions = _sessions(sales, support)
        assert Counter(s.status for s in sessions) == {
            Session.Status.OPEN: 1,
            Session.Status.QUEUED: 15,
        }
        _assert_one_agent_per_conversation(sessions)
        _assert_loads_consistent([agent])

        # when that chat is closed, the agent takes exactly one more (and still only one)
        open_session = next(s for s in sessions if s.status == Session.Status.OPEN)
    with capture_events():
        in_threads("acme", _close_as_agent, [open_session], threads=1)
    with schema_context("acme"):
        sessions = _sessions(sales, support)
        assert Counter(s.status for s in sessions) == {
            Session.Status.CLOSED: 1,
            Session.Status.OPEN: 1,
            Session.Status.QUEUED: 14,
        }
        _assert_loads_consistent([agent])


def test_agent_freed_in_one_workgroup_serves_a_visitor_waiting_in_the_other(acme):
    # given an agent with a cap of one in two workgroups, busy with a chat from the first
    sales = make_desk(acme, agents=1, cap=1)
    support = make_desk(acme, agents=0)
    agent = sales.agents[0]
    with schema_context("acme"):
        support.workgroup.agents.add(agent)
    buyer, _ = make_visitor(sales)
    helpless, _ = make_visitor(support)
    with schema_context("acme"), capture_events():
        _first_message(buyer)
        _first_message(helpless)
        assert Session.objects.get(visitor=buyer).status == Session.Status.OPEN
        assert Session.objects.get(visitor=helpless).status == Session.Status.QUEUED

        # when the agent ends the first chat
        _close_as_agent(Session.objects.get(visitor=buyer))

        # then the visitor waiting in the other workgroup is served at once
        waiting = Session.objects.get(visitor=helpless)
        assert waiting.status == Session.Status.OPEN
        assert waiting.agent_id == agent.pk


@STRATEGIES
def test_newcomer_does_not_overtake_a_visitor_already_waiting(acme, strategy):
    # given an agent with a cap of one, serving one visitor while a second waits
    desk = _desk(acme, strategy, agents=1, cap=1)
    served, _ = make_visitor(desk)
    waiting, _ = make_visitor(desk)
    newcomer, _ = make_visitor(desk)
    with schema_context("acme"), capture_events():
        _first_message(served)
        _first_message(waiting)
        assert Session.objects.get(visitor=waiting).status == Session.Status.QUEUED
        # and the administrator raises the agent's cap in the back office (no dispatch follows)
        AgentState.objects.filter(user=desk.agents[0]).update(max_concurrent=2)

        # when a new visitor writes
        _first_message(newcomer)

        # then the free slot goes to the visitor who was waiting, and the newcomer waits
        assert Session.objects.get(visitor=waiting).status == Session.Status.OPEN
        assert Session.objects.get(visitor=newcomer).status == Session.Status.QUEUED


def test_three_hundred_visitors_at_once_least_busy_never_double_assigned(acme):
    # given twenty agents (cap five: a hundred slots) on the least-busy strategy
    desk = make_desk(acme, agents=20, cap=5)
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(strategy="least_busy")

    # when three hundred visitors send their first message at once from twelve threads (the
    # process keeps one connection, the pool holds sixteen)
    with capture_events():
        visitors = _arrive(desk, 300, threads=12)

    with schema_context("acme"):
        sessions = _sessions(desk)
        assert sorted(s.visitor_id for s in sessions) == sorted(v.pk for v in visitors)
        # then the hundred slots are filled exactly, five each, and two hundred wait
        status = Counter(s.status for s in sessions)
        assert status == {Session.Status.OPEN: 100, Session.Status.QUEUED: 200}
        per_agent = Counter(s.agent_id for s in sessions if s.status == Session.Status.OPEN)
        assert per_agent == {agent.pk: 5 for agent in desk.agents}
        _assert_one_agent_per_conversation(sessions)
        _assert_loads_consistent(desk.agents)
        # and when slots free up, the waiting are served oldest first
        queued = sorted(
            (s for s in sessions if s.status == Session.Status.QUEUED),
            key=lambda s: (s.queued_at, s.pk),
        )
        first_open = next(s for s in sessions if s.status == Session.Status.OPEN)
        kefu_sessions.session_close(
            session_id=first_open.pk, closed_by=senders.agent_sender(first_open.agent)
        )
        assert Session.objects.get(pk=queued[0].pk).status == Session.Status.OPEN
        assert Session.objects.get(pk=queued[1].pk).status == Session.Status.QUEUED


@STRATEGIES
def test_newcomers_arriving_while_slots_free_up_never_overtake_those_waiting(acme, strategy):
    # given an agent with a cap of one, serving one visitor while ten wait
    desk = _desk(acme, strategy, agents=1, cap=1)
    agent = desk.agents[0]
    earlier = [make_visitor(desk)[0] for _ in range(11)]
    newcomers = [make_visitor(desk)[0] for _ in range(20)]
    with capture_events():
        with schema_context("acme"):
            for visitor in earlier:
                _first_message(visitor)
            assert Session.objects.filter(workgroup=desk.workgroup, status="queued").count() == 10

        # when twenty newcomers write from eight threads while, among them, the agent's cap is
        # raised to sixteen (five slots more than the eleven earlier visitors need) and the
        # queues dispatched
        def act(item: Visitor | None) -> None:
            if item is None:
                AgentState.objects.filter(user=agent).update(max_concurrent=16)
                routing.agent_workgroups_dispatch(user_id=agent.pk)
            else:
                _first_message(item)

        in_threads("acme", act, [*newcomers[:6], None, *newcomers[6:]], threads=8)

    with schema_context("acme"):
        # then all ten who were waiting are served; the five slots left went to newcomers, and
        # the other fifteen newcomers wait
        sessions = {s.visitor_id: s for s in _sessions(desk)}
        assert all(sessions[v.pk].status == Session.Status.OPEN for v in earlier)
        status = Counter(sessions[v.pk].status for v in newcomers)
        assert status == {Session.Status.OPEN: 5, Session.Status.QUEUED: 15}
        _assert_one_agent_per_conversation(list(sessions.values()))
        _assert_loads_consistent([agent])


def test_an_agent_another_transaction_holds_is_not_waited_for_and_the_visitor_still_served(acme):
    # given a least-busy workgroup whose one free agent's row another transaction holds
    desk = _desk(acme, "least_busy", agents=1, cap=2)
    agent = desk.agents[0]
    visitor, _ = make_visitor(desk)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with schema_context("acme"), transaction.atomic():
                AgentState.objects.select_for_update().get(user=agent)
                held.set()
                release.wait(WAIT_S)
        finally:
            connection.close()

    def write() -> None:
        try:
            with schema_context("acme"), capture_events():
                _first_message(visitor)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(WAIT_S)

    # when the visitor writes: the claim on arrival passes the held agent over
    writer = threading.Thread(target=write)
    writer.start()
    with schema_context("acme"):
        # then their session and message are committed as waiting, and the queue's dispatch
        # waits for the agent's row
        wait_until(
            lambda: Session.objects.filter(visitor=visitor, status="queued").exists(),
            what="the session committed as queued",
        )
        release.set()
        holder.join(WAIT_S)
        writer.join(WAIT_S)
        assert not writer.is_alive()
        # and once the agent is free again the visitor is served by them, nothing lost
        session = Session.objects.get(visitor=visitor)
        assert session.status == Session.Status.OPEN
        assert session.agent_id == agent.pk
        first = Message.objects.get(conversation_id=session.conversation_id, seq=1)
        assert first.client_msg_id == f"first-{visitor.pk}"
        _assert_loads_consistent([agent])
