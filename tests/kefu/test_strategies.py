"""Routing strategies (least busy, skill match, sticky), routing rules, the department choice and
queue limits, through the service layer."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from im.models import Message
from kefu import senders
from kefu.models import AgentState, RoutingRule, Session, Skill, VisitorTag, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import messages, sessions
from kefu.services import visitors as kefu_visitors
from tests.conftest import make_agent, make_desk, make_visitor, unique
from weiyu.errors import ServiceError


def _send(visitor, text: str = "hello", **extra):
    return messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c"), **extra
    )


def _agent_of(visitor) -> int | None:
    return Session.objects.exclude(status="closed").get(visitor=visitor).agent_id


def _strategy(desk, strategy: str, **fields) -> None:
    Workgroup.objects.filter(pk=desk.workgroup.pk).update(strategy=strategy, **fields)


def test_least_busy_gives_each_visitor_to_the_agent_with_fewest_chats(acme):
    desk = make_desk(acme, agents=3)
    a, b, c = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        _strategy(desk, "least_busy")
        # given a has two chats and b one (c none)
        AgentState.objects.filter(user=a).update(open_count=2)
        AgentState.objects.filter(user=b).update(open_count=1)
        # when three visitors arrive
        visitors = [make_visitor(desk)[0] for _ in range(3)]
        for v in visitors:
            _send(v)
        # then c (no chats) gets the first; b and c then tie at one chat and b, who has not
        # been assigned anything for longer, gets the second; c (one chat) the third
        assert [_agent_of(v) for v in visitors] == [c.pk, b.pk, c.pk]
        assert [AgentState.objects.get(user=u).open_count for u in (a, b, c)] == [2, 2, 2]


def test_least_busy_counts_a_cap_share_when_chats_are_equal(acme):
    desk = make_desk(acme, agents=2)
    small, big = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        _strategy(desk, "least_busy")
        AgentState.objects.filter(user=small).update(open_count=1, max_concurrent=2)
        AgentState.objects.filter(user=big).update(open_count=1, max_concurrent=10)
        visitor, _ = make_visitor(desk)
        _send(visitor)
        assert _agent_of(visitor) == big.pk


def test_skill_match_waits_for_a_skilled_agent_without_holding_up_others(acme):
    desk = make_desk(acme, agents=2)
    plain, expert = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        _strategy(desk, "skill")
        french = Skill.objects.create(name=unique("french"))
        AgentState.objects.get(user=expert).skills.add(french)
        RoutingRule.objects.create(
            channel=desk.channel,
            attribute="language",
            operator="starts_with",
            value="fr",
            workgroup=desk.workgroup,
            skill=french,
        )
        # when a French visitor arrives, they get the agent who speaks French
        fr, _ = make_visitor(desk, language="fr-FR")
        _send(fr, "bonjour")
        assert _agent_of(fr) == expert.pk
        assert Session.objects.get(visitor=fr).skill_id == french.pk
        # when the expert is full, the next French visitor waits for them…
        AgentState.objects.filter(user=expert).update(max_concurrent=1)
        fr2, _ = make_visitor(desk, language="fr-CA")
        _send(fr2, "allô")
        assert Session.objects.get(visitor=fr2).status == "queued"
        # …while an English visitor behind them is served by the other agent
        en, _ = make_visitor(desk, language="en")
        _send(en)
        assert _agent_of(en) == plain.pk
        # and when the expert is free again, the French visitor is theirs
        sessions.session_close(
            session_id=Session.objects.get(visitor=fr).pk, closed_by=senders.agent_sender(expert)
        )
        assert _agent_of(fr2) == expert.pk


def test_sticky_brings_a_returning_visitor_back_to_their_agent(acme):
    desk = make_desk(acme, agents=3)
    with schema_context("acme"):
        _strategy(desk, "sticky")
        visitor, _ = make_visitor(desk)
        _send(visitor, "first visit")
        first_agent = _agent_of(visitor)
        session = Session.objects.get(visitor=visitor, status="open")
        sessions.session_close(session_id=session.pk, closed_by=senders.visitor_sender(visitor))
        # others arrive in between and load the agents
        for _ in range(4):
            _send(make_visitor(desk)[0])
        # when the visitor comes back, their previous agent serves them again
        _send(visitor, "me again")
        assert _agent_of(visitor) == first_agent
        # unless that agent is away: then the least busy one does
        session = Session.objects.get(visitor=visitor, status="open")
        sessions.session_close(session_id=session.pk, closed_by=senders.visitor_sender(visitor))
        kefu_agents.agent_status_set(
            user=next(u for u in desk.agents if u.pk == first_agent), status="away"
        )
        _send(visitor, "third time")
        assert _agent_of(visitor) not in (None, first_agent)


def test_routing_rules_send_visitors_by_page_referrer_and_tag(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        sales = Workgroup.objects.create(name=unique("sales"))
        vip = Workgroup.objects.create(name=unique("vip"))
        partners = Workgroup.objects.create(name=unique("partners"))
        for wg in (sales, vip, partners):
            wg.agents.add(make_agent())
        tag = VisitorTag.objects.create(name=unique("VIP"))
        RoutingRule.objects.create(
            channel=desk.channel, priority=1, attribute="tag", operator="equals",
            value=tag.name.lower(), workgroup=vip,
        )  # fmt: skip
        RoutingRule.objects.create(
            channel=desk.channel, priority=2, attribute="page_url", operator="contains",
            value="/pricing", workgroup=sales,
        )  # fmt: skip
        RoutingRule.objects.create(
            channel=desk.channel, priority=3, attribute="referrer", operator="starts_with",
            value="https://partner.example", workgroup=partners,
        )  # fmt: skip
        pricing = kefu_visitors.visitor_start(
            channel=desk.channel, page_url="https://shop/pricing"
        )[0]
        tagged = kefu_visitors.visitor_start(channel=desk.channel, page_url="https://shop/pricing")[
            0
        ]
        tagged.tags.add(tag)
        referred = kefu_visitors.visitor_start(
            channel=desk.channel, referrer="https://partner.example/deals"
        )[0]
        other = kefu_visitors.visitor_start(channel=desk.channel, page_url="https://shop/")[0]
        for v in (pricing, tagged, referred, other):
            _send(v)
        by_visitor = {
            s.visitor_id: s.workgroup_id
            for s in Session.objects.filter(visitor__in=[pricing, tagged, referred, other])
        }
        assert by_visitor == {
            pricing.pk: sales.pk,
            tagged.pk: vip.pk,  # the tag rule comes first
            referred.pk: partners.pk,
            other.pk: desk.workgroup.pk,  # no rule: the channel's workgroup
        }


def test_the_visitor_chooses_a_department_the_channel_offers(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        billing = Workgroup.objects.create(name=unique("billing"))
        billing.agents.add(make_agent())
        desk.channel.departments.add(billing, desk.workgroup)
        elsewhere = Workgroup.objects.create(name=unique("hidden"))
        visitor, _ = make_visitor(desk)
        with pytest.raises(ServiceError) as refused:
            _send(visitor, department_id=elsewhere.pk)
        assert refused.value.code == "invalid"
        assert not Message.objects.filter(sender_key=visitor.member_key).exists()
        _send(visitor, department_id=billing.pk)
        assert Session.objects.get(visitor=visitor).workgroup_id == billing.pk


def test_a_full_queue_asks_the_visitor_to_leave_a_message_and_stores_nothing(acme):
    desk = make_desk(acme, agents=1, status="away")
    with schema_context("acme"):
        _strategy(desk, "round_robin", max_queue_length=2, overflow_action="leave_message")
        waiting = [make_visitor(desk)[0] for _ in range(2)]
        for v in waiting:
            _send(v)
        late, _ = make_visitor(desk)
        with pytest.raises(ServiceError) as full:
            _send(late, "is anyone there?")
        assert full.value.code == "queue_full"
        assert not Session.objects.filter(visitor=late).exists()
        assert not Message.objects.filter(sender_key=late.member_key).exists()
        assert Session.objects.filter(workgroup=desk.workgroup, status="queued").count() == 2


def test_a_full_queue_overflows_to_another_workgroup_or_to_the_robot(acme):
    desk = make_desk(acme, agents=1, status="away")
    with schema_context("acme"):
        backup = Workgroup.objects.create(name=unique("backup"))
        helper = make_agent()
        backup.agents.add(helper)
        _strategy(
            desk,
            "round_robin",
            max_queue_length=1,
            overflow_action="overflow",
            overflow_workgroup=backup,
        )
        first, second = make_visitor(desk)[0], make_visitor(desk)[0]
        _send(first)
        _send(second)
        assert Session.objects.get(visitor=first).status == "queued"
        assert Session.objects.get(visitor=second).workgroup_id == backup.pk
        assert _agent_of(second) == helper.pk
        _strategy(desk, "round_robin", max_queue_length=1, overflow_action="robot")
        third, _ = make_visitor(desk)
        _send(third)
        assert Session.objects.get(visitor=third).status == "robot"


def test_concurrent_arrivals_never_overfill_a_limited_queue(acme):
    from tests.threads import in_threads

    desk = make_desk(acme, agents=1, status="away")
    with schema_context("acme"):
        _strategy(desk, "round_robin", max_queue_length=7, overflow_action="leave_message")
        visitors = [make_visitor(desk)[0] for _ in range(30)]

    def arrive(visitor):
        try:
            _send(visitor)
        except ServiceError as exc:
            return exc.code
        return "queued"

    results = in_threads("acme", arrive, visitors, threads=10)
    assert results.count("queued") == 7
    assert results.count("queue_full") == 23
    with schema_context("acme"):
        assert Session.objects.filter(workgroup=desk.workgroup, status="queued").count() == 7
