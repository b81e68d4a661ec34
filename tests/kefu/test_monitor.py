"""The supervisors' live monitor and read-only transcripts."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.models import Session, Workgroup
from kefu.services import messages
from org.models import User
from tests.conftest import PASSWORD, agent_client, make_desk, make_visitor, unique


def _send(visitor, text):
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
    )


def test_a_supervisor_sees_queues_loads_and_waits_and_reads_any_conversation(acme):
    desk = make_desk(acme, agents=1, cap=1)
    agent = desk.agents[0]
    with schema_context("acme"):
        # the monitor lists the oldest 500 live conversations: earlier tests' leftovers out
        Session.objects.exclude(status=Session.Status.CLOSED).update(
            status=Session.Status.CLOSED, closed_at=timezone.now()
        )
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", display_name="Boss"
        )
        served, _ = make_visitor(desk)
        waiting, _ = make_visitor(desk)
        _send(served, "I need help")
        _send(waiting, "anyone?")
        Session.objects.filter(visitor=waiting).update(
            queued_at=timezone.now() - timedelta(seconds=95)
        )
        session = Session.objects.get(visitor=served)
        messages.agent_message_send(
            user=agent,
            conversation_id=session.conversation_id,
            content="VIP, be nice",
            internal=True,
        )
    data = agent_client(boss).get("/api/v1/kefu/monitor").json()
    wg = next(w for w in data["workgroups"] if w["id"] == desk.workgroup.pk)
    assert (wg["queue_length"], wg["in_progress"], wg["with_robot"]) == (1, 1, 0)
    assert 95 <= wg["longest_wait_s"] < 120
    assert wg["agents"] == [
        {
            "id": agent.pk,
            "name": agent.name,
            "status": "online",
            "open_count": 1,
            "max_concurrent": 1,
        }
    ]
    mine = {c["visitor"]: c for c in data["conversations"] if c["workgroup"] == desk.workgroup.name}
    assert mine[served.name]["agent"] == agent.name
    assert mine[served.name]["waiting_s"] is not None  # the visitor's message is unanswered
    assert mine[waiting.name]["status"] == "queued"
    assert 95 <= mine[waiting.name]["waiting_s"] < 120

    # the supervisor reads the conversation, internal note included, without joining it
    page = agent_client(boss).get(f"/inbox/monitor/conversations/{session.conversation_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "I need help" in html
    assert "VIP, be nice" in html
    assert f"{agent.name} is now serving you." in html  # automatic lines in the reader's language
    with schema_context("acme"):
        from im.models import Participant

        assert not Participant.objects.filter(
            conversation_id=session.conversation_id, member_key=boss.member_key
        ).exists()
    assert agent_client(boss).get("/inbox/monitor/").status_code == 200
    assert agent_client(boss).get("/inbox/monitor/conversations/999999999/").status_code == 404


def test_agents_are_kept_out_unless_they_lead_a_workgroup(acme):
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    client = agent_client(agent)
    r = client.get("/api/v1/kefu/monitor")
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert client.get("/inbox/monitor/").status_code == 403
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(lead=agent)
    assert client.get("/api/v1/kefu/monitor").status_code == 200
    # and the inbox links the monitor for them
    assert b'id="monitor-link"' in client.get("/inbox/").content
