"""Transfers and invitations (KF-8): an agent hands a visitor conversation to a colleague or a
workgroup, or brings a colleague in as a second agent.

- To a colleague: a pending :class:`Transfer`; the colleague gets ``transfer.requested`` and
  accepts (the conversation becomes theirs: they join it, the first agent leaves it, loads move,
  the visitor reads "… is now serving you") or declines (the first agent keeps it). Pending
  transfers expire after :data:`TRANSFER_TTL_S` seconds (beat timer, :func:`expire_scan`).
  Both agents get ``transfer.updated`` on every change.
- To a workgroup: at once — the conversation goes back to that workgroup's queue and its
  strategy assigns it; the first agent leaves it.
- Invitation: the colleague joins the conversation as a second agent (no load counted); the
  visitor reads "… joined the conversation".

Lock order follows :mod:`kefu.services.routing`: session, then agent states, then the conversation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from im.models import Participant
from im.services import conversations as im_conversations
from kefu import selectors, syslines, webhooks
from kefu.channels.delivery import session_line_post
from kefu.models import AgentState, Session, Transfer, Workgroup
from kefu.services.events import agent_state_publish
from kefu.services.routing import workgroup_dispatch
from org import alerts, audit
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

#: seconds a transfer waits for the colleague's answer
TRANSFER_TTL_S = 120


def transfer_payload(transfer: Transfer) -> dict[str, Any]:
    """``{"id", "conversation_id", "status", "note", "from": {"id", "name"}, "to_agent": {…} |
    null, "to_workgroup": {"id", "name"} | null, "visitor": {"id", "name"}, "created_at",
    "expires_at", "responded_at"}``."""
    session = transfer.session

    def person(user: User | None) -> dict[str, Any] | None:
        return {"id": user.pk, "name": user.name} if user is not None else None

    return {
        "id": transfer.pk,
        "conversation_id": session.conversation_id,
        "status": transfer.status,
        "note": transfer.note,
        "from": person(transfer.from_agent),
        "to_agent": person(transfer.to_agent),
        "to_workgroup": (
            {"id": transfer.to_workgroup_id, "name": transfer.to_workgroup.name}
            if transfer.to_workgroup_id
            else None
        ),
        "visitor": {"id": session.visitor_id, "name": session.visitor.name},
        "created_at": transfer.created_at.isoformat(),
        "expires_at": (transfer.created_at + timedelta(seconds=TRANSFER_TTL_S)).isoformat(),
        "responded_at": transfer.responded_at.isoformat() if transfer.responded_at else None,
    }


def _publish(transfer: Transfer, event_type: str) -> None:
    transfer = Transfer.objects.select_related(
        "session__visitor", "from_agent", "to_agent", "to_workgroup"
    ).get(pk=transfer.pk)
    keys = [f"u:{uid}" for uid in {transfer.from_agent_id, transfer.to_agent_id} if uid]
    publish_event_on_commit({"type": event_type, "transfer": transfer_payload(transfer)}, keys)


def _audit(user: User, session: Session, transfer: Transfer, step: str) -> None:
    """The transfer in the audit log: ``step`` is ``requested`` (to a colleague), ``accepted``
    (by them) or ``done`` (to a workgroup, at once); the address is the request's."""
    audit.audit_record(
        actor=user,
        action=audit.TRANSFER,
        target=session,
        data={
            "step": step,
            "transfer_id": transfer.pk,
            "conversation_id": session.conversation_id,
            "from_agent_id": transfer.from_agent_id,
            "to_agent_id": transfer.to_agent_id,
            "to_workgroup_id": transfer.to_workgroup_id,
        },
    )


