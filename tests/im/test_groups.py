"""Team messaging (IM-1, IM-2, IM-4, IM-5, IM-6, IM-8, IM-10, IM-11): 1:1 and group chats, member
management and its permissions, recall, mentions, internal notes, read counts and the caller's
own pin / do-not-disturb / archive — through the services, the REST API and the websocket."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from im import selectors
from im.models import Conversation, Message, MessagingSettings, Participant
from im.senders import Sender
from im.services import conversations as im_conversations
from im.services import groups
from im.services import messages as im_messages
from im.services import receipts as im_receipts
from kefu.services import messages as kefu_messages
from org.models import User
from tests.conftest import PASSWORD, make_desk, make_visitor, session_cookie, unique
from tests.ws import collect_until, connect, has_types, receive_until
from weiyu.errors import ServiceError
from weiyu.realtime import capture_events

HOST = "acme.localhost"


def _user(name: str = "staff") -> User:
    username = unique(name)
    return User.objects.create_user(
        username=username, password=PASSWORD, role="staff", display_name=username.title()
    )


def _sender(user: User) -> Sender:
    return Sender(key=user.member_key, type="agent", name=user.name, user_id=user.pk)


def _send(user: User, cid: int, content: str, **extra) -> Message:
    message, _created = im_messages.message_send(
        conversation_id=cid, sender=_sender(user), content=content, **extra
    )
    return message


def _group(owner: User, *members: User, title: str = "Team") -> Conversation:
    return groups.group_create(creator=owner, title=title, member_ids=[m.pk for m in members])


def _api(user: User, tenant_schema: str = "acme") -> Client:
    """A signed-in browser of ``user`` on acme."""
    from tenants.models import Tenant

    client = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)
    name, value = (
        session_cookie(Tenant.objects.get(schema_name=tenant_schema), user).decode().split("=", 1)
    )
    client.cookies[name] = value
    return client


def _json(client: Client, method: str, path: str, body: object = None):
    response = getattr(client, method)(
        path, data=json.dumps(body) if body is not None else None, content_type="application/json"
    )
    return response.status_code, (response.json() if response.content else None)


# --- 1:1 ------------------------------------------------------------------------------------------


def test_direct_chat_is_one_per_pair_and_announced_to_both(acme):
    # given
    with schema_context("acme"):
        ann, ben = _user("ann"), _user("ben")
        # when
        with capture_events() as events:
            first = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
        again = groups.direct_get_or_create(user=ben, other_user_id=ann.pk)
        # then
        assert again.pk == first.pk
        assert first.kind == "direct"
        assert sorted(g[0] for _e, g in events) == sorted([f"acme.u.{ann.pk}", f"acme.u.{ben.pk}"])
        assert {e["type"] for e, _g in events} == {"conversation.added"}
        seen_by_ann = selectors.conversation_payload_for_member(
            conversation_id=first.pk, member_key=ann.member_key
        )
        assert [p["member"]["name"] for p in seen_by_ann["peers"]] == [ben.name]
        with pytest.raises(ServiceError) as exc:
            groups.direct_get_or_create(user=ann, other_user_id=ann.pk)
        assert exc.value.code == "invalid"


# --- groups: creation, limits, permissions ------------------------------------------------------


def test_group_create_makes_creator_owner_and_posts_a_system_line(acme):
    with schema_context("acme"):
        owner, a, b = _user("own"), _user("a"), _user("b")
        group = _group(owner, a, b, title="售前讨论组")
        members = groups.group_members_list(actor=a, conversation_id=group.pk)
        assert [(p.member_key, p.role) for p in members] == [
            (owner.member_key, "owner"),
            (a.member_key, "member"),
            (b.member_key, "member"),
        ]
        line = Message.objects.get(conversation=group, seq=1)
        assert line.msg_type == "system"
        assert "售前讨论组" in line.content
        payload = selectors.conversation_payload_for_member(
            conversation_id=group.pk, member_key=b.member_key
        )
        assert payload["member_count"] == 3
        assert payload["group"]["owner"]["key"] == owner.member_key
        assert payload["peers"] == []
        assert payload["role"] == "member"


def test_group_size_limit_is_enforced_and_nobody_is_added_past_it(acme):
    with schema_context("acme"):
        settings_row = MessagingSettings.current()
        before = settings_row.group_max_members
        settings_row.group_max_members = 3
        settings_row.save()
        try:
            owner, a, b, c = _user(), _user(), _user(), _user()
            with pytest.raises(ServiceError) as exc:
                _group(owner, a, b, c)
            assert exc.value.code == "conflict"
            group = _group(owner, a)
            with pytest.raises(ServiceError) as exc:
                groups.group_members_add(
                    actor=owner, conversation_id=group.pk, user_ids=[b.pk, c.pk]
                )
            assert exc.value.code == "conflict"
            assert Participant.objects.filter(conversation=group, left_at__isnull=True).count() == 2
            groups.group_members_add(actor=owner, conversation_id=group.pk, user_ids=[b.pk])
            assert Participant.objects.filter(conversation=group, left_at__isnull=True).count() == 3
        finally:
            settings_row.group_max_members = before
            settings_row.save()


def test_only_owner_and_admins_manage_members(acme):
    with schema_context("acme"):
        owner, admin, m1, m2, outsider = _user(), _user(), _user(), _user(), _user()
        group = _group(owner, admin, m1, m2)
        # a member cannot invite or remove
        for call in (
            lambda: groups.group_members_add(
                actor=m1, conversation_id=group.pk, user_ids=[outsider.pk]
            ),
            lambda: groups.group_member_remove(actor=m1, conversation_id=group.pk, user_id=m2.pk),
        ):
            with pytest.raises(ServiceError) as exc:
                call()
            assert exc.value.code == "forbidden"
        # the owner appoints an admin; only the owner may
        with pytest.raises(ServiceError):
            groups.group_member_update(
                actor=m1, conversation_id=group.pk, user_id=m2.pk, role="admin"
            )
        groups.group_member_update(
            actor=owner, conversation_id=group.pk, user_id=admin.pk, role="admin"
        )
        # an admin removes a member but not another admin or the owner
        groups.group_members_add(actor=admin, conversation_id=group.pk, user_ids=[outsider.pk])
        groups.group_member_remove(actor=admin, conversation_id=group.pk, user_id=outsider.pk)
        with pytest.raises(ServiceError) as exc:
            groups.group_member_remove(actor=admin, conversation_id=group.pk, user_id=owner.pk)
        assert exc.value.code == "forbidden"
        # a removed member can no longer send or read
        with pytest.raises(ServiceError) as exc:
            _send(outsider, group.pk, "still here?")
        assert exc.value.code == "not_found"
        with pytest.raises(ServiceError):
            selectors.participant_get(conversation_id=group.pk, member_key=outsider.member_key)
        # a member leaves; the owner must transfer first
        groups.group_member_remove(actor=m2, conversation_id=group.pk, user_id=m2.pk)
        with pytest.raises(ServiceError) as exc:
            groups.group_member_remove(actor=owner, conversation_id=group.pk, user_id=owner.pk)
        assert exc.value.code == "conflict"
        groups.group_owner_transfer(actor=owner, conversation_id=group.pk, user_id=admin.pk)
        roles = dict(
            Participant.objects.filter(conversation=group, left_at__isnull=True).values_list(
                "member_key", "role"
            )
        )
        assert roles[admin.member_key] == "owner"
        assert roles[owner.member_key] == "admin"
        groups.group_member_remove(actor=owner, conversation_id=group.pk, user_id=owner.pk)
        texts = list(
            Message.objects.filter(conversation=group, msg_type="system").values_list(
                "content", flat=True
            )
        )
        assert any(owner.name in t and admin.name in t for t in texts)


def test_muted_member_and_muted_group_cannot_send(acme):
    with schema_context("acme"):
        owner, admin, member = _user(), _user(), _user()
        group = _group(owner, admin, member)
        groups.group_member_update(
            actor=owner, conversation_id=group.pk, user_id=admin.pk, role="admin"
        )
        groups.group_member_update(
            actor=admin, conversation_id=group.pk, user_id=member.pk, muted_minutes=10
        )
        last = Conversation.objects.get(pk=group.pk).last_seq
        with pytest.raises(ServiceError) as exc:
            _send(member, group.pk, "let me talk", client_msg_id=unique("m"))
        assert exc.value.code == "forbidden"
        assert Conversation.objects.get(pk=group.pk).last_seq == last  # nothing stored
        groups.group_member_update(
            actor=admin, conversation_id=group.pk, user_id=member.pk, muted_minutes=0
        )
        _send(member, group.pk, "thanks")
        groups.group_update(actor=owner, conversation_id=group.pk, changes={"all_muted": True})
        with pytest.raises(ServiceError) as exc:
            _send(member, group.pk, "hello?")
        assert exc.value.code == "forbidden"
        _send(admin, group.pk, "admins may still speak")


def test_dissolved_group_keeps_history_and_takes_no_messages(acme):
    with schema_context("acme"):
        owner, member = _user(), _user()
        group = _group(owner, member)
        _send(member, group.pk, "before")
        with pytest.raises(ServiceError):
            groups.group_dissolve(actor=member, conversation_id=group.pk)
        groups.group_dissolve(actor=owner, conversation_id=group.pk)
        with pytest.raises(ServiceError) as exc:
            _send(member, group.pk, "after")
        assert exc.value.code == "conversation_closed"
        rows, _more = selectors.messages_before(conversation_id=group.pk, before_seq=None, limit=10)
        assert "before" in [m.content for m in rows]


# --- recall ---------------------------------------------------------------------------------------


def test_recall_own_message_within_window_and_replay_on_sync(acme):
    with schema_context("acme"):
        ann, ben = _user(), _user()
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
        original = _send(ann, chat.pk, "wrong secret 口令")
        with pytest.raises(ServiceError) as exc:
            im_messages.message_recall(
                conversation_id=chat.pk,
                message_id=original.pk,
                sender=_sender(ben),
                client_msg_id=unique("r"),
            )
        assert exc.value.code == "forbidden"
        recall, created = im_messages.message_recall(
            conversation_id=chat.pk,
            message_id=original.pk,
            sender=_sender(ann),
            client_msg_id="rc-1",
        )
        assert created
        assert recall.msg_type == "recall"
        assert recall.ref_seq == original.seq
        again, created = im_messages.message_recall(
            conversation_id=chat.pk,
            message_id=original.pk,
            sender=_sender(ann),
            client_msg_id="rc-1",
        )
        assert (again.pk, created) == (recall.pk, False)
        rows = selectors.messages_after(conversation_id=chat.pk, after_seq=0, limit=10)
        from im.serializers import message_payload

        shown = {m.seq: message_payload(m) for m in rows}
        assert shown[original.seq]["recalled"] is True
        assert shown[original.seq]["content"] == ""
        assert shown[recall.seq]["ref_seq"] == original.seq
        stale = _send(ann, chat.pk, "old one")
        Message.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=3))
        with pytest.raises(ServiceError) as exc:
            im_messages.message_recall(
                conversation_id=chat.pk,
                message_id=stale.pk,
                sender=_sender(ann),
                client_msg_id=unique("r"),
            )
        assert exc.value.code == "forbidden"


async def test_recall_over_websocket_reaches_the_other_side_and_an_offline_client(acme):
    # given: Ann and Ben in a 1:1 chat, Ben connected, Ben's second device offline
    def setup():
        with schema_context("acme"):
            ann, ben = _user(), _user()
            chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
            first = _send(ann, chat.pk, "hello")
            return ann, ben, chat.pk, first

    ann, ben, cid, first = await database_sync_to_async(setup)()
    ws_ann, _ = await connect("/ws/agent/", HOST, cookie=await _cookie(acme, ann))
    ws_ben, _ = await connect("/ws/agent/", HOST, cookie=await _cookie(acme, ben))
    try:
        # when
        await ws_ann.send_json_to(
            {
                "type": "message.recall",
                "conversation_id": cid,
                "message_id": first.pk,
                "client_msg_id": "rc-ws",
            }
        )
        ack = await receive_until(ws_ann, "message.ack")
        # then
        assert ack["seq"] == first.seq + 1
        frames = await collect_until(ws_ben, has_types("message.new"))
        news = [f["message"] for f in frames if f["type"] == "message.new"]
        assert [(m["msg_type"], m["ref_seq"]) for m in news] == [("recall", first.seq)]
        # a device that was offline learns it from sync
        ws_other, _ = await connect("/ws/agent/", HOST, cookie=await _cookie(acme, ben))
        await ws_other.send_json_to({"type": "sync", "cursors": {str(cid): 0}})
        result = await receive_until(ws_other, "sync.result")
        mine = [m for m in result["messages"] if m["conversation_id"] == cid]
        assert [(m["seq"], m["recalled"], m["content"]) for m in mine] == [
            (first.seq, True, ""),
            (first.seq + 1, False, ""),
        ]
        await ws_other.disconnect()
    finally:
        await ws_ann.disconnect()
        await ws_ben.disconnect()


async def _cookie(tenant, user) -> bytes:
    return await database_sync_to_async(session_cookie)(tenant, user)


# --- mentions and internal notes -----------------------------------------------------------------


def test_mentions_mark_the_mentioned_and_all_is_for_admins(acme):
    with schema_context("acme"):
        owner, a, b, outsider = _user(), _user(), _user(), _user()
        group = _group(owner, a, b)
        message = _send(a, group.pk, f"@{b.name} please look", mentions=[b.member_key])
        assert message.mentions == [b.member_key]
        seen = selectors.conversation_payload_for_member(
            conversation_id=group.pk, member_key=b.member_key
        )
        assert seen["mentioned"] is True
        assert (
            selectors.conversation_payload_for_member(
                conversation_id=group.pk, member_key=owner.member_key
            )["mentioned"]
            is False
        )
        im_receipts.receipt_update(
            conversation_id=group.pk, member_key=b.member_key, read_seq=message.seq
        )
        assert (
            selectors.conversation_payload_for_member(
                conversation_id=group.pk, member_key=b.member_key
            )["mentioned"]
            is False
        )
        for bad in ([outsider.member_key], ["v:1"], "u:1"):
            with pytest.raises(ServiceError) as exc:
                _send(a, group.pk, "hey", mentions=bad)
            assert exc.value.code == "invalid"
        with pytest.raises(ServiceError) as exc:
            _send(a, group.pk, "@all", mentions=["all"])
        assert exc.value.code == "forbidden"
        everyone = _send(owner, group.pk, "@all meeting", mentions=["all"])
        assert all(
            p.mention_seq == everyone.seq
            for p in Participant.objects.filter(conversation=group).exclude(
                member_key=owner.member_key
            )
        )


def test_internal_note_never_reaches_the_visitor_and_pulls_in_a_colleague(acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"), capture_events() as events:
        agent = desk.agents[0]
        colleague = _user("expert")
        first, _ = kefu_messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content="my order is late",
            client_msg_id=unique("v"),
        )
        cid = first.conversation_id

        def visitor_unread() -> int:
            seen = selectors.participant_get(conversation_id=cid, member_key=visitor.member_key)
            payloads = selectors.conversation_payloads(
                participants=[seen], member_key=visitor.member_key
            )
            return payloads[0]["unread"]

        before = visitor_unread()
        events.clear()
        note, _ = kefu_messages.agent_message_send(
            user=agent,
            conversation_id=cid,
            content=f"@{colleague.name} can you check the warehouse?",
            client_msg_id=unique("n"),
            internal=True,
            mentions=[colleague.member_key],
        )
        assert note.internal
        news = [(e, g) for e, g in events if e["type"] == "message.new"]
        assert len(news) == 1
        assert sorted(news[0][1]) == sorted([f"acme.u.{agent.pk}", f"acme.u.{colleague.pk}"])
        added = [(e, g) for e, g in events if e["type"] == "conversation.added"]
        assert [g for _e, g in added] == [[f"acme.u.{colleague.pk}"]]
        # the visitor's views never show it
        rows = selectors.messages_after(
            conversation_id=cid, after_seq=0, limit=50, include_internal=False
        )
        assert note.pk not in [m.pk for m in rows]
        last = selectors.last_messages(conversation_ids=[cid], include_internal=False)
        assert not last[cid].internal
        assert last[cid].pk != note.pk
        # and its unread count does not count the note: only the agent's reply below will
        assert visitor_unread() == before
        # the colleague now sees the conversation and may answer in notes
        selectors.participant_get(conversation_id=cid, member_key=colleague.member_key)
        # a public reply still reaches the visitor
        events.clear()
        kefu_messages.agent_message_send(
            user=agent, conversation_id=cid, content="We are checking.", client_msg_id=unique("p")
        )
        news = [g for e, g in events if e["type"] == "message.new"]
        assert f"acme.v.{visitor.pk}" in news[0]
        assert visitor_unread() == before + 1
        group = _group(agent, colleague)
        with pytest.raises(ServiceError) as exc:
            _send(agent, group.pk, "note", internal=True)
        assert exc.value.code == "invalid"


# --- receipts, settings ---------------------------------------------------------------------------


def test_group_read_counts_and_read_state_goes_only_to_the_reader_and_senders(acme):
    with schema_context("acme"):
        owner, a, b, c = _user(), _user(), _user(), _user()
        group = _group(owner, a, b, c)
        m1 = _send(owner, group.pk, "one")
        m2 = _send(a, group.pk, "two")
        with capture_events() as events:
            im_receipts.receipt_update(
                conversation_id=group.pk, member_key=b.member_key, read_seq=m2.seq
            )
        ((event, recipients),) = events
        assert event["type"] == "read.state"
        assert sorted(recipients) == sorted(
            [f"acme.u.{b.pk}", f"acme.u.{owner.pk}", f"acme.u.{a.pk}"]
        )
        member_count, counts = selectors.receipt_counts(
            conversation_id=group.pk, member_key=owner.member_key, seqs=[m1.seq, m2.seq]
        )
        assert member_count == 4
        # readers of m1 other than the owner: a (sent m2 after it) and b
        assert counts[m1.seq]["read"] == 2
        # readers of m2 other than the owner: a (its sender) and b; c has read nothing
        assert counts[m2.seq]["read"] == 2
        with pytest.raises(ServiceError):
            selectors.receipt_counts(
                conversation_id=group.pk, member_key=_user().member_key, seqs=[1]
            )


def test_pin_mute_archive_are_personal_and_reach_all_my_tabs(acme):
    with schema_context("acme"):
        ann, ben = _user(), _user()
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
        with capture_events() as events:
            im_conversations.member_settings_update(
                conversation_id=chat.pk,
                member_key=ann.member_key,
                pinned=True,
                notifications_off=True,
            )
        assert [(e["type"], g) for e, g in events] == [("member.state", [f"acme.u.{ann.pk}"])]
        assert events[0][0]["pinned"] is True
        assert events[0][0]["notifications_off"] is True
        mine = selectors.conversation_payload_for_member(
            conversation_id=chat.pk, member_key=ann.member_key
        )
        theirs = selectors.conversation_payload_for_member(
            conversation_id=chat.pk, member_key=ben.member_key
        )
        assert (mine["pinned"], mine["notifications_off"]) == (True, True)
        assert (theirs["pinned"], theirs["notifications_off"]) == (False, False)
        im_conversations.member_settings_update(
            conversation_id=chat.pk, member_key=ann.member_key, archived=True
        )
        assert selectors.conversation_payload_for_member(
            conversation_id=chat.pk, member_key=ann.member_key
        )["archived_at"]
        with pytest.raises(ServiceError):
            im_conversations.member_settings_update(
                conversation_id=chat.pk, member_key=ann.member_key, pinned="yes"
            )


# --- REST API --------------------------------------------------------------------------------------


def test_group_api_round_trip_with_clear_errors(acme):
    with schema_context("acme"):
        owner, a, b = _user(), _user(), _user()
    client = _api(owner)
    status, body = _json(
        client, "post", "/api/v1/im/groups", {"title": "Launch", "member_ids": [a.pk]}
    )
    assert status == 201, body
    gid = body["id"]
    assert body["kind"] == "group"
    assert body["role"] == "owner"
    assert body["member_count"] == 2
    status, body = _json(client, "post", f"/api/v1/im/groups/{gid}/members", {"user_ids": [b.pk]})
    assert status == 200
    assert [m["member"]["key"] for m in body["members"]] == [b.member_key]
    status, body = _json(
        client, "patch", f"/api/v1/im/groups/{gid}", {"announcement": "Ship Friday"}
    )
    assert status == 200
    assert body["group"]["announcement"] == "Ship Friday"
    status, body = _json(
        client, "patch", f"/api/v1/im/groups/{gid}/members/{a.pk}", {"role": "admin"}
    )
    assert status == 200
    assert body["role"] == "admin"
    status, body = _json(client, "get", f"/api/v1/im/groups/{gid}/members")
    assert status == 200
    assert body["count"] == 3
    # errors are JSON with a code
    status, body = _json(client, "post", "/api/v1/im/groups", {"title": "", "member_ids": []})
    assert (status, body["error"], body["field"]) == (400, "invalid", "title")
    status, body = _json(client, "patch", f"/api/v1/im/groups/{gid}", {"colour": "red"})
    assert (status, body["error"]) == (400, "invalid")
    member_client = _api(b)
    status, body = _json(member_client, "delete", f"/api/v1/im/groups/{gid}/members/{a.pk}")
    assert (status, body["error"]) == (403, "forbidden")
    status, body = _json(member_client, "delete", f"/api/v1/im/groups/{gid}")
    assert (status, body["error"]) == (403, "forbidden")
    status, body = _json(
        member_client, "patch", f"/api/v1/im/conversations/{gid}/settings", {"pinned": True}
    )
    assert status == 200
    assert body["pinned"] is True
    # direct chat
    status, body = _json(
        member_client, "post", "/api/v1/im/conversations/direct", {"user_id": owner.pk}
    )
    assert status == 200
    assert body["kind"] == "direct"
    status, again = _json(client, "post", "/api/v1/im/conversations/direct", {"user_id": b.pk})
    assert again["id"] == body["id"]
    # dissolve
    status, _ = _json(client, "delete", f"/api/v1/im/groups/{gid}")
    assert status == 204
    status, body = _json(member_client, "get", f"/api/v1/im/conversations/{gid}")
    assert status == 200
    assert body["closed"] is True


def test_group_api_refuses_strangers_and_other_tenants(acme, globex):
    with schema_context("acme"):
        owner, a, stranger = _user(), _user(), _user()
        group = _group(owner, a)
    status, body = _json(_api(stranger), "get", f"/api/v1/im/groups/{group.pk}/members")
    assert (status, body["error"]) == (404, "not_found")
    status, body = _json(_api(stranger), "get", f"/api/v1/im/conversations/{group.pk}")
    assert status == 404
    anonymous = Client(HTTP_HOST=HOST)
    response = anonymous.get(f"/api/v1/im/conversations/{group.pk}")
    assert response.status_code in (401, 403)
    # a globex session is not valid on acme, and globex users never see acme's group
    with schema_context("globex"):
        g_user = _user("globex")
    cookie = session_cookie(globex, g_user).decode()
    name, value = cookie.split("=", 1)
    intruder = Client(HTTP_HOST=HOST)
    intruder.cookies[name] = value
    assert intruder.get(f"/api/v1/im/conversations/{group.pk}").status_code in (401, 403)


async def test_new_member_gets_the_group_live_and_sends_over_websocket(acme):
    def setup():
        with schema_context("acme"):
            owner, newcomer = _user(), _user()
            return owner, newcomer, _group(owner)

    owner, newcomer, group = await database_sync_to_async(setup)()
    ws, _ = await connect("/ws/agent/", HOST, cookie=await _cookie(acme, newcomer))
    try:

        def invite():
            with schema_context("acme"):
                groups.group_members_add(
                    actor=owner, conversation_id=group.pk, user_ids=[newcomer.pk]
                )

        await database_sync_to_async(invite)()
        added = await receive_until(ws, "conversation.added")
        assert added["conversation"]["id"] == group.pk
        assert added["conversation"]["role"] == "member"
        await ws.send_json_to(
            {
                "type": "message.send",
                "conversation_id": group.pk,
                "client_msg_id": "hi-1",
                "content": "大家好",
            }
        )
        ack = await receive_until(ws, "message.ack")
        assert ack["duplicate"] is False
        await ws.send_json_to(
            {"type": "receipts.fetch", "conversation_id": group.pk, "seqs": [ack["seq"]]}
        )
        result = await receive_until(ws, "receipts.result")
        assert result["member_count"] == 2
        assert result["counts"][str(ack["seq"])] == {"read": 0, "delivered": 0}
        await ws.send_json_to(
            {"type": "receipts.fetch", "conversation_id": group.pk, "seqs": "all"}
        )
        error = await receive_until(ws, "error")
        assert (error["code"], error["field"]) == ("invalid", "seqs")
    finally:
        await ws.disconnect()


async def test_group_message_reaches_every_socket_once_and_a_removed_member_gets_nothing_more(acme):
    # given: a group of four; every member connected, Cai on two devices
    def setup():
        with schema_context("acme"):
            owner, ann, ben, cai = _user(), _user(), _user(), _user()
            return owner, ann, ben, cai, _group(owner, ann, ben, cai).pk

    owner, ann, ben, cai, gid = await database_sync_to_async(setup)()
    sockets = {}
    for name, user in (("owner", owner), ("ann", ann), ("ben", ben), ("cai", cai), ("cai2", cai)):
        sockets[name], _ = await connect("/ws/agent/", HOST, cookie=await _cookie(acme, user))

    async def say(ref: str, content: str) -> int:
        await sockets["owner"].send_json_to(
            {
                "type": "message.send",
                "conversation_id": gid,
                "client_msg_id": ref,
                "content": content,
            }
        )
        return (await receive_until(sockets["owner"], "message.ack"))["seq"]

    def news(frames: list[dict]) -> list[str]:
        return [f["message"]["content"] for f in frames if f["type"] == "message.new"]

    try:
        # when the owner writes to the group
        await say("g-1", "早上好")
        # then each socket of every member has it, once
        for name in ("ann", "ben", "cai", "cai2"):
            frames = await collect_until(sockets[name], lambda fs: "早上好" in news(fs))
            assert news(frames).count("早上好") == 1, name

        # when Cai is removed and the owner writes twice more
        def remove():
            with schema_context("acme"):
                groups.group_member_remove(actor=owner, conversation_id=gid, user_id=cai.pk)

        await database_sync_to_async(remove)()
        await say("g-2", "after Cai left")
        await say("g-3", "still here?")
        # then the others get both, and neither of Cai's devices gets either
        for name in ("ann", "ben"):
            frames = await collect_until(sockets[name], lambda fs: "still here?" in news(fs))
            assert news(frames)[-2:] == ["after Cai left", "still here?"], name
        for name in ("cai", "cai2"):
            frames = await collect_until(
                sockets[name], lambda fs: any(f["type"] == "conversation.removed" for f in fs)
            )
            assert not {"after Cai left", "still here?"} & set(news(frames)), name
    finally:
        for ws in sockets.values():
            await ws.disconnect()


def test_participant_add_brings_back_a_member_who_left_and_leaves_an_active_one_as_is(acme):
    with schema_context("acme"):
        # given a group with an admin and a muted member who then left
        owner, admin, gone = _user(), _user(), _user()
        group = _group(owner, admin, gone)
        Participant.objects.filter(conversation=group, member_key=admin.member_key).update(
            role=Participant.Role.ADMIN
        )
        muted = timezone.now() + timedelta(hours=1)
        Participant.objects.filter(conversation=group, member_key=gone.member_key).update(
            muted_until=muted
        )
        im_conversations.participant_remove(conversation_id=group.pk, member_key=gone.member_key)
        joined = Participant.objects.get(conversation=group, member_key=gone.member_key).joined_at
        # when both are added again as plain members, and a newcomer too
        back = im_conversations.participant_add(
            conversation_id=group.pk,
            member_key=gone.member_key,
            name=gone.name,
            role=Participant.Role.MEMBER,
            user_id=gone.pk,
        )
        kept = im_conversations.participant_add(
            conversation_id=group.pk,
            member_key=admin.member_key,
            name=admin.name,
            role=Participant.Role.MEMBER,
            user_id=admin.pk,
        )
        newcomer = _user()
        new = im_conversations.participant_add(
            conversation_id=group.pk,
            member_key=newcomer.member_key,
            name=newcomer.name,
            role=Participant.Role.MEMBER,
            user_id=newcomer.pk,
        )
        # then the one who left is back, unmuted, with the role given and their first join time
        assert (back.left_at, back.muted_until, back.role) == (None, None, "member")
        assert back.joined_at == joined
        # the active admin stays an admin, and the newcomer starts with nothing read
        assert kept.role == Participant.Role.ADMIN
        assert (new.role, new.read_seq, new.delivered_seq, new.left_at) == ("member", 0, 0, None)
        stored = {
            p.member_key: p.role
            for p in Participant.objects.filter(conversation=group, left_at__isnull=True)
        }
        assert stored[gone.member_key] == "member"
        assert stored[admin.member_key] == "admin"
        assert stored[newcomer.member_key] == "member"
