"""The waiting queue: an agent picks a waiting visitor, and the wait limits (``max_wait_s``)
applied by the service timers."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im import senders as im_senders
from im.services import messages as im_messages
from kefu import syslines
from kefu.channels.delivery import session_line_post
from kefu.models import AgentState, Session, Workgroup
from kefu.senders import language_for, robot_sender_for
from kefu.services.events import queue_positions_publish
from kefu.services.routing import session_assign, workgroup_dispatch
from kefu.services.sessions import session_close
from org.models import User
from weiyu.errors import ServiceError


def queue_pick(*, user: User, session_id: object) -> Session:
    """An agent takes a waiting visitor of one of their workgroups themselves (when the
    workgroup allows it), ahead of the strategy. Raises ``ServiceError``: ``invalid``,
    ``not_found`` (not a queued visitor of the agent's workgroups), ``forbidden`` (picking is
    off for the workgroup, or the agent is not online), ``conflict`` (taken meanwhile),
    ``full`` (at their cap)."""
    if isinstance(session_id, bool) or not isinstance(session_id, int):
        raise ServiceError("invalid", _("session_id must be an integer."), field="session_id")
    with transaction.atomic():
        found = Session.objects.filter(pk=session_id).only("workgroup_id").first()
        if (
            found is None
            or not Workgroup.objects.filter(pk=found.workgroup_id, agents=user).exists()
        ):
            raise ServiceError("not_found", _("No such waiting visitor."), field="session_id")
        workgroup = Workgroup.objects.select_for_update(no_key=True).get(pk=found.workgroup_id)
        if not workgroup.allow_pick:
            raise ServiceError("forbidden", _("Visitors of this workgroup are assigned for you."))
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("visitor", "channel")
            .get(pk=session_id)
        )
        if session.status != Session.Status.QUEUED:
            raise ServiceError("conflict", _("Someone else took this visitor."))
        state = AgentState.objects.select_for_update().filter(user=user).first()
        if state is None or not state.available:
            raise ServiceError("forbidden", _("Go online to take visitors."))
        if state.open_count >= state.max_concurrent:
            raise ServiceError("full", _("You are at your limit of conversations."))
        session_assign(session=session, workgroup=workgroup, agent=user)
        transaction.on_commit(lambda: queue_positions_publish(workgroup_id=workgroup.pk))
    session.refresh_from_db()
    return session


def queue_wait_scan(*, now=None) -> int:
    """Apply ``max_wait_s`` to the current tenant's waiting sessions: each one waiting longer
    than its workgroup allows gets the workgroup's overflow action, once. Returns how many were
    acted on. Safe to run concurrently (rows are locked and skipped when busy)."""
    now = now or timezone.now()
    limits = dict(
        Workgroup.objects.filter(max_wait_s__gt=0)
        .exclude(overflow_action=Workgroup.OverflowAction.WAIT)
        .values_list("pk", "max_wait_s")
    )
    acted = 0
    dispatch: set[int] = set()
    for workgroup_id, max_wait_s in limits.items():
        due = Session.objects.filter(
            workgroup_id=workgroup_id,
            status=Session.Status.QUEUED,
            overflowed_at__isnull=True,
            queued_at__lte=now - timedelta(seconds=max_wait_s),
        ).values_list("pk", flat=True)
        for session_id in list(due):
            with transaction.atomic():
                session = (
                    Session.objects.select_for_update(skip_locked=True)
                    .select_related("visitor", "workgroup", "channel")
                    .filter(pk=session_id, status=Session.Status.QUEUED)
                    .first()
                )
                if session is None:
                    continue
                workgroup = session.workgroup
                action = workgroup.overflow_action
                language = language_for(session.visitor)
                Session.objects.filter(pk=session.pk).update(overflowed_at=now)
                if action == Workgroup.OverflowAction.OVERFLOW and workgroup.overflow_workgroup_id:
                    Session.objects.filter(pk=session.pk).update(
                        workgroup_id=workgroup.overflow_workgroup_id
                    )
                    dispatch.update({workgroup.pk, workgroup.overflow_workgroup_id})
                elif action == Workgroup.OverflowAction.ROBOT:
                    Session.objects.filter(pk=session.pk).update(status=Session.Status.ROBOT)
                    with translation.override(language):
                        text = _(
                            "Sorry for the wait: all our agents are busy. Meanwhile I will try "
                            "to help."
                        )
                    im_messages.message_send(
                        conversation_id=session.conversation_id,
                        sender=robot_sender_for(session),
                        content=text,
                        meta={"robot": {"overflow": True}},
                    )
                    dispatch.add(workgroup.pk)
                elif action == Workgroup.OverflowAction.LEAVE_MESSAGE:
                    session_line_post(
                        session=session,
                        code=syslines.OVERFLOW_LEAVE_MESSAGE,
                        meta={"leave_message": True},
                    )
                    session_close(session_id=session.pk, closed_by=im_senders.SYSTEM)
                    dispatch.add(workgroup.pk)
                else:
                    continue
                acted += 1
    for workgroup_id in sorted(dispatch):
        workgroup_dispatch(workgroup_id=workgroup_id)
    return acted