def _own_open_session(user: User, conversation_id: object) -> Session:
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    session = (
        Session.objects.select_for_update(of=("self",))
        .select_related("visitor")
        .filter(conversation_id=conversation_id)
        .first()
    )
    if (
        session is None
        or not Participant.objects.filter(
            conversation_id=conversation_id, member_key=user.member_key, left_at__isnull=True
        ).exists()
    ):
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    if session.status != Session.Status.OPEN or session.agent_id != user.pk:
        raise ServiceError(
            "conflict", _("Only the agent serving an open conversation can transfer it.")
        )
    return session


def agent_leave(*, session: Session, user_id: int) -> None:
    """The agent stops serving the session: load released, out of the conversation."""
    AgentState.objects.filter(user_id=user_id).update(open_count=Greatest(F("open_count") - 1, 0))
    agent_state_publish(user_id=user_id)
    im_conversations.participant_remove(
        conversation_id=session.conversation_id, member_key=f"u:{user_id}"
    )
    publish_event_on_commit(
        {
            "type": "conversation.removed",
            "conversation_id": session.conversation_id,
            "reason": "transferred",
        },
        [f"u:{user_id}"],
    )


def transfer_request(
    *, user: User, conversation_id: object, to_agent_id: object = None,
    to_workgroup_id: object = None, note: object = "",
) -> Transfer:  # fmt: skip
    """Start a transfer of the caller's open conversation to a colleague (pending until they
    answer) or to a workgroup (done at once). Returns the transfer.

    Raises ``ServiceError``: ``invalid`` (neither or both targets, yourself, an unknown or
    inactive agent or workgroup, a note over 500 characters), ``not_found``, ``conflict`` (not
    yours or not open, or a transfer is already pending), ``unavailable_agent`` (the colleague
    is not online with an inbox open).
    """
    if (to_agent_id is None) == (to_workgroup_id is None):
        raise ServiceError("invalid", _("Choose a colleague or a workgroup."), field="to_agent_id")
    if not isinstance(note, str) or len(note) > 500:
        raise ServiceError("invalid", _("The note is at most 500 characters."), field="note")
    with transaction.atomic():
        session = _own_open_session(user, conversation_id)
        if to_workgroup_id is not None:
            workgroup = Workgroup.objects.filter(
                pk=parsing.positive_int(to_workgroup_id, "to_workgroup_id")
            ).first()
            if workgroup is None:
                raise ServiceError("invalid", _("No such workgroup."), field="to_workgroup_id")
            transfer = Transfer.objects.create(
                session=session,
                from_agent=user,
                to_workgroup=workgroup,
                note=note.strip(),
                status=Transfer.Status.ACCEPTED,
                responded_at=timezone.now(),
            )
            Session.objects.filter(pk=session.pk).update(
                status=Session.Status.QUEUED,
                agent=None,
                workgroup=workgroup,
                queued_at=timezone.now(),
                assigned_at=None,
            )
            agent_leave(session=session, user_id=user.pk)
            session_line_post(
                session=session,
                code=syslines.TRANSFERRED,
                params={"workgroup": workgroup.name},
            )
            _publish(transfer, "transfer.updated")
            _audit(user, session, transfer, "done")
            transaction.on_commit(lambda: workgroup_dispatch(workgroup_id=workgroup.pk))
            return transfer
        target = User.objects.filter(
            pk=parsing.positive_int(to_agent_id, "to_agent_id"), is_active=True, role="agent"
        ).first()
        if target is None or target.pk == user.pk:
            raise ServiceError("invalid", _("Choose another agent."), field="to_agent_id")
        state = AgentState.objects.filter(user=target).first()
        if state is None or not state.available:
            raise ServiceError(
                "unavailable_agent", _("%(name)s is not online.") % {"name": target.name}
            )
        try:
            with transaction.atomic():
                transfer = Transfer.objects.create(
                    session=session, from_agent=user, to_agent=target, note=note.strip()
                )
        except IntegrityError as exc:
            raise ServiceError(
                "conflict", _("A transfer of this conversation is already waiting for an answer.")
            ) from exc
        _publish(transfer, "transfer.requested")
        _audit(user, session, transfer, "requested")
        alerts.alert(
            kind="transfer",
            user_ids=[target.pk],
            title=gettext_noop("Transfer request"),
            body=gettext_noop("%(agent)s asks you to take over a conversation."),
            params={"agent": user.name},
            url=f"/inbox/#c{session.conversation_id}",
        )
    return transfer


