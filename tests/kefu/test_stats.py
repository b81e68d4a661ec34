"""Statistics (KF-14): the Celery roll-up agrees with the raw sessions, messages and transfers."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Conversation, Message
from im.services import conversations as im_conversations
from kefu import stats
from kefu.models import DailyStat, Session, Transfer, Visitor
from kefu.tasks import stats_rollup_task
from org.models import User
from tests.conftest import PASSWORD, agent_client, make_desk, unique
from tests.waits import wait_until

DAY = timezone.localdate() - dt.timedelta(days=3)


def _at(hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hh, mm, ss), tzinfo=ZoneInfo(settings.TIME_ZONE))


def _session(desk, *, agent, created, lines, **fields) -> Session:
    """A session with its messages at given times: ``lines`` = [(sender, "hh:mm:ss", text)]."""
    visitor = Visitor.objects.create(channel=desk.channel, name=unique("V"))
    conversation = im_conversations.conversation_create(kind=Conversation.Kind.VISITOR)
    for seq, (who, at, text) in enumerate(lines, start=1):
        message = Message.objects.create(
            conversation=conversation,
            seq=seq,
            sender_key=f"u:{agent.pk}" if who == "agent" else f"v:{visitor.pk}",
            sender_type=who,
            content=text,
        )
        # created_at is set on insert; the story needs its own clock
        Message.objects.filter(pk=message.pk).update(created_at=_at(*map(int, at.split(":"))))
    session = Session.objects.create(
        conversation=conversation,
        visitor=visitor,
        channel=desk.channel,
        workgroup=desk.workgroup,
        agent=agent if fields.pop("assigned", True) else None,
        **fields,
    )
    Session.objects.filter(pk=session.pk).update(created_at=created)
    return session


def _day_figures(desk):
    # conversation 1: answered twice, closed, rated 4
    a = desk.agents[0]
    first = _session(
        desk, agent=a, created=_at(10, 0), status="closed",
        queued_at=_at(10, 0), assigned_at=_at(10, 0, 5), first_response_at=_at(10, 0, 35),
        closed_at=_at(10, 5), csat_score=4,
        lines=[("visitor", "10:00:00", "hi"), ("agent", "10:00:35", "hello"),
               ("visitor", "10:01:00", "q1"), ("visitor", "10:01:10", "q2"),
               ("agent", "10:01:40", "answer")],
    )  # fmt: skip
    # conversation 2: the visitor gave up in the queue
    _session(
        desk, agent=None, assigned=False, created=_at(11, 0), status="closed",
        queued_at=_at(11, 0), closed_at=_at(11, 2),
        lines=[("visitor", "11:00:00", "anyone?")],
    )  # fmt: skip
    # conversation 3: still open, rated nothing, answered once after 20 s, 4 s in the queue
    _session(
        desk, agent=a, created=_at(12, 0), status="open",
        queued_at=_at(12, 0), assigned_at=_at(12, 0, 4), first_response_at=_at(12, 0, 24),
        lines=[("visitor", "12:00:00", "price?"), ("agent", "12:00:24", "99")],
    )  # fmt: skip
    # a transfer started by the agent that day
    transfer = Transfer.objects.create(session=first, from_agent=a, to_workgroup=desk.workgroup)
    Transfer.objects.filter(pk=transfer.pk).update(created_at=_at(10, 3))
    # and one more session the next day, which must not count
    _session(
        desk, agent=a, created=_at(10, 0) + dt.timedelta(days=1), status="open",
        lines=[("visitor", "10:00:00", "tomorrow")],
    )  # fmt: skip


def test_the_rollup_agrees_with_the_raw_data(acme, robot_worker):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        _day_figures(desk)
    # the roll-up runs in a real worker
    stats_rollup_task.delay("acme", DAY.isoformat())

    def rolled_up() -> bool:
        with schema_context("acme"):
            return DailyStat.objects.filter(day=DAY, workgroup=desk.workgroup).exists()

    wait_until(rolled_up, interval=0.2, what="the day's roll-up")
    with schema_context("acme"):
        report = stats.report(start=DAY, end=DAY, workgroup_id=desk.workgroup.pk)
    total = report["total"]
    assert total == {
        "conversations": 3,
        "visitor_messages": 5,
        "agent_messages": 3,
        "first_response_avg_s": 25.0,  # (30 + 20) / 2
        "response_avg_s": 33.0,  # (35 + 40 + 24) / 3
        "resolution_avg_s": 300.0,  # only the closed, served one
        "queue_wait_avg_s": 4.5,  # (5 + 4) / 2
        "abandoned": 1,
        "transfers": 1,
        "csat_count": 1,
        "csat_avg": 4.0,
        "csat_distribution": [0, 0, 0, 1, 0],
    }
    by_agent = {row["id"]: row for row in report["agents"]}
    assert by_agent[desk.agents[0].pk]["conversations"] == 2
    assert by_agent[None]["abandoned"] == 1
    assert [d["conversations"] for d in report["daily"]] == [3]


def test_the_api_serves_the_report_and_csv_to_supervisors_only(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        _day_figures(desk)
        stats.rollup(DAY)
        boss = User.objects.create_user(username=unique("boss"), password=PASSWORD, role="admin")
    client = agent_client

    query = f"start={DAY}&end={DAY}&workgroup={desk.workgroup.pk}"
    data = client(boss).get(f"/api/v1/kefu/stats?{query}").json()
    assert data["total"]["conversations"] == 3
    exported = client(boss).get(f"/api/v1/kefu/stats?{query}&export=csv&part=agents")
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    header, named = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[:3] == ["name", "conversations", "visitor_messages"]
    agent_row = named[desk.agents[0].name]
    assert (agent_row["conversations"], agent_row["csat_4"], agent_row["transfers"]) == (
        "2",
        "1",
        "1",
    )
    assert client(boss).get("/api/v1/kefu/stats?start=2026-13-01").status_code == 400
    assert client(desk.agents[0]).get("/api/v1/kefu/stats").status_code == 403
    # the admin page draws it
    with schema_context("acme"):
        boss.is_staff = boss.is_superuser = True
        boss.save()
    page = client(boss).get(f"/admin/kefu/session/reports/?{query}")
    assert page.status_code == 200
    assert b"chart-csat" in page.content


def test_the_command_recomputes_a_range_and_refuses_bad_input(acme):
    from io import StringIO

    import pytest
    from django.core.management import CommandError, call_command

    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        _day_figures(desk)
        DailyStat.objects.filter(day=DAY).delete()
    out = StringIO()
    call_command("kefu_stats", "--tenant", "acme", "--from", str(DAY), "--to", str(DAY), stdout=out)
    assert out.getvalue().startswith(f"acme: {DAY} to {DAY},")
    with schema_context("acme"):
        assert DailyStat.objects.filter(day=DAY, workgroup=desk.workgroup).exists()
    for args in (["--tenant", "nope"], ["--tenant", "acme", "--from", "yesterday"],
                 ["--tenant", "acme", "--from", "2026-02-01", "--to", "2026-01-01"]):  # fmt: skip
        with pytest.raises(CommandError):
            call_command("kefu_stats", *args, stdout=StringIO())


def test_the_admin_page_reads_the_figures_and_recomputes_them_on_post_only(acme):
    # given a day of activity that was never rolled up, and an admin
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        _day_figures(desk)
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True
        )
        boss.is_superuser = True
        boss.save()
    query = f"start={DAY}&end={DAY}&workgroup={desk.workgroup.pk}"
    url = "/admin/kefu/session/reports/"

    # when the page is opened, even with the old "refresh" parameter
    page = agent_client(boss).get(f"{url}?{query}&refresh=1")

    # then nothing was computed: a GET only reads, and says the days are not computed yet
    assert page.status_code == 200
    assert b'id="recompute"' in page.content
    assert page.context["computed_at"] is None
    assert page.context["report"]["total"]["conversations"] == 0
    with schema_context("acme"):
        assert not DailyStat.objects.filter(day=DAY, workgroup=desk.workgroup).exists()

    # when the admin presses "recompute" (a POST)
    done = agent_client(boss).post(
        url, {"start": str(DAY), "end": str(DAY), "workgroup": desk.workgroup.pk}
    )

    # then the day is rolled up and the page shows it, with the time it was computed
    assert done.status_code == 302
    assert done["Location"].startswith(url)
    shown = agent_client(boss).get(done["Location"])
    assert shown.context["report"]["total"]["conversations"] == 3
    assert shown.context["computed_at"] is not None
    # and a bad range is refused without computing anything
    refused = agent_client(boss).post(url, {"start": str(DAY), "end": "2020-01-01"})
    assert refused.status_code == 302
