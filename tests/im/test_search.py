"""Message search (IM-9): Chinese and English full text over what the member may see, paging,
jumping to a hit, and the reindex command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_tenants.utils import schema_context

from im.models import Message
from im.search import index_terms, message_search
from im.senders import Sender
from im.services import groups
from im.services import messages as im_messages
from org.models import User
from tenants.models import Tenant
from tests.conftest import PASSWORD, session_cookie, unique
from weiyu.errors import ServiceError

HOST = "acme.localhost"


def _user() -> User:
    name = unique("seeker")
    return User.objects.create_user(username=name, password=PASSWORD, display_name=name.title())


def _send(user: User, cid: int, text: str) -> Message:
    message, _ = im_messages.message_send(
        conversation_id=cid,
        sender=Sender(key=user.member_key, type="agent", name=user.name, user_id=user.pk),
        content=text,
    )
    return message


def _browser(user: User, schema: str = "acme") -> Client:
    client = Client(HTTP_HOST=f"{schema}.localhost", HTTP_ACCEPT_LANGUAGE="en")
    cookie = session_cookie(Tenant.objects.get(schema_name=schema), user).decode()
    name, value = cookie.split("=", 1)
    client.cookies[name] = value
    return client


@pytest.fixture
def chat(acme):
    with schema_context("acme"):
        ann, ben = _user(), _user()
        conversation = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
    return ann, ben, conversation.pk


def test_chinese_phrase_is_found_inside_a_sentence_but_not_when_its_characters_are_apart(chat):
    ann, ben, cid = chat
    tag = unique("单号")
    with schema_context("acme"):
        hit = _send(ann, cid, f"客户{tag}提交了退款申请，请尽快处理")
        _send(ben, cid, f"{tag}退货和申请款项是两回事")  # 退 款 申 请 all present, not together
        found, more = message_search(member_key=ben.member_key, query=f"{tag} 退款申请")
    assert [m.pk for m in found] == [hit.pk]
    assert more is False


def test_english_words_prefix_and_mixed_text(chat):
    ann, ben, cid = chat
    word = unique("invoice").lower()
    with schema_context("acme"):
        first = _send(ann, cid, f"The {word} for order 42 is attached")
        second = _send(ben, cid, f"Thanks! 我已经收到{word}了")
        assert [m.pk for m in message_search(member_key=ann.member_key, query=word)[0]] == [
            second.pk,
            first.pk,
        ]
        # the last word matches as a prefix, case-insensitively
        prefix = word[:-2].upper()
        assert len(message_search(member_key=ann.member_key, query=f"order {prefix}")[0]) == 1
        assert [
            m.pk for m in message_search(member_key=ann.member_key, query=f"收到{word}")[0]
        ] == [second.pk]


def test_only_conversations_the_member_is_in_and_not_after_leaving(chat):
    ann, _ben, cid = chat
    secret = unique("codename").lower()
    with schema_context("acme"):
        outsider, owner = _user(), _user()
        _send(ann, cid, f"the {secret} launch")
        group = groups.group_create(creator=owner, title="g", member_ids=[outsider.pk])
        _send(owner, group.pk, f"group talk about {secret}")
        assert message_search(member_key=outsider.member_key, query=secret)[0][
            0
        ].conversation_id == (group.pk)
        assert len(message_search(member_key=ann.member_key, query=secret)[0]) == 1
        groups.group_member_remove(actor=outsider, conversation_id=group.pk, user_id=outsider.pk)
        assert message_search(member_key=outsider.member_key, query=secret)[0] == []


def test_recalled_and_system_messages_are_not_found(chat):
    ann, ben, cid = chat
    word = unique("password").lower()
    with schema_context("acme"):
        oops = _send(ann, cid, f"my {word} is hunter2")
        im_messages.message_recall(
            conversation_id=cid,
            message_id=oops.pk,
            sender=Sender(key=ann.member_key, type="agent", name=ann.name, user_id=ann.pk),
            client_msg_id=unique("rc"),
        )
        assert message_search(member_key=ben.member_key, query=word)[0] == []


def test_tenants_never_see_each_others_messages(chat, globex):
    ann, _ben, cid = chat
    word = unique("shared").lower()
    with schema_context("acme"):
        _send(ann, cid, f"acme says {word}")
    with schema_context("globex"):
        a, b = _user(), _user()
        other = groups.direct_get_or_create(user=a, other_user_id=b.pk)
        mine = _send(a, other.pk, f"globex says {word}")
        assert [m.pk for m in message_search(member_key=a.member_key, query=word)[0]] == [mine.pk]


def test_api_pages_with_before_id_and_jumps_around_a_hit(chat):
    ann, ben, cid = chat
    word = unique("ticket").lower()
    with schema_context("acme"):
        sent = [_send(ann, cid, f"{word} number {n}") for n in range(7)]
        for n in range(30):
            _send(ben, cid, f"filler {n}")
    client = _browser(ben)
    first = client.get("/api/v1/im/search", {"q": word, "limit": 4}).json()
    assert [r["message"]["id"] for r in first["results"]] == [m.pk for m in reversed(sent)][:4]
    assert first["has_more"] is True
    assert first["results"][0]["conversation"] == {"id": cid, "kind": "direct", "title": ann.name}
    assert word in first["results"][0]["highlight"]
    rest = client.get(
        "/api/v1/im/search",
        {"q": word, "limit": 4, "before_id": first["results"][-1]["message"]["id"]},
    ).json()
    assert [r["message"]["id"] for r in rest["results"]] == [m.pk for m in reversed(sent)][4:]
    assert rest["has_more"] is False
    # jump to the oldest hit: it is inside the page, with more after it
    target = sent[0]
    page = client.get(
        f"/api/v1/im/conversations/{cid}/messages", {"around_seq": target.seq, "limit": 10}
    ).json()
    seqs = [m["seq"] for m in page["messages"]]
    assert target.seq in seqs
    assert seqs == sorted(seqs)
    assert page["has_after"] is True
    older = client.get(
        f"/api/v1/im/conversations/{cid}/messages", {"before_seq": seqs[0], "limit": 100}
    ).json()
    assert [m["seq"] for m in older["messages"]] == list(range(1, seqs[0]))
    assert older["has_before"] is False


def test_api_errors_are_json(chat):
    ann, _ben, cid = chat
    client = _browser(ann)
    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "！？"}, {"q": "a", "limit": "0"}):
        response = client.get("/api/v1/im/search", params)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"
    with schema_context("acme"):
        stranger = _user()
    assert _browser(stranger).get(f"/api/v1/im/conversations/{cid}/messages").status_code == 404
    assert Client(HTTP_HOST=HOST).get("/api/v1/im/search", {"q": "a"}).status_code in (401, 403)


def test_reindex_command_rebuilds_the_index(chat):
    ann, ben, cid = chat
    word = unique("rebuild").lower()
    with schema_context("acme"):
        message = _send(ann, cid, f"please {word} me")
        Message.objects.filter(pk=message.pk).update(search_vector=None)
        assert message_search(member_key=ben.member_key, query=word)[0] == []
    out = StringIO()
    call_command("im_reindex", "--schema", "acme", stdout=out, stderr=StringIO())
    assert "acme:" in out.getvalue()
    with schema_context("acme"):
        assert [m.pk for m in message_search(member_key=ben.member_key, query=word)[0]] == [
            message.pk
        ]
    with pytest.raises(CommandError):
        call_command("im_reindex", "--schema", "nope", stdout=StringIO(), stderr=StringIO())


def test_index_terms_cover_words_and_cjk_bigrams():
    assert index_terms("Hello 退款申请!") == "hello 退 款 申 请 退款 款申 申请"
    with pytest.raises(ServiceError):
        message_search(member_key="u:1", query="   ")