def _pending_for(user: User, transfer_id: object, *, as_target: bool) -> Transfer:
    transfer_id = parsing.positive_int(transfer_id, "transfer_id")
    transfer = (
        Transfer.objects.select_for_update(of=("self",))
        .select_related("session__visitor", "from_agent", "to_agent")
        .filter(pk=transfer_id)
        .first()
    )
    owner = transfer.to_agent_id if transfer and as_target else transfer and transfer.from_agent_id
    if transfer is None or owner != user.pk:
        raise ServiceError("not_found", _("No such transfer."), field="transfer_id")
    if transfer.status != Transfer.Status.PENDING:
        raise ServiceError(
            "conflict",
            _("This transfer is no longer waiting (%(status)s).")
            % {"status": transfer.get_status_display()},
        )
    return transfer


def transfer_accept(*, user: User, transfer_id: object) -> Transfer:
    """The colleague takes the conversation. Raises ``ServiceError``: ``not_found`` (not theirs
    to answer), ``conflict`` (answered, expired, or the conversation moved on meanwhile), ``full``
    (the colleague is at their concurrent-chat cap)."""
    with transaction.atomic():
        transfer = _pending_for(user, transfer_id, as_target=True)
        session = (
            Session.objects.select_for_update()
            .select_related("visitor")
            .get(pk=transfer.session_id)
        )
        now = timezone.now()
        if session.status != Session.Status.OPEN or session.agent_id != transfer.from_agent_id:
            Transfer.objects.filter(pk=transfer.pk).update(
                status=Transfer.Status.CANCELLED, responded_at=now
            )
            _publish(transfer, "transfer.updated")
            raise ServiceError("conflict", _("The conversation has moved on meanwhile."))
        states = {
            s.user_id: s
            for s in AgentState.objects.select_for_update().filter(
                user_id__in=[transfer.from_agent_id, user.pk]
            )
        }
        mine = states.get(user.pk)
        if mine is None or mine.open_count >= mine.max_concurrent:
            raise ServiceError("full", _("You are at your limit of conversations."))
        AgentState.objects.filter(pk=mine.pk).update(
            open_count=F("open_count") + 1, last_assigned_at=now
        )
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Transfer.Status.ACCEPTED, responded_at=now
        )
        Session.objects.filter(pk=session.pk).update(agent=user, assigned_at=now)
        im_conversations.participant_add(
            conversation_id=session.conversation_id,
            member_key=user.member_key,
            name=user.name,
            role=Participant.Role.AGENT,
            user_id=user.pk,
        )
        agent_leave(session=session, user_id=transfer.from_agent_id)
        session_line_post(
            session=session,
            code=syslines.ASSIGNED,
            params={"agent": user.name},
        )
        _publish(transfer, "transfer.updated")
        agent_state_publish(user_id=user.pk)
        _audit(user, session, transfer, "accepted")
        conversation_id = session.conversation_id
        from_agent = User.objects.filter(pk=transfer.from_agent_id).first()
        webhooks.conversation_emit(
            "conversation.transferred",
            session_id=session.pk,
            conversation_id=conversation_id,
            extra={
                "from_agent": {"id": from_agent.pk, "name": from_agent.name}
                if from_agent
                else None,
            },
        )

        def publish() -> None:
            payload = selectors.conversation_get_for_member(
                conversation_id=conversation_id, member_key=user.member_key
            )
            publish_event_on_commit(
                {"type": "conversation.assigned", "conversation": payload}, [user.member_key]
            )

        transaction.on_commit(publish)
    transfer.refresh_from_db()
    return transfer


