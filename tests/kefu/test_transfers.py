"""Transfers to a colleague (accept, decline, cancel, expiry), to a workgroup, and invitations."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message, Participant
from im.syslines import message_text
from kefu.models import AgentState, Session, Transfer, Workgroup
from kefu.services import messages, transfers
from tenants.models import Tenant
from tests.conftest import make_agent, make_desk, make_visitor, session_cookie, unique
from weiyu.errors import ServiceError
from weiyu.realtime import capture_events


def _open_session(desk, language: str = "en") -> Session:
    visitor, _ = make_visitor(desk, language=language)
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content="help", client_msg_id=unique("c")
    )
    return Session.objects.get(visitor=visitor)


def _in_conversation(session: Session) -> set[str]:
    return set(
        Participant.objects.filter(
            conversation_id=session.conversation_id, left_at__isnull=True
        ).values_list("member_key", flat=True)
    )


def _load(user) -> int:
    return AgentState.objects.get(user=user).open_count


def test_a_colleague_accepts_a_transfer_and_the_visitor_is_told(acme):
    desk = make_desk(acme, agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        AgentState.objects.filter(user=colleague).update(status="away")
        session = _open_session(desk)
        assert session.agent_id == first.pk
        AgentState.objects.filter(user=colleague).update(status="online")
        with capture_events() as events:
            transfer = transfers.transfer_request(
                user=first,
                conversation_id=session.conversation_id,
                to_agent_id=colleague.pk,
                note="VIP, wants a refund",
            )
        # the colleague is asked, with the note
        requested = [(e, g) for e, g in events if e["type"] == "transfer.requested"]
        assert len(requested) == 1
        event, groups = requested[0]
        assert sorted(groups) == sorted([f"acme.u.{first.pk}", f"acme.u.{colleague.pk}"])
        assert event["transfer"]["note"] == "VIP, wants a refund"
        assert event["transfer"]["status"] == "pending"
        # a second request while one waits is refused
        with pytest.raises(ServiceError) as twice:
            transfers.transfer_request(
                user=first, conversation_id=session.conversation_id, to_agent_id=colleague.pk
            )
        assert twice.value.code == "conflict"

        # when the colleague accepts
        with capture_events() as events:
            transfers.transfer_accept(user=colleague, transfer_id=transfer.pk)
        session.refresh_from_db()
        # then the conversation is theirs: loads moved, the first agent is out of it
        assert session.agent_id == colleague.pk
        assert (_load(first), _load(colleague)) == (0, 1)
        assert _in_conversation(session) == {session.visitor.member_key, colleague.member_key}
        # and the visitor reads who serves them now
        last = Message.objects.filter(conversation_id=session.conversation_id).last()
        assert message_text(last, language="en") == f"{colleague.name} is now serving you."
        types = {(e["type"], tuple(g)) for e, g in events}
        assert ("conversation.removed", (f"acme.u.{first.pk}",)) in types
        assert ("conversation.assigned", (f"acme.u.{colleague.pk}",)) in types
        assert Transfer.objects.get(pk=transfer.pk).status == "accepted"
        # and the first agent can no longer write there
        with pytest.raises(ServiceError):
            messages.agent_message_send(
                user=first, conversation_id=session.conversation_id, content="still here?"
            )


def test_declined_cancelled_and_expired_transfers_leave_the_conversation_where_it_was(acme):
    desk = make_desk(acme, agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        AgentState.objects.filter(user=colleague).update(status="away")
        session = _open_session(desk)
        AgentState.objects.filter(user=colleague).update(status="online")
        declined = transfers.transfer_request(
            user=first, conversation_id=session.conversation_id, to_agent_id=colleague.pk
        )
        transfers.transfer_decline(user=colleague, transfer_id=declined.pk)
        # answering twice is refused; the first agent cannot answer for the colleague
        with pytest.raises(ServiceError) as again:
            transfers.transfer_accept(user=colleague, transfer_id=declined.pk)
        assert again.value.code == "conflict"
        cancelled = transfers.transfer_request(
            user=first, conversation_id=session.conversation_id, to_agent_id=colleague.pk
        )
        with pytest.raises(ServiceError) as not_yours:
            transfers.transfer_accept(user=first, transfer_id=cancelled.pk)
        assert not_yours.value.code == "not_found"
        transfers.transfer_cancel(user=first, transfer_id=cancelled.pk)
        stale = transfers.transfer_request(
            user=first, conversation_id=session.conversation_id, to_agent_id=colleague.pk
        )
        Transfer.objects.filter(pk=stale.pk).update(
            created_at=timezone.now() - timedelta(seconds=transfers.TRANSFER_TTL_S + 1)
        )
        # (other tests' transfers in this tenant may have aged past the limit too)
        assert transfers.expire_scan() >= 1
        statuses = dict(
            Transfer.objects.filter(pk__in=[declined.pk, cancelled.pk, stale.pk]).values_list(
                "pk", "status"
            )
        )
        assert statuses == {
            declined.pk: "declined",
            cancelled.pk: "cancelled",
            stale.pk: "expired",
        }
        session.refresh_from_db()
        assert session.agent_id == first.pk
        assert (_load(first), _load(colleague)) == (1, 0)


def test_transfer_to_a_workgroup_requeues_the_conversation_there(acme):
    desk = make_desk(acme, agents=1)
    first = desk.agents[0]
    with schema_context("acme"):
        billing = Workgroup.objects.create(name=unique("billing"))
        clerk = make_agent()
        billing.agents.add(clerk)
        session = _open_session(desk, language="zh-CN")
        transfers.transfer_request(
            user=first, conversation_id=session.conversation_id, to_workgroup_id=billing.pk
        )
        session.refresh_from_db()
        assert (session.workgroup_id, session.agent_id, session.status) == (
            billing.pk,
            clerk.pk,
            "open",
        )
        assert (_load(first), _load(clerk)) == (0, 1)
        texts = list(
            Message.objects.filter(conversation_id=session.conversation_id, msg_type="system")
            .order_by("seq")
            .values_list("content", flat=True)
        )
        assert f"正在为您转接到{billing.name}，请稍候。" in texts


def test_bad_transfers_are_refused(acme):
    desk = make_desk(acme, agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        AgentState.objects.filter(user=colleague).update(status="away")
        session = _open_session(desk)
        cid = session.conversation_id
        cases = [
            (first, {"conversation_id": cid}, "invalid"),  # no target
            (first, {"conversation_id": cid, "to_agent_id": first.pk}, "invalid"),  # oneself
            (first, {"conversation_id": cid, "to_agent_id": colleague.pk}, "unavailable_agent"),
            (first, {"conversation_id": "x", "to_agent_id": colleague.pk}, "invalid"),
            (colleague, {"conversation_id": cid, "to_agent_id": first.pk}, "not_found"),
            (first, {"conversation_id": cid, "to_workgroup_id": 10**9}, "invalid"),
        ]
        for user, fields, code in cases:
            with pytest.raises(ServiceError) as refused:
                transfers.transfer_request(user=user, **fields)
            assert refused.value.code == code, fields
        assert not Transfer.objects.filter(session=session).exists()


def test_an_invited_colleague_joins_as_second_agent_over_the_api(acme):
    desk = make_desk(acme, agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    with schema_context("acme"):
        AgentState.objects.filter(user=colleague).update(status="away")
        session = _open_session(desk)
    client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    name, value = (
        session_cookie(Tenant.objects.get(schema_name="acme"), first).decode().split("=", 1)
    )
    client.cookies[name] = value
    r = client.post(
        "/api/v1/kefu/invites",
        json.dumps({"conversation_id": session.conversation_id, "agent_id": colleague.pk}),
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    assert r.json() == {"agent": {"id": colleague.pk, "name": colleague.name}}
    with schema_context("acme"):
        assert colleague.member_key in _in_conversation(session)
        assert _load(colleague) == 0  # a helper, not the owner
        last = Message.objects.filter(conversation_id=session.conversation_id).last()
        assert message_text(last, language="en") == f"{colleague.name} joined the conversation."
        # the colleague can write to the visitor
        messages.agent_message_send(
            user=colleague, conversation_id=session.conversation_id, content="Hello from Bob"
        )
    again = client.post(
        "/api/v1/kefu/invites",
        json.dumps({"conversation_id": session.conversation_id, "agent_id": colleague.pk}),
        content_type="application/json",
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid"
    # the team list shows who is online and how loaded
    team = client.get("/api/v1/kefu/agents").json()
    mine = next(a for a in team["agents"] if a["id"] == first.pk)
    assert (mine["status"], mine["open_count"]) == ("online", 1)
    assert {"id": desk.workgroup.pk, "name": desk.workgroup.name} in mine["workgroups"]
