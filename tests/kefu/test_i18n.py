"""The widget speaks the visitor's language: Simplified Chinese or English."""

from __future__ import annotations

from django.test import Client
from django_tenants.utils import schema_context

from im.models import Message
from kefu import senders
from kefu.models import Session
from kefu.services import messages, sessions
from tests.conftest import make_desk, make_visitor


def test_widget_frame_follows_the_browser_language(acme):
    desk = make_desk(acme, agents=1)
    client = Client(HTTP_HOST="acme.localhost")
    url = f"/widget/frame/?channel={desk.channel.public_key}&lang="

    zh = client.get(url + "zh-CN").content.decode()
    en = client.get(url + "en-US").content.decode()

    assert 'placeholder="请输入消息…"' in zh
    assert 'placeholder="Type your message…"' in en


def test_javascript_strings_are_translated(acme):
    client = Client(HTTP_HOST="acme.localhost")
    catalog = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "正在重新连接".encode("unicode_escape").decode() in catalog


def test_chinese_visitor_gets_chinese_system_lines(acme):
    # given a visitor whose browser speaks Chinese
    desk = make_desk(acme, agents=1)
    visitor, _ = make_visitor(desk, language="zh-CN")
    agent = desk.agents[0]
    with schema_context("acme"):
        # when the visitor writes and the agent ends the conversation
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="你好", client_msg_id="zh-1"
        )
        session = Session.objects.get(conversation_id=message.conversation_id)
        sessions.session_close(session_id=session.pk, closed_by=senders.agent_sender(agent))
        lines = list(
            Message.objects.filter(conversation_id=message.conversation_id, msg_type="system")
            .order_by("seq")
            .values_list("content", flat=True)
        )
    # then the visitor's name and the system lines are in Chinese
    assert visitor.name.startswith("访客 ")
    assert lines == [f"客服 {agent.name} 正在为您服务。", "会话已结束。"]
