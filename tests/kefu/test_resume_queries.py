"""What a reconnecting socket costs the database (docs/benchmarks.md, "Connections"): a visitor's
resume is its authentication and its ``sync``, asked by every widget at once in a reconnect
storm. The written-out visitor conversation list must give exactly what the general path gives;
the budgets count every statement the database receives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from im import selectors as im_selectors
from im.models import Conversation, Message
from im.serializers import message_payload
from im.services import groups
from im.services import messages as im_messages
from kefu import selectors
from kefu.consumers import AgentConsumer, VisitorConsumer, _visitor_and_limits
from kefu.models import Channel, Session, Visitor
from kefu.senders import agent_sender, visitor_sender
from kefu.services import labels, messages, sessions, visitors
from org import limits
from org.models import User
from tests.conftest import PASSWORD, make_agent, make_desk, make_visitor, unique
from weiyu.errors import ServiceError


def _run(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn(*args)
    return result, [q["sql"] for q in ctx.captured_queries]


def _sync(visitor: Any, cursors: dict[str, int]) -> dict[str, Any]:
    """What a visitor socket computes for ``sync`` (VisitorConsumer._sync_result)."""
    consumer = VisitorConsumer()
    consumer.sender = visitor_sender(visitor)
    return consumer._sync_result(cursors)


@pytest.fixture
def history(acme):
    """A visitor with a closed conversation (rated) and an open one with an agent, the open one
    ending on an internal note the visitor never sees; inside acme."""
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    visitor, token = make_visitor(desk)
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(csat_enabled=True)
        first, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="order 42?", client_msg_id=unique("c")
        )
        old = first.conversation_id
        messages.agent_message_send(user=agent, conversation_id=old, content="It ships today.")
        sessions.conversation_close_by_member(conversation_id=old, sender=agent_sender(agent))
        Session.objects.filter(conversation_id=old).update(csat_score=4, csat_comment="ok")
        second, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="and 43?", client_msg_id=unique("c")
        )
        new = second.conversation_id
        messages.agent_message_send(user=agent, conversation_id=new, content="Looking.")
        messages.agent_message_send(user=agent, conversation_id=new, content="Found it.")
        messages.agent_message_send(
            user=agent, conversation_id=new, content="slow courier again", internal=True
        )
        yield agent, visitor, token, old, new


def test_visitor_list_in_one_statement_is_what_the_general_path_gives(history):
    # given a visitor with a closed, rated conversation and an open one ending on a note
    _agent, visitor, _token, old, new = history
    with schema_context("acme"):
        key = visitor_sender(visitor).key
        general = selectors.conversation_list_for_member(member_key=key, closed_limit=20)
        # when the socket lists them
        fast, sql = _run(
            lambda: selectors.member_conversation_list(member_key=key, closed_limit=20)
        )
    # then one statement gives the same payloads, open conversation first
    assert len(sql) == 1, sql
    assert [c["id"] for c in fast] == [new, old]
    assert fast == sorted(general, key=lambda c: [new, old].index(c["id"]))
    open_one = fast[0]
    # the visitor's view: the last message they may see, notes out of the unread count
    assert open_one["last_message"]["content"] == "Found it."
    assert open_one["unread"] == 3
    assert [p["member"]["key"] for p in open_one["peers"]] == [f"u:{history[0].pk}"]
    assert fast[1]["session"]["csat"]["score"] == 4
    assert fast[1]["closed"] is True
    # and no part of the session that only staff see
    for conversation in fast:
        assert not {"labels", "customer_message"} & set(conversation["session"])


def test_visitor_resume_is_one_statement_to_authenticate_and_one_or_two_to_sync(history):
    # given a visitor socket reconnecting with its token (the tenant's limits already cached)
    _agent, _visitor, token, old, new = history
    with schema_context("acme"):
        limits.effective()
        Visitor.objects.exists()  # the connection's search_path set (a cached tenant sets none)
        # when it authenticates
        (visitor, _limits), auth_sql = _run(_visitor_and_limits, token)
        last = dict(Conversation.objects.filter(pk__in=[old, new]).values_list("id", "last_seq"))
        # and syncs holding everything
        everything = {str(old): last[old], str(new): last[new]}
        held, held_sql = _run(_sync, visitor, everything)
        # and syncs having missed the open conversation's last two messages
        missed, missed_sql = _run(_sync, visitor, {str(old): last[old], str(new): 1})
        # and syncs having missed both conversations entirely (cursor 0)
        fresh, fresh_sql = _run(_sync, visitor, {str(old): 0, str(new): 0})
    # then: one statement each to authenticate and to list, one more for every missed message
    assert len(auth_sql) == 1, auth_sql
    assert (len(held_sql), held["messages"]) == (1, [])
    assert len(missed_sql) == 2, missed_sql
    assert [m["content"] for m in missed["messages"]] == [
        m.content
        for m in Message.objects.filter(conversation=new, seq__gt=1, internal=False).order_by("seq")
    ]
    assert missed["messages"][-2:][0]["content"] == "Looking."
    assert len(fresh_sql) == 2, fresh_sql
    visible = [
        (m.conversation_id, m.seq)
        for m in Message.objects.filter(conversation__in=[old, new], internal=False).order_by(
            "conversation_id", "seq"
        )
    ]
    assert [(m["conversation_id"], m["seq"]) for m in fresh["messages"]] == visible
    # and nothing internal ever reaches the visitor
    assert not any(m["internal"] for m in fresh["messages"])


def test_messages_after_many_matches_one_query_per_conversation_and_truncates(history, settings):
    # given an agent who missed messages in two conversations
    _agent, _visitor, _token, old, new = history
    with schema_context("acme"):
        im_selectors.messages_after(conversation_id=old, after_seq=0, limit=1)  # schema set
        plan = [(old, 0), (new, 1)]
        # when the messages of both are read in one statement
        rows, sql = _run(
            lambda: im_selectors.messages_after_many(plan=plan, limit=500, include_internal=True)
        )
        one_by_one = [
            message_payload(m)
            for cid, after in plan
            for m in im_selectors.messages_after(
                conversation_id=cid, after_seq=after, limit=500, include_internal=True
            )
        ]
        # and a sync past the limit is cut to the newest messages
        settings.WEIYU_SYNC_MAX_MESSAGES = 2
        conversations = [{"id": new, "last_seq": 4}, {"id": old, "last_seq": 2}]
        cut = im_selectors.sync_plan(
            conversations=conversations, cursors={str(new): 0, str(old): 2}, limit=2
        )
    # then the statement gives what the per-conversation queries give, the note included
    assert len(sql) == 1, sql
    assert [message_payload(m) for m in rows] == one_by_one
    assert rows[-1].internal is True
    assert cut == ([(new, 2)], [new])


def test_agent_sync_reads_all_missed_messages_in_one_statement(history):
    # given the agent's socket missed messages in two conversations
    agent, _visitor, _token, old, new = history
    consumer = AgentConsumer()
    consumer.sender = agent_sender(agent)
    with schema_context("acme"):
        _run(consumer._sync_result, {})  # warm the per-process caches
        _few, few_sql = _run(consumer._sync_result, {str(old): 1})
        many, many_sql = _run(consumer._sync_result, {str(old): 0, str(new): 0})
        everything = [
            (m.conversation_id, m.seq)
            for m in Message.objects.filter(conversation__in=[old, new]).order_by(
                "conversation_id", "seq"
            )
        ]
    # then a second conversation with a gap costs no further statement
    assert len(many_sql) == len(few_sql), many_sql
    assert [(m["conversation_id"], m["seq"]) for m in many["messages"]] == everything


def test_the_token_loads_the_same_visitor_and_channel_as_the_orm(history):
    # given a visitor who came with an address, a page and a referrer
    _agent, visitor, token, _old, _new = history
    with schema_context("acme"):
        Visitor.objects.filter(pk=visitor.pk).update(
            ip_address="203.0.113.9", page_url="https://shop.example/p/1", email="li@example.com"
        )
        orm = Visitor.objects.select_related("channel").get(pk=visitor.pk)
        # when the socket reads it from its token
        loaded, sql = _run(visitors.visitor_from_token, token)
        # then one statement gives every field of both
        assert len(sql) == 1, sql
        for field in Visitor._meta.concrete_fields:
            assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
        for field in Channel._meta.concrete_fields:
            assert getattr(loaded.channel, field.attname) == getattr(orm.channel, field.attname)
        # and a token naming no visitor is refused as before
        Visitor.objects.filter(pk=visitor.pk).delete()
        with pytest.raises(ServiceError) as refused:
            visitors.visitor_from_token(token)
    assert refused.value.code == "invalid_token"


def test_agent_list_in_one_statement_is_what_the_general_path_gives(history):
    # given an agent serving two visitor chats (one closed, one with an internal note last, two
    # labels and the customer's words recalled), in a team group they own and in a 1:1 chat
    # with a colleague
    agent, visitor, _token, old, new = history
    with schema_context("acme"):
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True
        )
        vip = labels.label_create(user=boss, name=unique("vip"), color="#d1242f")
        billing = labels.label_create(user=boss, name=unique("billing"), description="money")
        labels.labels_change(user=agent, conversation_ids=[new], add=[vip.pk, billing.pk])
        words, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=new, content="never mind", client_msg_id=unique("c")
        )
        im_messages.message_recall(
            conversation_id=new,
            message_id=words.pk,
            sender=visitor_sender(visitor),
            client_msg_id=unique("r"),
        )
        messages.agent_message_send(
            user=agent, conversation_id=new, content="refund?", internal=True
        )
        colleague = make_agent()
        team = groups.group_create(
            creator=agent, title="Desk", member_ids=[colleague.pk], announcement="hi"
        )
        im_messages.message_send(
            sender=agent_sender(colleague),
            conversation_id=team.pk,
            content="morning",
            client_msg_id=unique("c"),
        )
        direct = groups.direct_get_or_create(user=agent, other_user_id=colleague.pk)
        key = agent_sender(agent).key
        general = selectors.conversation_list_for_member(member_key=key)
        # when the agent's socket lists them
        fast, sql = _run(lambda: selectors.member_conversation_list(member_key=key))
    # then two statements (the list with the customer conversations' labels and the
    # customer's last message, and the group size limit) give the same payloads
    assert len(sql) == 2, sql
    by_id = {c["id"]: c for c in general}
    assert sorted(c["id"] for c in fast) == sorted(by_id) == sorted([old, new, team.pk, direct.pk])
    for payload in fast:
        assert payload == by_id[payload["id"]], payload["id"]
    shown = {c["id"]: c for c in fast}
    assert shown[new]["last_message"]["internal"] is True  # agents see their notes
    assert shown[team.pk]["group"]["owner"]["key"] == key
    assert shown[team.pk]["peers"] == []
    session = shown[new]["session"]
    assert [label["name"] for label in session["labels"]] == sorted([vip.name, billing.name])
    assert session["customer_message"]["seq"] > words.seq - 1  # its recall or the recalled words
    assert shown[old]["session"]["labels"] == []


def test_the_resume_statements_are_prepared_and_read_the_current_tenants_tables(acme, globex):
    # given a visitor with a conversation in each of two tenants
    texts, tokens, conversations = {}, {}, {}
    for tenant in (acme, globex):
        schema = tenant.schema_name
        visitor, tokens[schema] = make_visitor(make_desk(tenant, agents=1))
        texts[schema] = unique(f"hello from {schema}")
        with schema_context(schema):
            message, _ = messages.visitor_message_send(
                visitor=visitor,
                conversation_id=None,
                content=texts[schema],
                client_msg_id=unique("c"),
            )
        conversations[schema] = message.conversation_id
    # when one database connection resumes them in turn, again and again (one web process
    # serves every tenant): authentication, then sync from cursor 0
    for _ in range(3):
        for schema, other in (("acme", "globex"), ("globex", "acme"), ("acme", "globex")):
            with schema_context(schema):
                visitor = visitors.visitor_from_token(tokens[schema])
                result = _sync(visitor, {str(conversations[schema]): 0})
            # then each tenant's visitor gets its own conversation, never the other tenant's
            assert [c["id"] for c in result["conversations"]] == [conversations[schema]]
            contents = [m["content"] for m in result["messages"]]
            assert texts[schema] in contents
            assert texts[other] not in contents
    # and the statements were prepared on the server once, not planned anew each time
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    for part in ("WITH mine AS", "FROM kefu_visitor v JOIN kefu_channel", "FROM unnest("):
        assert any(part in statement for statement in prepared), part
