"""Agents see their workgroups' queues and take a waiting visitor themselves."""

from __future__ import annotations

from django_tenants.utils import schema_context

from kefu.models import AgentState, Session, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import messages
from kefu.services import queue as kefu_queue
from tests.conftest import agent_client, make_agent, make_desk, make_visitor, unique
from tests.threads import in_threads
from weiyu.errors import ServiceError
from weiyu.realtime import capture_events


def _send(visitor, text="hello"):
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
    )


def test_an_agent_sees_the_queue_and_takes_a_visitor(acme):
    # given a workgroup whose agents are all full, and two visitors waiting
    desk = make_desk(acme, agents=1, cap=1)
    with schema_context("acme"):
        _send(make_visitor(desk)[0], "first")  # fills the agent
        early, _ = make_visitor(desk)
        late, _ = make_visitor(desk)
        with capture_events() as events:
            _send(early, "I am waiting for a refund")
        changed = [e for e, g in events if e["type"] == "queue.changed"]
        assert changed[-1] == {
            "type": "queue.changed",
            "workgroup_id": desk.workgroup.pk,
            "length": 1,
        }
        _send(late, "me too")
        helper = make_agent(cap=1)
        desk.workgroup.agents.add(helper)
        AgentState.objects.filter(user=helper).update(status="away")
        kefu_agents.agent_status_set(user=helper, status="online")  # dispatches: takes early
        assert Session.objects.get(visitor=early).agent_id == helper.pk
        AgentState.objects.filter(user=helper).update(max_concurrent=5)
    client = agent_client(helper)
    queue = client.get("/api/v1/kefu/queue").json()["workgroups"]
    mine = next(w for w in queue if w["id"] == desk.workgroup.pk)
    assert [(w["visitor"], w["preview"]) for w in mine["waiting"]] == [(late.name, "me too")]

    # when the helper takes the waiting visitor
    session_id = mine["waiting"][0]["session_id"]
    r = client.post(f"/api/v1/kefu/queue/{session_id}/pick")
    assert r.status_code == 200
    with schema_context("acme"):
        session = Session.objects.get(pk=session_id)
        assert (session.status, session.agent_id) == ("open", helper.pk)
    # and a second try is told someone took it
    again = client.post(f"/api/v1/kefu/queue/{session_id}/pick")
    assert (again.status_code, again.json()["error"]) == (409, "conflict")


def test_picking_is_refused_where_not_allowed(acme):
    desk = make_desk(acme, agents=1, status="away")
    outsider = make_desk(acme, agents=1).agents[0]
    with schema_context("acme"):
        visitor, _ = make_visitor(desk)
        _send(visitor)
        session = Session.objects.get(visitor=visitor)
    me = desk.agents[0]
    # away: go online first (which would assign it anyway, so stay away for the check)
    r = agent_client(me).post(f"/api/v1/kefu/queue/{session.pk}/pick")
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    # not my workgroup
    r = agent_client(outsider).post(f"/api/v1/kefu/queue/{session.pk}/pick")
    assert r.status_code == 404
    # the workgroup assigns for its agents
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(allow_pick=False)
        AgentState.objects.filter(user=me).update(status="online")
    r = agent_client(me).post(f"/api/v1/kefu/queue/{session.pk}/pick")
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")


def test_two_agents_picking_the_same_visitor_at_once_get_it_once(acme):
    desk = make_desk(acme, agents=2, status="away")
    with schema_context("acme"):
        visitor, _ = make_visitor(desk)
        _send(visitor)
        session = Session.objects.get(visitor=visitor)
        AgentState.objects.filter(user__in=desk.agents).update(status="online")

    def pick(user):
        try:
            kefu_queue.queue_pick(user=user, session_id=session.pk)
        except ServiceError as exc:
            return exc.code
        return "taken"

    results = in_threads("acme", pick, desk.agents, threads=2)
    assert sorted(results) == ["conflict", "taken"]
    with schema_context("acme"):
        loads = sorted(
            AgentState.objects.filter(user__in=desk.agents).values_list("open_count", flat=True)
        )
        assert loads == [0, 1]
