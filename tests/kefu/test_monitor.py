"""The supervisors' live monitor and read-only transcripts."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Conversation
from kefu.models import Session, Visitor, Workgroup
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
        # the monitor's first page holds the oldest 100 live conversations: earlier tests' leftovers out
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


def _live_in_bulk(desk, count: int, *, agent=None) -> list[int]:
    """``count`` live customer conversations of the desk's workgroup, made in a few statements:
    every third queued (since 2 minutes), the others open with ``agent``. Returns their ids,
    oldest first."""
    with schema_context("acme"):
        visitors = Visitor.objects.bulk_create(
            Visitor(channel=desk.channel, name=unique("v")) for _ in range(count)
        )
        conversations = Conversation.objects.bulk_create(
            Conversation(kind=Conversation.Kind.VISITOR) for _ in range(count)
        )
        now = timezone.now()
        sessions = Session.objects.bulk_create(
            Session(
                conversation=conversation,
                visitor=visitor,
                channel=desk.channel,
                workgroup=desk.workgroup,
                agent=None if n % 3 == 0 else agent,
                status=Session.Status.QUEUED if n % 3 == 0 else Session.Status.OPEN,
                queued_at=now - timedelta(minutes=2) if n % 3 == 0 else None,
            )
            for n, (visitor, conversation) in enumerate(zip(visitors, conversations, strict=True))
        )
        return [s.conversation_id for s in sessions]


def test_a_busy_tenant_pages_and_filters_all_its_live_conversations(acme):
    # given 620 live conversations in one workgroup and 3 in another
    big = make_desk(acme, agents=1)
    small = make_desk(acme, agents=1)
    with schema_context("acme"):
        Session.objects.exclude(status=Session.Status.CLOSED).update(
            status=Session.Status.CLOSED, closed_at=timezone.now()
        )
        boss = User.objects.create_user(username=unique("boss"), password=PASSWORD, role="admin")
        lead = User.objects.create_user(username=unique("lead"), password=PASSWORD, role="agent")
        Workgroup.objects.filter(pk=small.workgroup.pk).update(lead=lead)
    many = _live_in_bulk(big, 620, agent=big.agents[0])
    few = _live_in_bulk(small, 3, agent=small.agents[0])
    admin = agent_client(boss)

    def get(client, **params):
        answer = client.get("/api/v1/kefu/monitor", params)
        assert answer.status_code == 200, answer.content
        return answer.json()

    # when an administrator reads it: the first page, with the total
    first = get(admin)
    assert (first["total"], first["offset"], first["limit"]) == (623, 0, 100)
    assert [c["conversation_id"] for c in first["conversations"]] == many[:100]
    # then paging through every live conversation shows each once, the newest included
    seen = []
    for offset in range(0, 623, 500):
        seen += [
            c["conversation_id"] for c in get(admin, offset=offset, limit=500)["conversations"]
        ]
    assert seen == many + few
    newest = get(admin, order="newest", limit=5)["conversations"]
    assert [c["conversation_id"] for c in newest] == (many + few)[::-1][:5]

    # and the filters narrow it, each with its own total
    assert get(admin, workgroup=small.workgroup.pk)["total"] == 3
    queued = get(admin, status="queued", workgroup=big.workgroup.pk, limit=500)
    assert queued["total"] == len(many[::3])
    assert {c["status"] for c in queued["conversations"]} == {"queued"}
    assert get(admin, agent="none")["total"] == len(many[::3]) + len(few[::3])
    assert get(admin, agent=small.agents[0].pk)["total"] == 2
    assert get(admin, waiting=60)["total"] == len(many[::3]) + len(few[::3])
    assert get(admin, waiting=600)["total"] == 0
    longest = get(admin, order="waiting", limit=1)["conversations"][0]
    assert longest["status"] == "queued"

    # and a supervisor of the small workgroup sees only its conversations, whatever the filter
    mine = get(agent_client(lead))
    assert mine["total"] == 3
    assert [c["conversation_id"] for c in mine["conversations"]] == few
    assert get(agent_client(lead), workgroup=big.workgroup.pk)["total"] == 0

    # and bad parameters are refused, naming them
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"workgroup": "x"}, "workgroup"),
        ({"agent": "someone"}, "agent"),
        ({"status": "closed"}, "status"),
        ({"order": "random"}, "order"),
        ({"waiting": "1e9"}, "waiting"),
    ]:
        answer = admin.get("/api/v1/kefu/monitor", params)
        assert answer.status_code == 400, params
        assert answer.json()["field"] == field
    nobody = agent_client(big.agents[0]).get("/api/v1/kefu/monitor", {"limit": 0})
    assert nobody.status_code == 403