def transfer_decline(*, user: User, transfer_id: object) -> Transfer:
    """The colleague says no; the first agent keeps the conversation."""
    with transaction.atomic():
        transfer = _pending_for(user, transfer_id, as_target=True)
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Transfer.Status.DECLINED, responded_at=timezone.now()
        )
        _publish(transfer, "transfer.updated")
    transfer.refresh_from_db()
    return transfer


def transfer_cancel(*, user: User, transfer_id: object) -> Transfer:
    """The first agent withdraws a transfer still waiting for an answer."""
    with transaction.atomic():
        transfer = _pending_for(user, transfer_id, as_target=False)
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Transfer.Status.CANCELLED, responded_at=timezone.now()
        )
        _publish(transfer, "transfer.updated")
    transfer.refresh_from_db()
    return transfer


def expire_scan(*, now=None) -> int:
    """Expire the current tenant's transfers pending for more than :data:`TRANSFER_TTL_S`;
    returns how many (both agents get ``transfer.updated``)."""
    now = now or timezone.now()
    expired = 0
    due = Transfer.objects.filter(
        status=Transfer.Status.PENDING, created_at__lte=now - timedelta(seconds=TRANSFER_TTL_S)
    ).values_list("pk", flat=True)
    for pk in list(due):
        with transaction.atomic():
            transfer = (
                Transfer.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, status=Transfer.Status.PENDING)
                .first()
            )
            if transfer is None:
                continue
            Transfer.objects.filter(pk=pk).update(status=Transfer.Status.EXPIRED, responded_at=now)
            _publish(transfer, "transfer.updated")
            expired += 1
    return expired


def pending_for_user(*, user: User) -> list[dict[str, Any]]:
    """Transfers waiting for the user's answer, and the ones they are waiting on, newest first."""
    rows = (
        Transfer.objects.select_related(
            "session__visitor", "from_agent", "to_agent", "to_workgroup"
        )
        .filter(Q(to_agent=user) | Q(from_agent=user), status=Transfer.Status.PENDING)
        .order_by("-created_at")
    )
    return [transfer_payload(t) for t in rows]


def invite(*, user: User, conversation_id: object, agent_id: object) -> User:
    """Bring a colleague into the caller's open conversation as a second agent (no load is
    counted for them); the visitor reads that they joined. Raises ``ServiceError``: ``invalid``
    (unknown, inactive or already there), ``not_found``, ``conflict`` (not the caller's)."""
    with transaction.atomic():
        session = _own_open_session(user, conversation_id)
        colleague = User.objects.filter(
            pk=parsing.positive_int(agent_id, "agent_id"), is_active=True, role="agent"
        ).first()
        if (
            colleague is None
            or Participant.objects.filter(
                conversation_id=session.conversation_id,
                member_key=colleague.member_key,
                left_at__isnull=True,
            ).exists()
        ):
            raise ServiceError(
                "invalid", _("Choose a colleague who is not in the conversation."), field="agent_id"
            )
        im_conversations.participant_add(
            conversation_id=session.conversation_id,
            member_key=colleague.member_key,
            name=colleague.name,
            role=Participant.Role.AGENT,
            user_id=colleague.pk,
        )
        session_line_post(
            session=session,
            code=syslines.JOINED,
            params={"agent": colleague.name},
        )
        conversation_id, key = session.conversation_id, colleague.member_key

        def publish() -> None:
            payload = selectors.conversation_get_for_member(
                conversation_id=conversation_id, member_key=key
            )
            publish_event_on_commit({"type": "conversation.added", "conversation": payload}, [key])

        transaction.on_commit(publish)
    return colleague


