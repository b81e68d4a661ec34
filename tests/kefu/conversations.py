"""Customer conversations made for tests of search and the back office: a session, its visitor,
participants, and messages sent through the one send path (which indexes them)."""

from __future__ import annotations

from im.models import Conversation
from im.senders import Sender
from im.services import conversations as im_conversations
from im.services import messages as im_messages
from kefu.models import Session, Visitor
from org.models import User
from tests.conftest import unique


def customer_conversation(desk, agent: User, *, lines=(), created=None, **fields) -> Session:
    """A customer conversation served by ``agent`` with ``lines`` = [(who, text)] sent through
    the one send path (which indexes them)."""
    visitor = Visitor.objects.create(
        channel=fields.pop("channel", desk.channel),
        name=fields.pop("name", unique("Visitor")),
        email=fields.pop("email", ""),
        phone=fields.pop("phone", ""),
    )
    conversation = im_conversations.conversation_create(kind=Conversation.Kind.VISITOR)
    im_conversations.participant_add(
        conversation=conversation, member_key=visitor.member_key, name=visitor.name, role="member"
    )
    im_conversations.participant_add(
        conversation=conversation,
        member_key=agent.member_key,
        name=agent.name,
        role="member",
        user_id=agent.pk,
    )
    session = Session.objects.create(
        conversation=conversation,
        visitor=visitor,
        channel=visitor.channel,
        workgroup=fields.pop("workgroup", desk.workgroup),
        agent=agent,
        status=fields.pop("status", "open"),
        **fields,
    )
    for who, text in lines:
        sender = (
            Sender(key=agent.member_key, type="agent", name=agent.name, user_id=agent.pk)
            if who == "agent"
            else Sender(key=visitor.member_key, type="visitor", name=visitor.name)
        )
        im_messages.message_send(conversation_id=conversation.pk, sender=sender, content=text)
    if created is not None:
        Session.objects.filter(pk=session.pk).update(created_at=created)
    return session
