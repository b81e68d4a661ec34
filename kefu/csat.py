"""The satisfaction survey (CSAT, KF-12): when a conversation ends on a channel that asks for it,
the visitor rates it once with 1-5 stars and an optional comment. The rating is kept on the
session, shown to the agents of the conversation (``csat.submitted``) and counted in the
statistics (average and distribution, KF-14)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Participant
from kefu import webhooks
from kefu.models import Session, Visitor
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

COMMENT_MAX = 1000


def csat_payload(session: Session) -> dict[str, Any] | None:
    """``{"score", "comment", "rated_at"}`` of a session, ``{"score": null, …}`` while it may
    still be rated, or None when its channel does not ask."""
    return csat_payload_values(
        asked=session.channel.csat_enabled,
        score=session.csat_score,
        comment=session.csat_comment,
        rated_at=session.csat_at,
    )


def csat_payload_values(
    *, asked: bool, score: int | None, comment: str, rated_at: dt.datetime | None
) -> dict[str, Any] | None:
    """:func:`csat_payload` from the column values (``asked``: the channel's ``csat_enabled``)."""
    if not asked and score is None:
        return None
    return {
        "score": score,
        "comment": comment,
        "rated_at": rated_at.isoformat() if rated_at else None,
    }


def csat_submit(
    *, visitor: Visitor, conversation_id: object, score: object, comment: object = ""
) -> Session:
    """Store the visitor's rating of one of their ended conversations. ``score``: integer 1-5;
    ``comment``: up to 1,000 characters.

    Raises ``ServiceError``: ``invalid`` (types and ranges), ``not_found`` (not the visitor's
    conversation, or its channel does not ask), ``conflict`` (still going, or already rated).
    """
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ServiceError("invalid", _("Choose from 1 to 5 stars."), field="score")
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX:
        raise ServiceError(
            "invalid", _("The comment is at most 1,000 characters."), field="comment"
        )
    with transaction.atomic():
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("channel")
            .filter(conversation_id=conversation_id, visitor=visitor)
            .first()
        )
        if session is None or not session.channel.csat_enabled:
            raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
        if session.status != Session.Status.CLOSED:
            raise ServiceError("conflict", _("You can rate the conversation once it has ended."))
        if session.csat_score is not None:
            raise ServiceError("conflict", _("You have already rated this conversation."))
        session.csat_score = score
        session.csat_comment = comment.strip()
        session.csat_at = timezone.now()
        session.save(update_fields=["csat_score", "csat_comment", "csat_at"])
        staff = list(
            Participant.objects.filter(
                conversation_id=conversation_id, user__isnull=False, left_at__isnull=True
            )
            .values_list("member_key", flat=True)
            .distinct()
        )
        event = {
            "type": "csat.submitted",
            "conversation_id": conversation_id,
            "csat": csat_payload(session),
        }
        publish_event_on_commit(event, [*staff, visitor.member_key])
        webhooks.conversation_emit(
            "csat.submitted", session_id=session.pk, conversation_id=conversation_id
        )
    return session
