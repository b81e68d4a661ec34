"""Tickets through the service layer: numbering, the status machine, SLA clocks (start, pause,
meet, reopen, retarget, business hours), comments and who sees them, merge, split, notifications."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.services.visitors import visitor_start
from tests.tickets.conftest import Desk, make_policy, office_hours
from tickets import selectors
from tickets.models import Notification, SlaClock, Ticket
from tickets.services import comments as ticket_comments
from tickets.services import tickets as ticket_services
from tickets.services.sla import sla_scan
from weiyu.errors import ServiceError

S = Ticket.Status


def _new(desk: Desk, **kw) -> Ticket:
    kw.setdefault("subject", "Printer on fire")
    kw.setdefault("body", "It started this morning.")
    kw.setdefault("source", Ticket.Source.INBOX)
    kw.setdefault("creator", desk.agent)
    kw.setdefault("workgroup_id", desk.workgroup.pk)
    kw.setdefault("requester_user_id", desk.staff.pk)
    return ticket_services.ticket_create(**kw)


def _clock(ticket: Ticket, kind: str) -> SlaClock:
    return SlaClock.objects.filter(ticket=ticket, kind=kind).latest("pk")


def _at(when: dt.datetime):
    """Run service code as if it were ``when`` (the SLA arithmetic reads timezone.now())."""
    return mock.patch("django.utils.timezone.now", return_value=when)


def test_tickets_are_numbered_and_start_their_sla_clocks(desk):
    with schema_context(desk.tenant.schema_name):
        first = _new(desk)
        second = _new(desk, priority="urgent")
        assert second.number == first.number + 1
        assert first.status == S.NEW
        assert first.sla_policy == desk.policy
        response = _clock(second, SlaClock.Kind.FIRST_RESPONSE)
        assert response.target_s == 600
        assert response.due_at == response.started_at + dt.timedelta(seconds=600)
        assert response.warn_at == response.started_at + dt.timedelta(seconds=450)  # 75 %
        assert _clock(second, SlaClock.Kind.RESOLUTION).target_s == 3600
        # a priority without a first-response target starts only resolution
        low = _new(desk, priority="low")
        assert [c.kind for c in low.clocks.all()] == [SlaClock.Kind.RESOLUTION]


def test_bad_input_is_refused_and_nothing_is_written(desk):
    with schema_context(desk.tenant.schema_name):
        before = Ticket.objects.count()
        for kw, field in [
            ({"subject": "  "}, "subject"),
            ({"priority": "whenever"}, "priority"),
            ({"assignee_id": desk.staff.pk}, "assignee_id"),
            ({"tags": "x"}, "tags"),
            ({"due_at": "tomorrow"}, "due_at"),
            ({"workgroup_id": 10**9}, "workgroup_id"),
        ]:
            with pytest.raises(ServiceError) as err:
                _new(desk, **kw)
            assert err.value.code == "invalid"
            assert err.value.field == field
        assert Ticket.objects.count() == before


def test_the_status_machine(desk):
    with schema_context(desk.tenant.schema_name):
        ticket = _new(desk)
        for status in (S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED, S.OPEN, S.SOLVED, S.CLOSED):
            ticket = ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": status}
            )
            assert ticket.status == status
        with pytest.raises(ServiceError) as err:
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": "open"}
            )
        assert err.value.code == "conflict"
        other = _new(desk)
        with pytest.raises(ServiceError) as err:
            ticket_services.ticket_update(
                ticket_id=other.pk, actor=desk.agent, changes={"status": "closed"}
            )
        assert err.value.code == "conflict"
        assert err.value.field == "status"
        with pytest.raises(ServiceError) as err:
            ticket_services.ticket_update(
                ticket_id=other.pk, actor=desk.staff, changes={"status": "open"}
            )
        assert err.value.code == "forbidden"


def test_a_staff_reply_meets_first_response_and_opens_the_ticket(desk):
    with schema_context(desk.tenant.schema_name):
        ticket = _new(desk)
        ticket_comments.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="internal", public=False
        )
        assert _clock(ticket, SlaClock.Kind.FIRST_RESPONSE).met_at is None  # notes do not count
        ticket_comments.comment_add(ticket_id=ticket.pk, user=desk.agent, body="On my way.")
        ticket.refresh_from_db()
        assert ticket.status == S.OPEN
        assert ticket.first_responded_at is not None
        clock = _clock(ticket, SlaClock.Kind.FIRST_RESPONSE)
        assert clock.met_at is not None
        assert clock.breached_at is None
        assert selectors.clock_state(clock, timezone.now()) == "met"


def test_pending_pauses_every_clock_and_open_resumes_with_what_was_counted(desk):
    with schema_context(desk.tenant.schema_name):
        t0 = timezone.now()
        with _at(t0):
            ticket = _new(desk)
        with _at(t0 + dt.timedelta(minutes=20)):
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": "pending"}
            )
        clock = _clock(ticket, SlaClock.Kind.FIRST_RESPONSE)
        assert clock.paused
        assert clock.due_at is None
        assert clock.elapsed_s == pytest.approx(20 * 60)
        # three days later the requester's clock still has its 40 minutes left
        later = t0 + dt.timedelta(days=3)
        with _at(later):
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": "open"}
            )
        clock.refresh_from_db()
        assert clock.due_at == later + dt.timedelta(minutes=40)
        assert selectors.clock_state(clock, later) == "ok"  # 20 of 60 min counted: not yet 75 %
        # the warning instant (45 min counted) lies 25 min ahead
        assert clock.warn_at == later + dt.timedelta(minutes=25)


def test_solve_meets_resolution_and_reopening_runs_it_on(desk):
    with schema_context(desk.tenant.schema_name):
        t0 = timezone.now()
        with _at(t0):
            ticket = _new(desk)
        with _at(t0 + dt.timedelta(hours=1)):
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": "solved"}
            )
        resolution = _clock(ticket, SlaClock.Kind.RESOLUTION)
        assert resolution.met_at is not None
        # the requester writes back: the ticket reopens, resolution runs on from 1 h counted
        visitorless = t0 + dt.timedelta(hours=5)
        with _at(visitorless):
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"status": "open"}
            )
        resolution.refresh_from_db()
        assert resolution.met_at is None
        assert resolution.elapsed_s == pytest.approx(3600)
        assert resolution.due_at == visitorless + dt.timedelta(hours=7)


def test_a_requester_reply_after_an_answer_starts_next_response(desk):
    with schema_context(desk.tenant.schema_name):
        visitor, _token = visitor_start(channel=desk.channel, language="en")
        ticket = ticket_services.ticket_leave_message(
            visitor=visitor, body="Where is my order #123?"
        )
        assert ticket.source == Ticket.Source.WIDGET
        assert ticket.workgroup == desk.workgroup
        assert ticket.subject == "Where is my order #123?"
        ticket_comments.comment_add(ticket_id=ticket.pk, visitor=visitor, body="Hello?")
        assert not SlaClock.objects.filter(ticket=ticket, kind="next_response").exists()
        ticket_comments.comment_add(ticket_id=ticket.pk, user=desk.agent, body="It ships today.")
        ticket_comments.comment_add(ticket_id=ticket.pk, visitor=visitor, body="Which carrier?")
        following = _clock(ticket, SlaClock.Kind.NEXT_RESPONSE)
        assert following.target_s == 1800
        assert following.met_at is None
        ticket_comments.comment_add(ticket_id=ticket.pk, user=desk.agent, body="SF Express.")
        following.refresh_from_db()
        assert following.met_at is not None
        # the visitor sees the public conversation only, with their own lines marked
        ticket_comments.comment_add(ticket_id=ticket.pk, user=desk.agent, body="VIP", public=False)
        detail = selectors.ticket_detail(ticket, include_internal=False)
        assert [c["body"] for c in detail["comments"]] == [
            "Where is my order #123?",
            "Hello?",
            "It ships today.",
            "Which carrier?",
            "SF Express.",
        ]


def test_a_visitor_cannot_write_on_someone_elses_ticket(desk):
    with schema_context(desk.tenant.schema_name):
        owner, _t = visitor_start(channel=desk.channel)
        stranger, _t = visitor_start(channel=desk.channel)
        ticket = ticket_services.ticket_leave_message(visitor=owner, body="My data")
        with pytest.raises(ServiceError) as err:
            ticket_comments.comment_add(ticket_id=ticket.pk, visitor=stranger, body="me too")
        assert err.value.code == "not_found"


def test_business_hours_push_the_due_time_over_the_night(desk):
    with schema_context(desk.tenant.schema_name):
        policy = make_policy(
            workgroup=desk.workgroup, calendar=office_hours(), high=(2 * 3600, None, None)
        )
        desk.policy.workgroups.remove(desk.workgroup)
        # Monday 2026-11-30 17:30 Shanghai: 30 min today, 90 min from 09:00 Tuesday
        monday = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
        with _at(monday):
            ticket = _new(desk, priority="high")
        assert ticket.sla_policy == policy
        clock = _clock(ticket, SlaClock.Kind.FIRST_RESPONSE)
        assert clock.due_at == dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)  # Tue 10:30


def test_raising_the_priority_retargets_open_clocks(desk):
    with schema_context(desk.tenant.schema_name):
        t0 = timezone.now()
        with _at(t0):
            ticket = _new(desk)
        with _at(t0 + dt.timedelta(minutes=5)):
            ticket_services.ticket_update(
                ticket_id=ticket.pk, actor=desk.agent, changes={"priority": "urgent"}
            )
        clock = _clock(ticket, SlaClock.Kind.FIRST_RESPONSE)
        assert clock.target_s == 600
        assert clock.due_at == t0 + dt.timedelta(minutes=10)


def test_merge_moves_the_conversation_and_closes_the_source(desk):
    with schema_context(desk.tenant.schema_name):
        a = _new(desk, subject="Login fails")
        b = _new(desk, subject="Cannot sign in", creator=desk.other)
        target = ticket_services.ticket_merge(source_id=b.pk, target_id=a.pk, actor=desk.agent)
        b.refresh_from_db()
        assert b.status == S.MERGED
        assert b.merged_into == a
        note = target.comments.filter(public=False).latest("pk")
        assert f"#{b.number}" in note.body
        assert "It started this morning." in note.body
        assert desk.other in target.watchers.all()
        assert not SlaClock.objects.filter(ticket=b, met_at__isnull=True, cancelled=False).exists()
        with pytest.raises(ServiceError) as err:
            ticket_services.ticket_merge(source_id=a.pk, target_id=b.pk, actor=desk.agent)
        assert err.value.code == "conflict"


def test_split_makes_a_new_ticket_from_one_comment(desk):
    with schema_context(desk.tenant.schema_name):
        ticket = _new(desk)
        comment = ticket_comments.comment_add(
            ticket_id=ticket.pk, user=desk.agent, body="Also: the fax is broken"
        )
        new = ticket_services.ticket_split(
            comment_id=comment.pk, actor=desk.agent, subject="Fax broken"
        )
        assert new.subject == "Fax broken"
        assert new.number == ticket.number + 1
        assert new.comments.filter(public=True).first().body == "Also: the fax is broken"
        assert ticket.comments.filter(body__contains=f"#{new.number}").exists()


def test_assignment_and_mentions_notify(desk):
    with schema_context(desk.tenant.schema_name):
        ticket = _new(desk, assignee_id=desk.other.pk)
        assert (
            Notification.objects.filter(
                recipient=desk.other, ticket=ticket, kind="assigned"
            ).count()
            == 1
        )
        ticket_comments.comment_add(
            ticket_id=ticket.pk,
            user=desk.agent,
            body="@Lena look",
            public=False,
            mentions=[desk.lead.pk],
        )
        assert Notification.objects.filter(recipient=desk.lead, kind="mention").count() == 1


def test_views_for_agents_and_for_other_staff(desk):
    with schema_context(desk.tenant.schema_name):
        mine = _new(
            desk,
            assignee_id=desk.agent.pk,
            requester_user_id=desk.other.pk,
            subject=f"mine {desk.agent.pk}",
        )
        asked = _new(desk, creator=desk.staff, subject=f"asked {desk.staff.pk}")
        page, _total = selectors.ticket_list(user=desk.agent, view="mine")
        assert mine.pk in [t.pk for t in page]
        page, _total = selectors.ticket_list(user=desk.staff, view="all")
        assert [t.pk for t in page] == [asked.pk]
        with pytest.raises(ServiceError):
            selectors.ticket_get(ticket_id=mine.pk, user=desk.staff)


def test_the_scanner_warns_breaches_and_escalates_once(desk):
    with schema_context(desk.tenant.schema_name):
        t0 = timezone.now()
        with _at(t0):
            ticket = _new(desk, priority="urgent", assignee_id=desk.agent.pk)
        clock = _clock(ticket, SlaClock.Kind.FIRST_RESPONSE)

        def kinds(user):
            return sorted(
                Notification.objects.filter(recipient=user, clock=clock).values_list(
                    "kind", flat=True
                )
            )

        sla_scan(now=t0 + dt.timedelta(minutes=5))
        assert kinds(desk.agent) == []
        sla_scan(now=t0 + dt.timedelta(minutes=8))  # past 75 % of 10 min
        sla_scan(now=t0 + dt.timedelta(minutes=9))
        assert kinds(desk.agent) == ["sla_warning"]
        sla_scan(now=t0 + dt.timedelta(minutes=11))  # breached: assignee, and the lead at once
        sla_scan(now=t0 + dt.timedelta(minutes=12))
        assert kinds(desk.agent) == ["sla_breach", "sla_warning"]
        assert kinds(desk.lead) == ["sla_escalation"]
        assert kinds(desk.supervisor) == []
        sla_scan(now=t0 + dt.timedelta(minutes=41))  # 30 min after the breach: the supervisor
        sla_scan(now=t0 + dt.timedelta(hours=5))
        assert kinds(desk.supervisor) == ["sla_escalation"]
        clock.refresh_from_db()
        assert clock.breached_at == clock.due_at
        assert clock.escalation_level == 2
        assert clock.next_escalation_at is None


def test_a_ticket_from_a_chat_keeps_its_transcript_and_visitor(desk):
    from kefu.models import AgentState
    from kefu.services import agents, messages

    with schema_context(desk.tenant.schema_name):
        agents.agent_status_set(user=desk.agent, status=AgentState.Status.ONLINE)
        visitor, _t = visitor_start(channel=desk.channel, language="zh-CN")
        message, _created = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="发票开错了", client_msg_id="c1"
        )
        conversation_id = message.conversation_id
        messages.agent_message_send(
            user=desk.agent,
            conversation_id=conversation_id,
            content="我来开一张新的",
            client_msg_id="a1",
        )
        ticket = ticket_services.ticket_create(
            subject="重开发票",
            body="Customer needs a new invoice",
            source=Ticket.Source.CONVERSATION,
            creator=desk.agent,
            conversation_id=conversation_id,
        )
        agents.agent_status_set(user=desk.agent, status=AgentState.Status.OFFLINE)
        assert ticket.requester_visitor == visitor
        assert ticket.conversation_id == conversation_id
        note = ticket.comments.get(public=False)
        assert "发票开错了" in note.body
        assert "我来开一张新的" in note.body
        # someone outside the chat cannot file a ticket on it
        with pytest.raises(ServiceError) as err:
            ticket_services.ticket_create(
                subject="x",
                body="y",
                source="conversation",
                creator=desk.other,
                conversation_id=conversation_id,
            )
        assert err.value.code == "not_found"
