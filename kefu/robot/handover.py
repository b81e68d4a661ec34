"""Handing a robot session over to the workgroup's agents."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im.services import messages as im_messages
from kefu import hours, selectors, syslines
from kefu.channels.delivery import session_line_post
from kefu.models import Channel, Session, Visitor, Workgroup
from kefu.senders import robot_language
from kefu.senders import robot_sender_for as sender_for
from kefu.services.routing import workgroup_dispatch
from weiyu.errors import ServiceError


def handover(*, session_id: int, reason: str) -> str:
    """Pass a robot session to the workgroup's agents. ``reason``: ``asked`` (button or phrase)
    or ``misses``. Returns ``queued`` (the session waits in the queue and is dispatched at once),
    ``offline`` (no agent of the workgroup is online: the robot says so, offers to leave a
    message — the message's ``meta.robot.offline`` is true — and keeps serving) or ``already``
    (the session is no longer with the robot).

    Raises ``ServiceError("forbidden")`` on a robot-only channel, which never hands over.
    """
    with transaction.atomic():
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("channel", "visitor")
            .get(pk=session_id)
        )
        if session.status != Session.Status.ROBOT:
            return "already"
        if session.channel.mode != Channel.Mode.WORKGROUP:
            with translation.override(robot_language(session.visitor)):
                raise ServiceError("forbidden", _("This chat is answered by the robot only."))
        language = robot_language(session.visitor)
        calendar_id = (
            Workgroup.objects.filter(pk=session.workgroup_id)
            .values_list("calendar_id", flat=True)
            .first()
        )
        if not hours.workgroup_hours(calendar_id=calendar_id)[0] or not (
            selectors.workgroup_has_online_agent(workgroup_id=session.workgroup_id)
        ):
            with translation.override(language):
                content = _(
                    "No colleague is available right now. Leave a message and we will get back "
                    "to you, or keep asking me."
                )
            im_messages.message_send(
                conversation_id=session.conversation_id,
                sender=sender_for(session),
                content=content,
                meta={"robot": {"offline": True}},
            )
            return "offline"
        now = timezone.now()
        Session.objects.filter(pk=session.pk).update(
            status=Session.Status.QUEUED,
            queued_at=now,
            handed_over_at=now,
            handover_reason=reason[:16],
        )
        session_line_post(
            session=session,
            code=syslines.HANDOVER,
            meta={"handover": reason},
        )
        workgroup_id = session.workgroup_id
        transaction.on_commit(lambda: workgroup_dispatch(workgroup_id=workgroup_id))
    return "queued"


def handover_by_visitor(*, visitor: Visitor, conversation_id: object) -> str:
    """The visitor's "Talk to a person" button. Raises ``ServiceError``: ``invalid``,
    ``not_found`` (not the visitor's live session), ``forbidden`` (robot-only channel)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    session = Session.objects.filter(conversation_id=conversation_id, visitor=visitor).first()
    if session is None or session.status == Session.Status.CLOSED:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return handover(session_id=session.pk, reason="asked")
