"""Delivery guarantees (docs/protocol.md §3): resume with ``sync``, idempotent resends, gap-free
``seq`` under concurrency, refusals that store nothing, history paging, forward-only receipts,
and exactly who is told about a new message."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from im.models import Conversation, Message
from im.services import conversations as im_conversations
from kefu import senders
from kefu.models import Session, Visitor
from kefu.services import messages as kefu_messages
from kefu.services import sessions
from org.models import User
from tests.conftest import make_desk, make_visitor, session_cookie
from tests.kefu.conversations import customer_conversation
from tests.threads import in_threads
from tests.waits import WAIT_S
from tests.ws import collect, collect_until, connect, receive_until
from weiyu.realtime import capture_events

HOST = "acme.localhost"


@dataclass
class Chat:
    """A visitor conversation in acme, assigned to ``agent``."""

    agent: User
    visitor: Visitor
    token: str
    cookie: bytes
    cid: int


def _chat(acme, *, extra_visitor_messages: int = 0, agent_messages: int = 0) -> Chat:
    desk = make_desk(acme, agents=1)
    visitor, token = make_visitor(desk)
    with schema_context("acme"), capture_events():
        first, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id="first"
        )
        for n in range(extra_visitor_messages):
            kefu_messages.visitor_message_send(
                visitor=visitor,
                conversation_id=first.conversation_id,
                content=f"more {n}",
                client_msg_id=f"more-{n}",
            )
        assert Session.objects.get(visitor=visitor).agent_id == desk.agents[0].pk
        for n in range(agent_messages):
            kefu_messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=first.conversation_id,
                content=f"answer {n}",
                client_msg_id=f"answer-{n}",
            )
    cookie = session_cookie(acme, desk.agents[0])
    return Chat(desk.agents[0], visitor, token, cookie, first.conversation_id)


async def _agent(chat: Chat):
    ws, hello = await connect("/ws/agent/", HOST, cookie=chat.cookie)
    assert hello["type"] == "hello"
    return ws


async def _visitor(chat: Chat):
    ws, hello = await connect(f"/ws/visitor/?token={chat.token}", HOST)
    assert hello["type"] == "hello"
    return ws


def _send_frame(cid: int | None, cmid: str, content: str, ref: str | None = None) -> dict:
    frame = {"type": "message.send", "client_msg_id": cmid, "content": content}
    if cid is not None:
        frame["conversation_id"] = cid
    if ref is not None:
        frame["ref"] = ref
    return frame


def _last_seq(cid: int) -> int:
    with schema_context("acme"):
        return Conversation.objects.get(pk=cid).last_seq


def _messages(cid: int) -> list[Message]:
    with schema_context("acme"):
        return list(Message.objects.filter(conversation_id=cid).order_by("seq"))


def _session(cid: int) -> Session:
    with schema_context("acme"):
        return Session.objects.get(conversation_id=cid)


def _sessions_of(visitor: Visitor) -> int:
    with schema_context("acme"):
        return Session.objects.filter(visitor=visitor).count()


def _stored_with_prefix(prefix: str) -> bool:
    with schema_context("acme"):
        return Message.objects.filter(client_msg_id__startswith=prefix).exists()


@pytest.mark.asyncio
@pytest.mark.parametrize("away", ["agent", "visitor"])
async def test_reconnecting_client_gets_exactly_the_missed_messages_in_order(acme, away):
    # given a chat where the side that will go away holds everything so far
    chat = await database_sync_to_async(_chat)(acme)
    open_socket = {"agent": _agent, "visitor": _visitor}
    other = "visitor" if away == "agent" else "agent"
    sender = await open_socket[other](chat)
    leaver = await open_socket[away](chat)
    await leaver.send_json_to({"type": "sync", "cursors": {}})
    held = (await receive_until(leaver, "sync.result"))["conversations"][0]["last_seq"]
    await leaver.send_json_to(
        {"type": "read.update", "conversation_id": chat.cid, "read_seq": held}
    )
    await collect(leaver)

    # when it disconnects and the other side sends twenty messages meanwhile
    await leaver.disconnect()
    for n in range(20):
        await sender.send_json_to(_send_frame(chat.cid, f"gap-{n}", f"missed {n}"))
        await receive_until(sender, "message.ack")

    # then on reconnecting, sync with its cursor returns the twenty, once each, in order
    leaver = await open_socket[away](chat)
    await leaver.send_json_to({"type": "sync", "cursors": {str(chat.cid): held}, "ref": "re"})
    result = await receive_until(leaver, "sync.result")
    assert result["ref"] == "re"
    assert result["truncated"] == []
    got = result["messages"]
    assert [m["seq"] for m in got] == list(range(held + 1, held + 21))
    assert [m["content"] for m in got] == [f"missed {n}" for n in range(20)]
    assert {m["sender"]["type"] for m in got} == {other}
    [conversation] = [c for c in result["conversations"] if c["id"] == chat.cid]
    assert conversation["last_seq"] == held + 20
    assert conversation["unread"] == 20
    # and nothing of it arrives a second time as a live frame
    assert not [f for f in await collect(leaver) if f["type"] == "message.new"]
    await leaver.disconnect()
    await sender.disconnect()


@pytest.mark.asyncio
async def test_resend_with_the_same_client_msg_id_is_acked_as_duplicate(acme):
    # given a visitor on the widget and its agent on the inbox
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    visitor, token = await database_sync_to_async(make_visitor)(desk)
    cookie = await database_sync_to_async(session_cookie)(acme, desk.agents[0])
    agent_ws, _ = await connect("/ws/agent/", HOST, cookie=cookie)
    ws, _ = await connect(f"/ws/visitor/?token={token}", HOST)

    # when the visitor's first message is sent, then resent as if the ack had been lost
    await ws.send_json_to(_send_frame(None, "same-1", "is anyone there?", ref="a"))
    first = await receive_until(ws, "message.ack")
    await ws.send_json_to(_send_frame(None, "same-1", "is anyone there?", ref="b"))
    again = await receive_until(ws, "message.ack")
    # and a later message is resent three times into the conversation
    cid = first["conversation_id"]
    acks = []
    for n in range(3):
        await ws.send_json_to(_send_frame(cid, "same-2", "hello?", ref=f"c{n}"))
        acks.append(await receive_until(ws, "message.ack"))

    # then the resends are acknowledged as duplicates of the originals
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert (again["ref"], again["id"], again["seq"]) == ("b", first["id"], first["seq"])
    assert again["conversation_id"] == cid
    assert [a["duplicate"] for a in acks] == [False, True, True]
    assert len({(a["id"], a["seq"], a["created_at"]) for a in acks}) == 1

    # and each is stored once, in one conversation, and shown to the agent once: every resend
    # rings again with the same seq (its first publish may have been lost), which the inbox keys on
    stored = await database_sync_to_async(_messages)(cid)
    visitor_lines = [m for m in stored if m.sender_key == f"v:{visitor.pk}"]
    assert [(m.client_msg_id, m.content) for m in visitor_lines] == [
        ("same-1", "is anyone there?"),
        ("same-2", "hello?"),
    ]
    assert await database_sync_to_async(_sessions_of)(visitor) == 1
    shown = Counter(
        (f["message"]["client_msg_id"], f["message"]["seq"])
        for f in await collect_until(
            agent_ws,
            lambda frames: (
                sum(
                    f["type"] == "message.new" and f["message"]["client_msg_id"] == "same-2"
                    for f in frames
                )
                == 3
            ),
        )
        if f["type"] == "message.new"
    )
    assert [key for key in shown if key[0] == "same-2"] == [("same-2", acks[0]["seq"])]
    await ws.disconnect()
    await agent_ws.disconnect()


def test_seq_is_gap_free_when_ten_threads_send_to_one_conversation(acme):
    # given an open chat
    chat = _chat(acme)
    start = _last_seq(chat.cid)

    # when ten threads, half of them the agent and half the visitor, send five messages each
    def send(n: int) -> list[int]:
        seqs = []
        for k in range(5):
            if n % 2:
                message, created = kefu_messages.agent_message_send(
                    user=chat.agent,
                    conversation_id=chat.cid,
                    content="a",
                    client_msg_id=f"t{n}-{k}",
                )
            else:
                message, created = kefu_messages.visitor_message_send(
                    visitor=chat.visitor,
                    conversation_id=chat.cid,
                    content="v",
                    client_msg_id=f"t{n}-{k}",
                )
            assert created
            seqs.append(message.seq)
        return seqs

    with capture_events():
        per_thread = in_threads("acme", send, list(range(10)), threads=10)

    # then the conversation reads 1, 2, 3, … with no gap and no repeat
    stored = _messages(chat.cid)
    assert [m.seq for m in stored] == list(range(1, start + 51))
    assert _last_seq(chat.cid) == start + 50
    assert sorted(seq for seqs in per_thread for seq in seqs) == list(range(start + 1, start + 51))
    # and each thread's own messages kept their order
    assert all(seqs == sorted(seqs) for seqs in per_thread)


def test_racing_copies_of_one_message_store_it_once_and_consume_no_seq(acme):
    # given an open chat
    chat = _chat(acme)
    start = _last_seq(chat.cid)

    # when ten threads each send the same five client_msg_ids (a client resending in a storm)
    def send(_n: int) -> list[tuple[str, int, int, bool]]:
        out = []
        for k in range(5):
            message, created = kefu_messages.visitor_message_send(
                visitor=chat.visitor,
                conversation_id=chat.cid,
                content=f"copy {k}",
                client_msg_id=f"storm-{k}",
            )
            out.append((message.client_msg_id, message.pk, message.seq, created))
        return out

    with capture_events():
        results = [r for rs in in_threads("acme", send, list(range(10)), threads=10) for r in rs]

    # then each message exists once, every copy was answered with it, and seq has no gap
    stored = _messages(chat.cid)
    assert [m.seq for m in stored] == list(range(1, start + 6))
    by_cmid = {m.client_msg_id: (m.pk, m.seq) for m in stored[start:]}
    assert sorted(by_cmid) == [f"storm-{k}" for k in range(5)]
    assert all((pk, seq) == by_cmid[cmid] for cmid, pk, seq, _ in results)
    assert Counter(cmid for cmid, *_, created in results if created) == dict.fromkeys(by_cmid, 1)


@pytest.mark.asyncio
async def test_message_to_a_conversation_the_sender_is_not_in_is_not_found(acme):
    # given a chat, another visitor of the same site and an agent who does not serve that chat
    chat = await database_sync_to_async(_chat)(acme)
    stranger_desk = await database_sync_to_async(make_desk)(acme, agents=1)
    _stranger, stranger_token = await database_sync_to_async(make_visitor)(stranger_desk)
    outsider_cookie = await database_sync_to_async(session_cookie)(acme, stranger_desk.agents[0])
    before = await database_sync_to_async(_messages)(chat.cid)
    stranger, _ = await connect(f"/ws/visitor/?token={stranger_token}", HOST)
    outsider, _ = await connect("/ws/agent/", HOST, cookie=outsider_cookie)

    # when both try to write into that conversation
    await stranger.send_json_to(_send_frame(chat.cid, "intrude-1", "let me in", ref="s"))
    stranger_error = await stranger.receive_json_from(timeout=WAIT_S)
    await outsider.send_json_to(_send_frame(chat.cid, "intrude-2", "me too", ref="o"))
    outsider_error = await receive_until(outsider, "error")

    # then both are told there is no such conversation
    for error, ref, cmid in (
        (stranger_error, "s", "intrude-1"),
        (outsider_error, "o", "intrude-2"),
    ):
        assert error["type"] == "error"
        assert (error["code"], error["ref"], error["client_msg_id"]) == ("not_found", ref, cmid)

    # and nothing was stored, not even the outsider's "first response"
    assert await database_sync_to_async(_messages)(chat.cid) == before
    assert (await database_sync_to_async(_session)(chat.cid)).first_response_at is None
    assert not await database_sync_to_async(_stored_with_prefix)("intrude-")
    await stranger.disconnect()
    await outsider.disconnect()


@pytest.mark.asyncio
async def test_closed_conversation_refuses_messages_from_both_sides(acme):
    # given a chat that the visitor has ended before the agent said anything
    chat = await database_sync_to_async(_chat)(acme)
    agent = await _agent(chat)
    visitor = await _visitor(chat)
    await visitor.send_json_to({"type": "conversation.close", "conversation_id": chat.cid})
    closed = await receive_until(agent, "conversation.closed")
    assert closed["closed_by"]["type"] == "visitor"
    before = await database_sync_to_async(_messages)(chat.cid)

    # when each side still sends into it
    await visitor.send_json_to(_send_frame(chat.cid, "late-v", "one more thing", ref="v"))
    visitor_error = await receive_until(visitor, "error")
    await agent.send_json_to(_send_frame(chat.cid, "late-a", "sorry, I was away", ref="a"))
    agent_error = await receive_until(agent, "error")

    # then both are refused and nothing is stored
    assert (visitor_error["code"], visitor_error["ref"]) == ("conversation_closed", "v")
    assert (agent_error["code"], agent_error["ref"]) == ("conversation_closed", "a")
    assert await database_sync_to_async(_messages)(chat.cid) == before
    assert (await database_sync_to_async(_session)(chat.cid)).first_response_at is None
    await agent.disconnect()
    await visitor.disconnect()


@pytest.mark.asyncio
async def test_history_fetch_pages_backwards_until_the_first_message(acme):
    # given a conversation of twenty-five messages (the visitor's 24 and one system line)
    chat = await database_sync_to_async(_chat)(acme, extra_visitor_messages=23)
    assert await database_sync_to_async(_last_seq)(chat.cid) == 25
    ws = await _visitor(chat)

    # when the visitor scrolls back ten at a time
    pages = []
    before = None
    while True:
        frame = {"type": "history.fetch", "conversation_id": chat.cid, "limit": 10, "ref": "h"}
        if before is not None:
            frame["before_seq"] = before
        await ws.send_json_to(frame)
        page = await receive_until(ws, "history.result")
        pages.append(([m["seq"] for m in page["messages"]], page["has_more"]))
        if not page["has_more"]:
            break
        before = page["messages"][0]["seq"]

    # then it gets the newest page first, each page oldest-first, and learns when it is done
    assert pages == [
        (list(range(16, 26)), True),
        (list(range(6, 16)), True),
        ([1, 2, 3, 4, 5], False),
    ]
    # and a page that ends exactly at the start says there is no more
    await ws.send_json_to(
        {"type": "history.fetch", "conversation_id": chat.cid, "before_seq": 11, "limit": 10}
    )
    exact = await receive_until(ws, "history.result")
    assert ([m["seq"] for m in exact["messages"]], exact["has_more"]) == (list(range(1, 11)), False)
    # and a limit over 100 is refused
    await ws.send_json_to({"type": "history.fetch", "conversation_id": chat.cid, "limit": 101})
    error = await receive_until(ws, "error")
    assert (error["code"], error["field"]) == ("invalid", "limit")
    await ws.disconnect()


@pytest.mark.asyncio
async def test_read_update_never_moves_a_receipt_backwards(acme):
    # given a chat of eight messages (the agent wrote 3 to 8) and a visitor who read up to 6
    chat = await database_sync_to_async(_chat)(acme, agent_messages=6)
    agent = await _agent(chat)
    visitor = await _visitor(chat)
    await visitor.send_json_to({"type": "read.update", "conversation_id": chat.cid, "read_seq": 6})
    moved = await receive_until(agent, "read.state")
    assert moved["member"]["key"] == f"v:{chat.visitor.pk}"
    assert (moved["delivered_seq"], moved["read_seq"]) == (6, 6)  # read implies delivered

    # when a stale tab of the visitor reports smaller receipts
    await visitor.send_json_to(
        {"type": "read.update", "conversation_id": chat.cid, "read_seq": 3, "delivered_seq": 2}
    )

    # then nothing moves and nobody is told
    assert await agent.receive_nothing(timeout=0.5)

    # when delivery moves on without reading, then reading goes beyond the end
    await visitor.send_json_to(
        {"type": "read.update", "conversation_id": chat.cid, "delivered_seq": 8}
    )
    delivered = await receive_until(agent, "read.state")
    await visitor.send_json_to(
        {"type": "read.update", "conversation_id": chat.cid, "read_seq": 999}
    )
    read = await receive_until(agent, "read.state")

    # then each moves forward only, and stops at the last message
    assert (delivered["delivered_seq"], delivered["read_seq"]) == (8, 6)
    assert (read["delivered_seq"], read["read_seq"]) == (8, 8)
    await agent.send_json_to({"type": "sync", "cursors": {}})
    result = await receive_until(agent, "sync.result")
    [conversation] = [c for c in result["conversations"] if c["id"] == chat.cid]
    [peer] = [p for p in conversation["peers"] if p["member"]["key"] == f"v:{chat.visitor.pk}"]
    assert (peer["delivered_seq"], peer["read_seq"]) == (8, 8)
    await agent.disconnect()
    await visitor.disconnect()


def test_new_message_events_go_to_exactly_the_participants(acme):
    # given an online agent and a new visitor
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    visitor, _ = make_visitor(desk)
    v_group, u_group = f"acme.v.{visitor.pk}", f"acme.u.{agent.pk}"

    with schema_context("acme"), capture_events() as events:
        # when the visitor writes first
        first, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id="ev-1"
        )
        # then only the visitor is told of its message (nobody else is in yet), then the agent
        # joins: both see the system line, both are told of the assignment, the agent its load
        seen = [(e["type"], sorted(groups)) for e, groups in events]
        assert seen == [
            ("message.new", [v_group]),
            ("message.new", sorted([u_group, v_group])),
            ("conversation.assigned", [u_group]),
            ("conversation.assigned", [v_group]),
            ("agent.status", [u_group]),
        ]
        assert events[0][0]["message"]["content"] == "hi"
        assert events[1][0]["message"]["sender"]["type"] == "system"

        # when the agent replies, and the visitor answers
        events.clear()
        reply, _ = kefu_messages.agent_message_send(
            user=agent, conversation_id=first.conversation_id, content="hello", client_msg_id="ev-2"
        )
        kefu_messages.visitor_message_send(
            visitor=visitor,
            conversation_id=first.conversation_id,
            content="thanks",
            client_msg_id="ev-3",
        )

        # then each message is one event, to exactly the visitor and the agent
        assert [(e["type"], sorted(groups)) for e, groups in events] == [
            ("message.new", sorted([u_group, v_group])),
            ("message.new", sorted([u_group, v_group])),
        ]
        assert events[0][0]["message"] == {
            "id": reply.pk,
            "conversation_id": first.conversation_id,
            "seq": 3,
            "client_msg_id": "ev-2",
            "sender": {"key": f"u:{agent.pk}", "type": "agent", "id": agent.pk, "name": agent.name},
            "msg_type": "text",
            "content": "hello",
            "attachment": None,
            "sticker": None,
            "mentions": [],
            "internal": False,
            "recalled": False,
            "ref_seq": None,
            "meta": {},
            "code": "",
            "params": {},
            "created_at": reply.created_at.isoformat(),
        }

        # when the visitor resends an old message, the same message rings again for the same
        # members (its first publish may have been lost with the ack); nothing new is stored
        events.clear()
        again, created = kefu_messages.visitor_message_send(
            visitor=visitor,
            conversation_id=first.conversation_id,
            content="thanks",
            client_msg_id="ev-3",
        )
        assert not created
        assert [(e["type"], e["message"]["seq"], sorted(g)) for e, g in events] == [
            ("message.new", again.seq, sorted([v_group, u_group]))
        ]

        # and once a member has left, events no longer go to them
        events.clear()
        im_conversations.participant_remove(
            conversation_id=first.conversation_id, member_key=agent.member_key
        )
        kefu_messages.visitor_message_send(
            visitor=visitor,
            conversation_id=first.conversation_id,
            content="still there?",
            client_msg_id="ev-4",
        )
        assert [(e["type"], groups) for e, groups in events] == [("message.new", [v_group])]


def _long_conversation(acme, total: int) -> Chat:
    """A chat whose conversation holds ``total`` messages (history inserted in bulk)."""
    chat = _chat(acme)
    with schema_context("acme"):
        start = Conversation.objects.get(pk=chat.cid).last_seq
        Message.objects.bulk_create(
            Message(
                conversation_id=chat.cid,
                seq=seq,
                sender_key=chat.agent.member_key,
                sender_type=Message.SenderType.AGENT,
                sender_user_id=chat.agent.pk,
                sender_name=chat.agent.name,
                content=f"line {seq}",
                client_msg_id=f"bulk-{chat.cid}-{seq}",
            )
            for seq in range(start + 1, total + 1)
        )
        Conversation.objects.filter(pk=chat.cid).update(last_seq=total)
    return chat


@pytest.mark.asyncio
async def test_sync_over_a_long_gap_returns_the_newest_part_and_history_fills_the_rest(acme):
    # given a conversation of 610 messages of which the visitor's client holds the first 10
    chat = await database_sync_to_async(_long_conversation)(acme, 610)
    ws = await _visitor(chat)

    # when it resyncs, and fetches older pages as the protocol says for truncated conversations
    await ws.send_json_to({"type": "sync", "cursors": {str(chat.cid): 10}})
    result = await receive_until(ws, "sync.result")
    assert result["truncated"] == [chat.cid]
    got = [m["seq"] for m in result["messages"]]
    oldest = got[0]
    while oldest > 11:
        await ws.send_json_to(
            {
                "type": "history.fetch",
                "conversation_id": chat.cid,
                "before_seq": oldest,
                "limit": 100,
            }
        )
        page = [m["seq"] for m in (await receive_until(ws, "history.result"))["messages"]]
        got = page + got
        oldest = page[0]

    # then it ends up with every message after its cursor, once, up to the newest
    assert result["messages"][-1]["seq"] == 610
    assert [seq for seq in got if seq > 10] == list(range(11, 611))
    await ws.disconnect()


async def _sync_pages(ws, cursors: dict[str, int]) -> list[tuple[int, dict]]:
    """Every page of one ``sync`` (following ``next``), each with its encoded size in bytes."""
    pages, page = [], None
    while True:
        frame = {"type": "sync", "cursors": cursors, "ref": "s"}
        if page is not None:
            frame["page"] = page
        await ws.send_json_to(frame)
        raw = await ws.receive_from(timeout=WAIT_S)
        result = json.loads(raw)
        assert result["type"] == "sync.result", result
        pages.append((len(raw.encode()), result))
        page = result["next"]
        if page is None:
            return pages


@pytest.mark.asyncio
async def test_a_long_sync_comes_in_pages_within_the_budget_each_message_once(acme, settings):
    # given a visitor who holds the first 10 of 610 messages, and pages of at most 8 KiB
    settings.WEIYU_SYNC_PAGE_BYTES = 8 * 1024
    chat = await database_sync_to_async(_long_conversation)(acme, 610)
    ws = await _visitor(chat)

    # when it resyncs and follows every page
    pages = await _sync_pages(ws, {str(chat.cid): 10})

    # then no page is over the budget (beside its few bytes of frame), each carries something,
    # and together they bring the newest 500 once, in order, the cut named once
    assert len(pages) > 10
    assert all(size <= 8 * 1024 + 200 for size, _page in pages)
    assert all(page["messages"] or page["conversations"] for _size, page in pages)
    seqs = [m["seq"] for _size, page in pages for m in page["messages"]]
    assert seqs == list(range(111, 611))
    assert [cid for _size, page in pages for cid in page["truncated"]] == [chat.cid]
    assert [c["id"] for _size, page in pages for c in page["conversations"]] == [chat.cid]

    # and a history page is cut to the budget too, newest first, saying there is more
    await ws.send_json_to(
        {"type": "history.fetch", "conversation_id": chat.cid, "before_seq": 111, "limit": 100}
    )
    raw = await ws.receive_from(timeout=WAIT_S)
    history = json.loads(raw)
    got = [m["seq"] for m in history["messages"]]
    assert len(raw.encode()) <= 8 * 1024 + 200
    assert 0 < len(got) < 100
    assert got == list(range(111 - len(got), 111))
    assert history["has_more"] is True

    # and a page the server did not give is refused
    for bad in ["x", 5, "1:2:3", "0", "-1", "1:" + "9" * 30]:
        await ws.send_json_to({"type": "sync", "cursors": {}, "page": bad, "ref": "bad"})
        error = await receive_until(ws, "error")
        assert (error["code"], error["field"], error["ref"]) == ("invalid", "page", "bad")
    await ws.disconnect()


@pytest.mark.asyncio
async def test_sync_pages_split_between_conversations_list_each_once(acme, settings):
    # given an agent serving four conversations of three messages each, and tiny pages
    def serve() -> tuple[User, bytes, list[int]]:
        desk = make_desk(acme, agents=1)
        agent = desk.agents[0]
        with schema_context("acme"):
            cids = [
                customer_conversation(
                    desk, agent, lines=[("visitor", "hi"), ("agent", "hello"), ("visitor", "ok")]
                ).conversation_id
                for _ in range(4)
            ]
        return agent, session_cookie(acme, agent), cids

    _agent_user, cookie, cids = await database_sync_to_async(serve)()
    settings.WEIYU_SYNC_PAGE_BYTES = 300
    ws, _hello = await connect("/ws/agent/", HOST, cookie=cookie)

    # when its socket syncs from cursor 0 of each
    pages = await _sync_pages(ws, {str(cid): 0 for cid in cids})

    # then every conversation is listed once, before its messages, and every message comes once
    listed = [c["id"] for _size, page in pages for c in page["conversations"]]
    assert listed == sorted(cids)
    seen: list[int] = []
    got: list[tuple[int, int]] = []
    for _size, page in pages:
        seen += [c["id"] for c in page["conversations"]]
        for m in page["messages"]:
            assert m["conversation_id"] in seen
            got.append((m["conversation_id"], m["seq"]))
    assert got == [(cid, seq) for cid in sorted(cids) for seq in (1, 2, 3)]
    await ws.disconnect()


@pytest.mark.asyncio
async def test_sync_messages_are_ascending_by_conversation_then_seq(acme):
    # given an agent who served two visitors; the older chat was ended first, then the newer one
    def two_closed_chats() -> tuple[bytes, int, int]:
        desk = make_desk(acme, agents=1)
        agent = desk.agents[0]
        cids = []
        with schema_context("acme"), capture_events():
            for n in range(2):
                visitor, _ = make_visitor(desk)
                message, _ = kefu_messages.visitor_message_send(
                    visitor=visitor, conversation_id=None, content="hi", client_msg_id=f"o{n}"
                )
                cids.append(message.conversation_id)
            for cid in cids:
                sessions.conversation_close_by_member(
                    conversation_id=cid, sender=senders.agent_sender(agent)
                )
        return session_cookie(acme, agent), cids[0], cids[1]

    cookie, older, newer = await database_sync_to_async(two_closed_chats)()
    ws, _ = await connect("/ws/agent/", HOST, cookie=cookie)

    # when the agent syncs holding only the first message of each
    await ws.send_json_to({"type": "sync", "cursors": {str(older): 1, str(newer): 1}})
    result = await receive_until(ws, "sync.result")

    # then the messages come ascending by conversation, then by seq
    keys = [(m["conversation_id"], m["seq"]) for m in result["messages"]]
    assert {cid for cid, _ in keys} == {older, newer}
    assert keys == sorted(keys)
    await ws.disconnect()


async def test_a_resend_rings_again_when_the_first_publish_was_lost(acme):
    # given an agent serving a visitor, and a visitor message stored whose publish was lost (the
    # web process died between its commit and its publish; here: captured, never sent)
    desk = await database_sync_to_async(make_desk)(acme, agents=1)
    visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _ = await connect(f"/ws/visitor/?token={token}", HOST)
    await ws.send_json_to(_send_frame(None, "open-1", "hello", ref="a"))
    cid = (await receive_until(ws, "message.ack"))["conversation_id"]

    def store_silently() -> Message:
        with schema_context("acme"), capture_events():
            v = Visitor.objects.get(pk=visitor.pk)
            message, _created = kefu_messages.visitor_message_send(
                visitor=v, conversation_id=cid, content="my order is late", client_msg_id="lost-1"
            )
            return message

    stored = await database_sync_to_async(store_silently)()
    cookie = await database_sync_to_async(session_cookie)(acme, desk.agents[0])
    agent_ws, _ = await connect("/ws/agent/", HOST, cookie=cookie)
    try:
        # when the visitor, who never got the ack, resends it
        await ws.send_json_to(_send_frame(cid, "lost-1", "my order is late", ref="b"))
        ack = await receive_until(ws, "message.ack")
        # then it is acked as the stored message and the agent gets it live, without a reconnect
        assert (ack["duplicate"], ack["seq"]) == (True, stored.seq)
        frame = await receive_until(agent_ws, "message.new")
        while frame["message"]["client_msg_id"] != "lost-1":
            frame = await receive_until(agent_ws, "message.new")
        assert (frame["message"]["seq"], frame["message"]["content"]) == (
            stored.seq,
            "my order is late",
        )
    finally:
        await ws.disconnect()
        await agent_ws.disconnect()