def requeue_open(*, user: User, leaving: bool = False) -> int:
    """Every open session ``user`` serves back to its queue (caller's transaction); returns how
    many. Each visitor keeps their place by ``queued_at`` = their last message and reads a
    system line; the agent leaves the conversation; the queues are dispatched after commit.

    ``leaving``: the agent's last inbox has been gone past the grace period
    (:func:`kefu.services.agents.offline_scan`) — only sessions of workgroups with
    ``requeue_on_leave`` move, the visitor reads that the agent had to leave, and the agent may
    be assigned them again when they come back; otherwise (disabled or deleted, see
    :func:`agent_release`) every open session moves and never goes back to them.
    """
    requeued = 0
    workgroups: set[int] = set()
    serving = Session.objects.filter(agent=user, status=Session.Status.OPEN)
    if leaving:
        serving = serving.filter(workgroup__requeue_on_leave=True)
    for pk in list(serving.values_list("pk", flat=True)):
        session = (
            Session.objects.select_for_update()
            .select_related("visitor")
            .filter(pk=pk, agent=user, status=Session.Status.OPEN)
            .first()
        )
        if session is None:
            continue
        now = timezone.now()
        Session.objects.filter(pk=session.pk).update(
            status=Session.Status.QUEUED,
            agent=None,
            queued_at=session.last_visitor_at or now,
            assigned_at=None,
            reassigned_from=None if leaving else user,
        )
        agent_leave(session=session, user_id=user.pk)
        if leaving:
            session_line_post(
                session=session,
                code=syslines.AGENT_LEFT,
                params={"agent": user.name},
            )
        else:
            session_line_post(session=session, code=syslines.REQUEUED)
        workgroups.add(session.workgroup_id)
        requeued += 1
    # one dispatch per workgroup, not per conversation: each tells every visitor waiting there
    # their place, so an agent of n conversations leaving cost n² events (one worker spent 60 s
    # on one agent)
    for workgroup_id in sorted(workgroups):
        transaction.on_commit(lambda wid=workgroup_id: workgroup_dispatch(workgroup_id=wid))
    return requeued


def agent_release(*, user: User, deleted: bool) -> int:
    """Hand on the live work of an agent who was disabled or deleted (receiver of
    :data:`org.signals.user_deactivated`, inside that transaction). Returns how many open
    conversations went back to their workgroup's queue.

    - every open session they serve: back to its queue (the visitor reads "connecting you to
      another colleague"; the longest-waiting rule keeps their place by ``queued_at`` = their
      last message), the agent leaves the conversation, the queue is dispatched after commit;
    - visitor conversations they joined as a second agent: they leave;
    - transfers waiting for their answer, or started by them: cancelled;
    - their service status: offline; when ``deleted``, they also leave their workgroups and no
      longer lead any.

    Nothing of the past changes: sessions keep ``reassigned_from``, messages their sender name.
    """
    requeued = requeue_open(user=user)
    live = Session.objects.exclude(status=Session.Status.CLOSED).values("conversation_id")
    for conversation_id in Participant.objects.filter(
        member_key=user.member_key, left_at__isnull=True, conversation_id__in=live
    ).values_list("conversation_id", flat=True):
        im_conversations.participant_remove(
            conversation_id=conversation_id, member_key=user.member_key
        )
        publish_event_on_commit(
            {"type": "conversation.removed", "conversation_id": conversation_id, "reason": "left"},
            [user.member_key],
        )
    for transfer in Transfer.objects.filter(
        Q(to_agent=user) | Q(from_agent=user), status=Transfer.Status.PENDING
    ):
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Transfer.Status.CANCELLED, responded_at=timezone.now()
        )
        _publish(transfer, "transfer.updated")
    AgentState.objects.filter(user=user).update(
        status=AgentState.Status.OFFLINE, status_changed_at=timezone.now()
    )
    # A dispatcher may have claimed this agent (and committed) after the first pass: with the
    # state row now locked and offline, no claim can follow, and a second pass takes that one.
    requeued += requeue_open(user=user)
    if deleted:
        user.workgroups.clear()
        Workgroup.objects.filter(lead=user).update(lead=None)
    return requeued
