"""Automatic lines are stored as a code and parameters and read in each reader's language
(im/syslines.py): the visitor in theirs, each agent in theirs, whoever triggered the line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings
from django.test import Client
from django.utils import translation
from django_tenants.utils import schema_context

from im.models import Message
from im.serializers import message_payload
from im.services import groups
from im.services.messages import system_message_post
from im.syslines import message_text, system_lines
from kefu import senders
from kefu.models import Session
from kefu.services import messages, sessions
from org.models import User
from tests.conftest import agent_client, make_agent, make_desk, make_visitor, unique

JS_LINES = Path(settings.BASE_DIR) / "static" / "weiyu" / "syslines.js"


def _system_lines(conversation_id: int) -> list[Message]:
    return list(
        Message.objects.filter(conversation_id=conversation_id, msg_type="system").order_by("seq")
    )


def test_a_line_a_chinese_agent_triggers_reads_in_each_readers_language(acme):
    # given an English visitor served by an agent who works in Chinese
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk, language="en-US")
    agent = desk.agents[0]
    with schema_context("acme"):
        User.objects.filter(pk=agent.pk).update(language="zh-hans")
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="Hello", client_msg_id=unique("c")
        )
        session = Session.objects.get(conversation_id=message.conversation_id)
        # when the agent, in Chinese, ends the conversation
        with translation.override("zh-hans"):
            sessions.session_close(session_id=session.pk, closed_by=senders.agent_sender(agent))
        assigned, ended = _system_lines(message.conversation_id)

    # then each line is stored as a code with its parameters…
    assert (assigned.code, assigned.params) == ("kefu.assigned", {"agent": agent.name})
    assert (ended.code, ended.params) == ("kefu.ended", {})
    # …reads in English for the English visitor and in Chinese for the Chinese agent…
    assert message_text(assigned, language="en") == f"{agent.name} is now serving you."
    assert message_text(ended, language="en") == "The conversation has ended."
    assert message_text(assigned, language="zh-hans") == f"客服 {agent.name} 正在为您服务。"
    assert message_text(ended, language="zh-hans") == "会话已结束。"
    # …and keeps the tenant's default language in its text, for clients that know no codes
    assert ended.content == "会话已结束。"
    # clients get the code and parameters in message frames, history and sync
    payload = message_payload(assigned)
    assert (payload["code"], payload["params"]) == ("kefu.assigned", {"agent": agent.name})
    assert message_text(payload, language="en") == f"{agent.name} is now serving you."


def test_a_group_line_lists_names_with_each_readers_separator(acme):
    with schema_context("acme"):
        # given a group whose owner works in Chinese
        owner, li, ann = (make_agent(status="offline") for _ in range(3))
        with translation.override("zh-hans"):
            group = groups.group_create(creator=owner, title="Ops", member_ids=[])
            # when they invite two colleagues
            groups.group_members_add(
                actor=owner, conversation_id=group.pk, user_ids=[li.pk, ann.pk]
            )
        created, invited = _system_lines(group.pk)

    # then an English reader reads English, with an English list of names
    assert message_text(created, language="en") == f"{owner.name} created the group Ops"
    assert message_text(invited, language="en") == f"{owner.name} invited {li.name}, {ann.name}"
    assert message_text(invited, language="zh-hans") == f"{owner.name} 邀请了 {li.name}、{ann.name}"
    assert invited.params == {"actor": owner.name, "names": [li.name, ann.name]}


def test_lines_without_a_known_code_show_their_text(acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="Hi", client_msg_id=unique("c")
        )
        # a tenant's own closing text has no code; an old line has none either
        own = system_message_post(conversation_id=message.conversation_id, content="Bye for now")
        Message.objects.filter(pk=own.pk).update(code="gone.code", params={"x": 1})
        own.refresh_from_db()

    assert message_text(message, language="zh-hans") == "Hi"
    assert message_text(own, language="en") == "Bye for now"


def test_the_admin_shows_lines_in_the_readers_language(acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="Hi", client_msg_id=unique("c")
        )
        admin = User.objects.get(username="bob")
    agent = desk.agents[0]
    path = f"/admin/im/message/?conversation__id__exact={message.conversation_id}"
    english = agent_client(admin, language="en").get(path).content.decode()
    chinese = agent_client(admin, language="zh-CN").get(path).content.decode()
    assert f"{agent.name} is now serving you." in english
    assert f"客服 {agent.name} 正在为您服务。" in chinese


def _js_lines() -> dict[str, str]:
    source = JS_LINES.read_text(encoding="utf-8")
    found = re.findall(r"'([a-z_.]+)': \(\) =>\s+gettext\('((?:[^'\\]|\\.)*)'\)", source)
    return {code: text.replace("\\'", "'") for code, text in found}


def test_the_browsers_know_every_line_in_both_languages(acme):
    # the JavaScript catalogue of lines is the server's, code for code and text for text
    assert _js_lines() == system_lines()
    # and every text has its Chinese translation in the browsers' catalogue
    client = Client(HTTP_HOST="acme.localhost")
    catalog = client.get("/jsi18n/?lang=zh-hans").content.decode("utf-8")
    english = client.get("/jsi18n/?lang=en", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for text in system_lines().values():
        assert json.dumps(text) in catalog, text
    assert json.dumps("会话已结束。") in catalog
    # ?lang= wins over the browser's language
    assert json.dumps("会话已结束。") not in english


def test_the_inbox_language_is_remembered_on_the_user(acme):
    with schema_context("acme"):
        agent = make_agent(status="offline")
    client = agent_client(agent, language="zh-CN,zh;q=0.9")
    # auto: the browser's language
    page = client.get("/inbox/").content.decode()
    assert '<html lang="zh-hans">' in page
    assert 'src="/jsi18n/?lang=zh-hans"' in page
    # choosing English is remembered and wins over the browser's
    r = client.put(
        "/api/v1/org/me/language", json.dumps({"language": "en"}), content_type="application/json"
    )
    assert (r.status_code, r.json()) == (200, {"language": "en"})
    page = client.get("/inbox/").content.decode()
    assert '<html lang="en">' in page
    assert '<option value="en" lang="en" selected>English</option>' in page
    with schema_context("acme"):
        assert User.objects.get(pk=agent.pk).language == "en"
    # bad values are refused, in the chosen language; auto again
    r = client.put(
        "/api/v1/org/me/language", json.dumps({"language": "fr"}), content_type="application/json"
    )
    assert (r.status_code, r.json()["error"], r.json()["field"]) == (400, "invalid", "language")
    assert r.json()["detail"].startswith("language must be one of")
    r = client.put(
        "/api/v1/org/me/language", json.dumps({"language": ""}), content_type="application/json"
    )
    assert r.status_code == 200
    assert '<html lang="zh-hans">' in client.get("/inbox/").content.decode()
    # only for oneself, signed in
    anonymous = Client(HTTP_HOST="acme.localhost")
    r = anonymous.put(
        "/api/v1/org/me/language", json.dumps({"language": "en"}), content_type="application/json"
    )
    assert r.status_code == 403
