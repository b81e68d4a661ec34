"""The sensitive-word list (KF-10): masked or refused in customer conversations, from visitors and
agents alike; internal notes and team chats are left alone; a change applies at once."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from im.models import Message
from im.services import groups
from kefu.models import SensitiveWord
from kefu.services import messages
from tests.conftest import make_desk, make_visitor, unique
from weiyu.errors import ServiceError


@pytest.fixture
def words(acme):
    with schema_context("acme"):
        SensitiveWord.objects.filter(word__in=["傻瓜", "ScamLink", "微信号"]).delete()
        SensitiveWord.objects.create(word="傻瓜", action="mask")
        SensitiveWord.objects.create(word="ScamLink", action="mask")
        SensitiveWord.objects.create(word="微信号", action="block")
    yield
    with schema_context("acme"):
        SensitiveWord.objects.filter(word__in=["傻瓜", "ScamLink", "微信号"]).delete()


def test_visitors_and_agents_are_masked_and_blocked(words, acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        first, _ = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content="你这个傻瓜, see scamlink",
            client_msg_id=unique("v"),
        )
        assert first.content == "你这个**, see ********"
        cid = first.conversation_id
        before = Message.objects.filter(conversation_id=cid).count()
        with pytest.raises(ServiceError) as err:
            messages.visitor_message_send(
                visitor=visitor,
                conversation_id=cid,
                content="加我微信号 abc",
                client_msg_id=unique("v"),
            )
        assert err.value.code == "forbidden"
        assert Message.objects.filter(conversation_id=cid).count() == before
        agent = desk.agents[0]
        reply, _ = messages.agent_message_send(
            user=agent, conversation_id=cid, content="别叫我傻瓜", client_msg_id=unique("a")
        )
        assert reply.content == "别叫我**"
        with pytest.raises(ServiceError):
            messages.agent_message_send(
                user=agent, conversation_id=cid, content="我的微信号是…", client_msg_id=unique("a")
            )
        # internal notes between staff are not filtered
        note, _ = messages.agent_message_send(
            user=agent,
            conversation_id=cid,
            content="客户说了傻瓜",
            client_msg_id=unique("n"),
            internal=True,
        )
        assert note.content == "客户说了傻瓜"
        # nor are team chats
        other = desk.agents[0].__class__.objects.create_user(
            username=unique("x"), password="x", role="agent"
        )
        chat = groups.direct_get_or_create(user=agent, other_user_id=other.pk)
        said, _ = messages.agent_message_send(
            user=agent, conversation_id=chat.pk, content="傻瓜 joke", client_msg_id=unique("t")
        )
        assert said.content == "傻瓜 joke"


def test_a_change_to_the_list_applies_at_once(words, acme):
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        SensitiveWord.objects.filter(word="傻瓜").update(action="block")  # bypasses signals
        SensitiveWord.objects.get(word="ScamLink").delete()  # signals: the cache is dropped
        m, _ = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content="scamlink now fine",
            client_msg_id=unique("v"),
        )
        assert m.content == "scamlink now fine"
