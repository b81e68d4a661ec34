"""Query budgets of every path a message takes (STYLE.md "Hot paths"; docs/architecture.md,
"The send path"). Each path calls what its websocket handler calls, in the tenant's schema;
the budget counts every statement the database receives, BEGIN and COMMIT included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from im.services import groups
from im.services import messages as im_messages
from kefu import hours, sensitive
from kefu.models import Session, Workgroup
from kefu.senders import agent_sender
from kefu.services import automation, blocking, messages
from kefu.services import files as visitor_files
from kefu.services.visitors import visitor_from_token
from org.webhooks import services as webhooks
from tenants import quotas
from tests.conftest import make_agent, make_desk, make_visitor, unique
from weiyu.errors import ServiceError


@pytest.fixture(autouse=True)
def _caches_stay_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budgets are per message in the steady state: the per-process caches a send reads
    (blocks, sensitive words, auto-replies, work hours; refreshed every 10 s) stay fresh for
    the whole test, however slowly a loaded machine runs it."""
    for module, name in (
        (blocking, "TTL_S"),
        (sensitive, "TTL_S"),
        (automation, "CACHE_S"),
        (hours, "CACHE_S"),
        (webhooks, "CACHE_S"),  # the subscribed webhook events (none here)
        (quotas, "CACHE_S"),  # the tenant's plan (the conversations quota of a first message)
    ):
        monkeypatch.setattr(module, name, 3600.0)
        # an entry filled by an earlier test carries that test's expiry: start empty
        monkeypatch.setattr(module, "_cache", {})


