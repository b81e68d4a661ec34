"""How the robot presents itself: its name, greeting and what the widget shows of it."""

from __future__ import annotations

from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

from kefu.models import Channel
from kefu.senders import robot_name

ROBOT_MODES = (Channel.Mode.ROBOT, Channel.Mode.WORKGROUP)


def greeting(channel: Channel, language: str) -> str:
    """The robot's first words, shown by the widget before the first question."""
    if channel.robot_greeting:
        return channel.robot_greeting
    with translation.override(language):
        if channel.mode == Channel.Mode.WORKGROUP:
            return _(
                "Hello! I am the assistant. Ask me anything; if I cannot help, I will bring in "
                "a colleague."
            )
        return _("Hello! I am the assistant. Ask me anything.")


def widget_info(channel: Channel, language: str) -> dict[str, Any] | None:
    """``robot`` of the widget session response: ``{"name", "greeting", "handover"}`` (whether
    the visitor may ask for a person), or None on a human-only channel."""
    if channel.mode not in ROBOT_MODES:
        return None
    return {
        "name": robot_name(channel, language),
        "greeting": greeting(channel, language),
        "handover": channel.mode == Channel.Mode.WORKGROUP,
    }
