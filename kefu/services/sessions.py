"""Ending a customer session: by an agent, the visitor, a timer or the back office."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.senders import Sender
from im.services import conversations as im_conversations
from kefu import syslines, webhooks
from kefu.channels.delivery import session_line_post
from kefu.models import AgentState, Session, Workgroup
from kefu.services.events import agent_state_publish, views_changed_publish
from kefu.services.routing import workgroup_dispatch
from org import audit
from weiyu.errors import ServiceError


def session_close(*, session_id: int, closed_by: Sender, ip: str | None = None) -> Session:
    """End a session: a system line, the conversation closed (``conversation.closed`` to all,
    ``views.changed`` to the workgroup's agents), the agent's load released, then the workgroup's queue dispatched. Idempotent. Closed by a
    person of the tenant (``closed_by.user_id``): recorded in the audit log with ``ip`` (None:
    the current request's address, :func:`org.audit.audit_record`).
    """
    with transaction.atomic():
        session = (
            Session.objects.select_for_update()
            .select_related("visitor", "channel")
            .get(pk=session_id)
        )
        if session.status == Session.Status.CLOSED:
            return session
        was_open_with = session.agent_id if session.status == Session.Status.OPEN else None
        session.status = Session.Status.CLOSED
        session.closed_at = timezone.now()
        session.closed_by = closed_by.type
        session.save(update_fields=["status", "closed_at", "closed_by"])
        if was_open_with is not None:
            AgentState.objects.filter(user_id=was_open_with).update(
                open_count=Greatest(F("open_count") - 1, 0)
            )
            agent_state_publish(user_id=was_open_with)
        session_line_post(session=session, code=syslines.ENDED)
        im_conversations.conversation_close(
            conversation_id=session.conversation_id, closed_by=closed_by
        )
        webhooks.conversation_emit(
            "conversation.closed", session_id=session.pk, conversation_id=session.conversation_id
        )
        if closed_by.user_id is not None:
            audit.audit_record(
                actor=closed_by.user_id,
                action=audit.CLOSE,
                target=session,
                data={"conversation_id": session.conversation_id},
                ip=ip,
            )
        workgroup_id = session.workgroup_id
        views_changed_publish(workgroup_id=workgroup_id)

        def dispatch() -> None:
            # the freed agent may serve other workgroups too, whose visitors wait as well
            workgroup_ids = {workgroup_id}
            if was_open_with is not None:
                workgroup_ids.update(
                    Workgroup.objects.filter(agents=was_open_with).values_list("id", flat=True)
                )
            for wid in sorted(workgroup_ids):
                workgroup_dispatch(workgroup_id=wid)

        transaction.on_commit(dispatch)
    return session


def conversation_close_by_member(
    *, conversation_id: object, sender: Sender, ip: str | None = None
) -> Session:
    """Close the session of a conversation the member (agent or visitor) is in (``ip``: the
    client's address, for the audit log of an agent's close).

    Raises ``ServiceError``: ``invalid``, ``not_found`` (not a participant, or not a visitor chat).
    """
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    im_selectors.participant_get(conversation_id=conversation_id, member_key=sender.key)
    session = Session.objects.filter(conversation_id=conversation_id).first()
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return session_close(session_id=session.pk, closed_by=sender, ip=ip)