def _run(fn: Callable[..., Any], **kwargs: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn(**kwargs)
    return result, [q["sql"] for q in ctx.captured_queries]


def _show(sql: list[str]) -> str:
    return "\n".join(s[:140] for s in sql)


@pytest.fixture
def chat(acme):
    """An agent serving a visitor whose first message is already stored, inside acme."""
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        visitor.refresh_from_db()
        first, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
        yield desk.agents[0], visitor, first.conversation_id


def test_visitor_first_message_writes_session_conversation_and_message_in_one_transaction(acme):
    # given a visitor with no conversation yet, on a channel whose settings are cached (another
    # visitor has written before)
    desk = make_desk(acme, agents=2)
    earlier, _token = make_visitor(desk)
    visitor, token = make_visitor(desk)
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=earlier, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        visitor = visitor_from_token(token)  # as the socket has it
        # when they send their first message
        (message, created), sql = _run(
            messages.visitor_message_send,
            visitor=visitor,
            conversation_id=None,
            content="hello",
            client_msg_id=unique("c"),
        )
        # then one transaction wrote session, conversation and message; dispatch came after it
        assert created
        first_commit = sql.index("COMMIT")
        inserts = [s.split()[2].strip('"') for s in sql[:first_commit] if s.startswith("INSERT")]
        assert inserts == ["im_conversation", "im_participant", "kefu_session"], _show(sql)
        assert any("INSERT INTO im_message" in s for s in sql[:first_commit]), _show(sql)
        assert sql[:first_commit].count("BEGIN") == 1, _show(sql)
        # reads: resend?, live session?, routing rules, work hours with the queue limit; the
        # transaction: 3 inserts, the send (members, session clock, the message), savepoints
        assert len(sql[:first_commit]) <= 15, _show(sql[:first_commit])
        # the dispatch after it: under the workgroup's lock the queue's head, one statement
        # claiming the agent's slot and giving them the session, the agent joining, the system
        # line (members, the write); then one read for conversation.assigned
        routed = sql[first_commit + 1 :]
        locked = next(i for i, s in enumerate(routed) if "FOR UPDATE" in s)
        held = routed[locked : routed.index("COMMIT", locked)]
        assert len(held) <= 6, _show(held)
        assert len(routed) <= 9, _show(routed)
        session = Session.objects.get(conversation_id=message.conversation_id)
        assert session.status == Session.Status.OPEN  # assigned after commit
        assert session.agent_id in {a.pk for a in desk.agents}


def test_visitor_first_message_served_at_once_is_one_transaction(acme):
    # given a least-busy workgroup with two free agents and nobody waiting, and a visitor with
    # no conversation yet (the channel's settings cached: another visitor has written before)
    desk = make_desk(acme, agents=2)
    earlier, _token = make_visitor(desk)
    visitor, token = make_visitor(desk)
    with schema_context("acme"):
        Workgroup.objects.filter(pk=desk.workgroup.pk).update(strategy="least_busy")
        messages.visitor_message_send(
            visitor=earlier, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        visitor = visitor_from_token(token)
        # when they send their first message
        (message, created), sql = _run(
            messages.visitor_message_send,
            visitor=visitor,
            conversation_id=None,
            content="hello",
            client_msg_id=unique("c"),
        )
        # then one transaction wrote session, conversation and message, and gave the session to
        # an agent with one statement, without the workgroup's lock; conversation.assigned read
        # once after it
        assert created
        assert sql.count("BEGIN") == 1, _show(sql)
        assert sql.count("COMMIT") == 1, _show(sql)
        assert not any("FOR NO KEY UPDATE" in s for s in sql), _show(sql)
        claims = [s for s in sql if "SKIP LOCKED" in s]
        assert len(claims) == 1, _show(sql)
        assert "UPDATE kefu_session" in claims[0], _show(sql)
        # reads: resend?, live session?, routing rules, the workgroup; the transaction: 3 inserts,
        # the send (members, session clock, the message), savepoints, the claim, the agent
        # joining, the system line (members, the write); then the read for conversation.assigned
        # (24 statements in two transactions when the dispatch followed the commit)
        assert len(sql) <= 21, _show(sql)
        session = Session.objects.get(conversation_id=message.conversation_id)
        assert session.status == Session.Status.OPEN
        assert session.agent_id in {a.pk for a in desk.agents}


def test_an_empty_first_message_writes_nothing(acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        visitor.refresh_from_db()
        with pytest.raises(ServiceError) as raised:
            messages.visitor_message_send(
                visitor=visitor, conversation_id=None, content="   ", client_msg_id=unique("c")
            )
        assert raised.value.code == "invalid"
        assert not Session.objects.filter(visitor=visitor).exists()


def test_visitor_next_message_budget(chat):
    _agent, visitor, cid = chat
    (_message, created), sql = _run(
        messages.visitor_message_send,
        visitor=visitor,
        conversation_id=cid,
        content="again",
        client_msg_id=unique("c"),
    )
    assert created
    # members read, BEGIN, session clock, the message (seq, insert, receipt), COMMIT
    assert len(sql) == 5, _show(sql)
    assert Session.objects.get(conversation_id=cid).last_visitor_at == _message.created_at


def test_agent_reply_budget(chat):
    agent, _visitor, cid = chat
    sender = agent_sender(agent)
    (message, created), sql = _run(
        im_messages.message_send,
        conversation_id=cid,
        sender=sender,
        content="hi",
        client_msg_id=unique("c"),
    )
    assert created
    assert len(sql) == 5, _show(sql)
    session = Session.objects.get(conversation_id=cid)
    assert session.first_response_at == message.created_at
    assert session.last_agent_at == message.created_at
    (again, _), sql = _run(
        im_messages.message_send, conversation_id=cid, sender=sender, content="more"
    )
    assert len(sql) == 5, _show(sql)
    session.refresh_from_db()
    assert session.first_response_at == message.created_at  # the first reply's time stays
    assert session.last_agent_at == again.created_at


def test_team_direct_message_budget(acme):
    with schema_context("acme"):
        me, other = make_agent(status="offline"), make_agent(status="offline")
        direct = groups.direct_get_or_create(user=me, other_user_id=other.pk)
        (_message, created), sql = _run(
            im_messages.message_send,
            conversation_id=direct.pk,
            sender=agent_sender(me),
            content="team",
            client_msg_id=unique("c"),
        )
    assert created
    # members read, BEGIN, the message (seq, insert, receipt in one statement), COMMIT: nothing
    # of kefu
    assert len(sql) == 4, _show(sql)
    assert not any("kefu_" in s for s in sql)


def test_group_message_budget(acme):
    with schema_context("acme"):
        me = make_agent(status="offline")
        members = [make_agent(status="offline") for _ in range(20)]
        group = groups.group_create(creator=me, title="g", member_ids=[u.pk for u in members])
        (_message, created), sql = _run(
            im_messages.message_send,
            conversation_id=group.pk,
            sender=agent_sender(me),
            content="group",
            client_msg_id=unique("c"),
        )
    assert created
    assert len(sql) == 4, _show(sql)


def _pdf(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"%PDF-1.4\n%%EOF\n", content_type="application/pdf")


def test_visitor_file_message_budget(chat):
    # given a file the widget uploaded into the visitor's conversation
    _agent, visitor, cid = chat
    attachment = visitor_files.visitor_attachment_upload(
        visitor=visitor, upload=_pdf("a.pdf"), kind="file", conversation_id=cid
    )
    # when the visitor sends it
    (message, created), sql = _run(
        messages.visitor_message_send,
        visitor=visitor,
        conversation_id=cid,
        content=None,
        client_msg_id=unique("c"),
        msg_type="file",
        attachment_id=attachment.pk,
    )
    # then it costs the text path plus the attachment's read (as a staff member's file)
    assert created
    assert message.attachment_id == attachment.pk
    assert len(sql) == 6, _show(sql)


def test_visitor_file_sent_before_a_conversation_is_claimed_with_one_update(chat):
    # given a file uploaded while the widget knew no conversation (the live one exists)
    _agent, visitor, cid = chat
    attachment = visitor_files.visitor_attachment_upload(
        visitor=visitor, upload=_pdf("b.pdf"), kind="file"
    )
    # when it is sent without conversation_id
    (message, created), sql = _run(
        messages.visitor_message_send,
        visitor=visitor,
        conversation_id=None,
        content=None,
        client_msg_id=unique("c"),
        msg_type="file",
        attachment_id=attachment.pk,
    )
    # then it goes to the live conversation. Reads: resend?, the file is the visitor's, live
    # session; the send refused at its draft (the file is in no conversation yet), the claim's
    # UPDATE, the send again (the file, members, BEGIN, session clock, the message, COMMIT)
    assert created
    assert message.conversation_id == cid
    assert sum(s.startswith("UPDATE") and "im_attachment" in s for s in sql) == 1, _show(sql)
    assert len(sql) == 11, _show(sql)
