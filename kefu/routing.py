"""Where a new conversation goes, and what happens past a workgroup's queue limits (KF-6, KF-7).

:func:`route` picks the workgroup (and the skill asked for) of a new session: the department the
visitor chose in the widget when the channel offers it, else the first matching routing rule of
the channel (page URL, referrer, language, visitor tag), else the channel's workgroup.

:func:`queue_admit` applies ``max_queue_length`` when a session would join a queue, and
:func:`queue_wait_scan` (every few seconds, from Celery beat) applies ``max_wait_s`` to sessions
already waiting; both act by the workgroup's ``overflow_action`` (see
:class:`kefu.models.Workgroup`). A session overflows at most once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im import services as im_services
from im.models import Message
from kefu.models import Channel, RoutingRule, Session, Visitor, Workgroup
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)


def _language_for(visitor: Visitor) -> str:
    return "en" if visitor.language.lower().startswith("en") else "zh-hans"


def departments(channel: Channel) -> list[dict[str, object]]:
    """The departments a channel's widget offers: ``[{"id", "name"}]`` (empty: no choice)."""
    return [{"id": w.pk, "name": w.name} for w in channel.departments.order_by("name", "pk")]


def _matches(rule: RoutingRule, visitor: Visitor, tags: list[str]) -> bool:
    wanted = rule.value.strip().lower()
    if rule.attribute == RoutingRule.Attribute.TAG:
        values = tags
    else:
        values = [str(getattr(visitor, rule.attribute) or "").lower()]
    for value in values:
        if rule.operator == RoutingRule.Operator.EQUALS and value == wanted:
            return True
        if rule.operator == RoutingRule.Operator.STARTS_WITH and value.startswith(wanted):
            return True
        if rule.operator == RoutingRule.Operator.CONTAINS and wanted in value:
            return True
    return False


def route(
    *, channel: Channel, visitor: Visitor, department_id: object = None
) -> tuple[int, int | None]:
    """``(workgroup id, skill id or None)`` for a new session of ``visitor``.

    Raises ``ServiceError("invalid")`` for a ``department_id`` the channel does not offer.
    """
    if department_id is not None:
        if isinstance(department_id, bool) or not isinstance(department_id, int):
            raise ServiceError("invalid", _("Choose one of the departments."), field="workgroup_id")
        if not channel.departments.filter(pk=department_id).exists():
            raise ServiceError("invalid", _("Choose one of the departments."), field="workgroup_id")
        return department_id, None
    rules = list(channel.routing_rules.all())
    if rules:
        tags = [t.lower() for t in visitor.tags.values_list("name", flat=True)]
        for rule in rules:
            if _matches(rule, visitor, tags):
                return rule.workgroup_id, rule.skill_id
    return channel.workgroup_id, None


def queue_admit(*, workgroup_id: int) -> tuple[int, str]:
    """Whether one more visitor may wait in the workgroup's queue. Returns ``(workgroup id,
    status)``: the same workgroup or its overflow one, and ``queued`` or ``robot``. Call inside
    the transaction that creates the session: the workgroup row is locked, so the limit holds
    under concurrent arrivals.

    Raises ``ServiceError("queue_full")`` when the action is to leave a message (nothing is
    stored; the widget offers the leave-a-message form with the visitor's text).
    """
    limit = Workgroup.objects.values_list("max_queue_length", flat=True).get(pk=workgroup_id)
    if not limit:
        return workgroup_id, Session.Status.QUEUED  # no limit: nothing to serialise
    workgroup = Workgroup.objects.select_for_update().get(pk=workgroup_id)
    if not workgroup.max_queue_length:
        return workgroup.pk, Session.Status.QUEUED
    waiting = Session.objects.filter(workgroup=workgroup, status=Session.Status.QUEUED).count()
    if waiting < workgroup.max_queue_length:
        return workgroup.pk, Session.Status.QUEUED
    action = workgroup.overflow_action
    if action == Workgroup.OverflowAction.OVERFLOW and workgroup.overflow_workgroup_id:
        return workgroup.overflow_workgroup_id, Session.Status.QUEUED
    if action == Workgroup.OverflowAction.ROBOT:
        return workgroup.pk, Session.Status.ROBOT
    if action == Workgroup.OverflowAction.LEAVE_MESSAGE:
        raise ServiceError(
            "queue_full",
            _("All our agents are busy. Please leave a message and we will get back to you."),
        )
    return workgroup.pk, Session.Status.QUEUED


def _post_system(session: Session, text: str, meta: dict[str, object]) -> None:
    im_services.message_send(
        conversation_id=session.conversation_id,
        sender=im_services.SYSTEM,
        content=text,
        msg_type=Message.Type.SYSTEM,
        meta=meta,
    )


def queue_wait_scan(*, now=None) -> int:
    """Apply ``max_wait_s`` to the current tenant's waiting sessions: each one waiting longer
    than its workgroup allows gets the workgroup's overflow action, once. Returns how many were
    acted on. Safe to run concurrently (rows are locked and skipped when busy)."""
    from kefu import robot, services

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
                language = _language_for(session.visitor)
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
                    im_services.message_send(
                        conversation_id=session.conversation_id,
                        sender=robot.sender_for(session),
                        content=text,
                        meta={"robot": {"overflow": True}},
                    )
                    dispatch.add(workgroup.pk)
                elif action == Workgroup.OverflowAction.LEAVE_MESSAGE:
                    with translation.override(language):
                        text = _(
                            "Sorry for the wait: all our agents are busy. Please leave a "
                            "message and we will get back to you."
                        )
                    _post_system(session, text, {"leave_message": True})
                    services.session_close(session_id=session.pk, closed_by=im_services.SYSTEM)
                    dispatch.add(workgroup.pk)
                else:
                    continue
                acted += 1
    for workgroup_id in sorted(dispatch):
        services.workgroup_dispatch(workgroup_id=workgroup_id)
    return acted
