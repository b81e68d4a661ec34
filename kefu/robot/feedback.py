"""The visitor rates a robot answer."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im import senders as im_senders
from im.models import Message
from im.services import messages as im_messages
from kbase.models import RobotQuestion
from kbase.services import robot_question_collect
from kefu.models import Visitor
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit


def feedback(*, visitor: Visitor, message_id: object, helpful: object) -> dict[str, Any]:
    """The visitor rates a robot answer. Returns ``{"message_id", "feedback"}``. Rating again
    replaces the rating; the first "not helpful" collects the question (:func:`question_collect`).

    Raises ``ServiceError``: ``invalid`` (types), ``not_found`` (not a robot answer in one of the
    visitor's conversations).
    """
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise ServiceError("invalid", _("message_id must be an integer."), field="message_id")
    helpful = parsing.boolean(helpful, "helpful")
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                pk=message_id,
                sender_key=im_senders.ROBOT_KEY,
                conversation_id__in=im_selectors.active_memberships(
                    member_key=visitor.member_key
                ).values("conversation_id"),
            )
            .first()
        )
        robot_meta = (message.meta or {}).get("robot") if message is not None else None
        if message is None or not robot_meta or "reply_to" not in robot_meta:
            raise ServiceError("not_found", _("No such answer."), field="message_id")
        value = "helpful" if helpful else "not_helpful"
        previous = robot_meta.get("feedback")
        robot_meta["feedback"] = value
        im_messages.message_meta_update(
            message_id=message.pk, meta={**message.meta, "robot": robot_meta}
        )
        if value == "not_helpful" and previous != "not_helpful" and robot_meta.get("answered"):
            sources = robot_meta.get("sources") or [{}]
            robot_question_collect(
                question=robot_meta.get("question") or "",
                reason=RobotQuestion.Reason.NOT_HELPFUL,
                conversation_id=message.conversation_id,
                answer_title=sources[0].get("title", ""),
            )
        payload = {
            "type": "robot.feedback",
            "conversation_id": message.conversation_id,
            "message_id": message.pk,
            "feedback": value,
        }
        publish_event_on_commit(payload, [visitor.member_key])
    return {"message_id": message.pk, "feedback": value}
