"""Messaging channels: one adapter module per kind (docs/channels.md). Adding a kind (WhatsApp,
Feishu, DingTalk, e-mail, an API channel) is a module with a :class:`~kefu.channels.base.
ChannelAdapter` subclass, an entry in :data:`ADAPTERS` and a ``Channel.Kind`` choice."""

from __future__ import annotations

from kefu.channels.api import ApiAdapter
from kefu.channels.base import WIDGET_CAPABILITIES, Capabilities, ChannelAdapter
from kefu.channels.mail import EmailAdapter
from kefu.channels.telegram import TelegramAdapter
from kefu.channels.wechat import WeChatAdapter

#: the adapter of each messaging kind (the widget has none: it is served by kefu.consumers)
ADAPTERS: dict[str, ChannelAdapter] = {
    TelegramAdapter.kind: TelegramAdapter(),
    WeChatAdapter.kind: WeChatAdapter(),
    ApiAdapter.kind: ApiAdapter(),
    EmailAdapter.kind: EmailAdapter(),
}


def adapter_for(kind: str) -> ChannelAdapter | None:
    """The adapter of a channel kind, None for the widget (or an unknown kind)."""
    return ADAPTERS.get(kind)


def capabilities_for(kind: str) -> Capabilities:
    """What the inbox composer may offer in a conversation of this kind."""
    adapter = ADAPTERS.get(kind)
    return adapter.capabilities if adapter else WIDGET_CAPABILITIES
