"""Who says what in a customer conversation: the sender of visitors', agents' and the robot's
messages, and the language a visitor is written to in. Pure helpers, below every service."""

from __future__ import annotations

from django.utils import translation
from django.utils.translation import gettext as _

from im.models import Message
from im.senders import Sender, robot_sender
from kefu.models import Channel, Session, Visitor
from org.models import User


def language_for(visitor: Visitor) -> str:
    """The language system lines use for ``visitor`` (the robot: :func:`robot_language`): ``en`` when their
    browser asks for English, else ``zh-hans``."""
    return "en" if visitor.language.lower().startswith("en") else "zh-hans"


def robot_language(visitor: Visitor) -> str:
    """The language the robot speaks to ``visitor`` in (its name, greeting and replies): ``en``
    when their browser asks for English — or for a language the robot has no words in (Spanish,
    Japanese …: English is the one they are likelier to read) — and ``zh-hans`` for Chinese or
    an unknown language (the site's default)."""
    language = visitor.language.lower()
    return "zh-hans" if not language or language.startswith("zh") else "en"


def visitor_sender(visitor: Visitor) -> Sender:
    return Sender(key=visitor.member_key, type=Message.SenderType.VISITOR, name=visitor.name)


def agent_sender(user: User) -> Sender:
    return Sender(
        key=user.member_key, type=Message.SenderType.AGENT, name=user.name, user_id=user.pk
    )


def robot_name(channel: Channel, language: str) -> str:
    """The name the robot signs with: the channel's, else "Assistant" in the visitor's language."""
    if channel.robot_name:
        return channel.robot_name
    with translation.override(language):
        return _("Assistant")


def robot_sender_for(session: Session) -> Sender:
    """The robot's sender in ``session``: the channel's robot name in the visitor's language."""
    return robot_sender(robot_name(session.channel, robot_language(session.visitor)))
