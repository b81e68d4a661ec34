"""Who writes a message: :class:`Sender` and the two senders that are not participants (the
system and the service robot). The bottom of the messaging core: pure values, no queries; every
im service and the apps above import senders from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from im.models import Message


@dataclass(frozen=True)
class Sender:
    """Who sends: ``key`` (``u:7``, ``v:12`` or ``system``), ``type`` (Message.SenderType), name."""

    key: str
    type: str
    name: str
    user_id: int | None = None


SYSTEM = Sender(key="system", type=Message.SenderType.SYSTEM, name="")


#: the member key of the service robot (KF-1): it writes into visitor conversations without
#: being a participant, like the system sender
ROBOT_KEY = "robot"


def robot_sender(name: str) -> Sender:
    """The robot, shown to readers under ``name`` (the channel's robot name)."""
    return Sender(key=ROBOT_KEY, type=Message.SenderType.ROBOT, name=name[:100])
