"""The customer-service send path: a visitor's message (starting and routing a session when
needed), the keyword auto-reply or robot turn after it, and an agent's reply.

Lock order is session → conversation everywhere (docs/architecture.md, "Routing (kefu)")."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import services as im_services
from im.models import Conversation, Message, Participant
from kefu import hours, selectors, sensitive
from kefu.models import Session, Visitor, Workgroup
from kefu.robot import answers as robot
from kefu.robot.persona import ROBOT_MODES
from kefu.senders import agent_sender, visitor_sender
from kefu.senders import language_for as _language_for
from kefu.services import automation, blocking, routing
from kefu.services.routing import workgroup_dispatch
from org.models import User
from weiyu.errors import ServiceError


def session_start(*, visitor: Visitor, department_id: object = None) -> Session:
    """Open a session (and its conversation) for a visitor who has none live: ``queued`` on a
    human-only channel (the caller dispatches it), ``robot`` on a robot or robot-first channel.
    The workgroup comes from :func:`kefu.routing.route` (the department chosen in the widget,
    the channel's routing rules, else the channel's workgroup) and the queue limits apply
    (:func:`kefu.routing.queue_admit`).

    When the visitor already has a live session (another tab won the race) that one is returned.
    Raises ``ServiceError``: ``invalid`` (a department the channel does not offer),
    ``queue_full`` (the queue is full and the visitor should leave a message), ``closed``
    (outside the workgroup's work hours, :mod:`kefu.hours`).
    """
    existing = selectors.visitor_live_session(visitor_id=visitor.pk)
    if existing is not None:
        return existing
    channel = visitor.channel
    with_robot = channel.mode in ROBOT_MODES
    workgroup_id, skill_id = routing.route(
        channel=channel, visitor=visitor, department_id=department_id
    )
    if not with_robot:
        hours.check_open(
            calendar_id=Workgroup.objects.filter(pk=workgroup_id)
            .values_list("calendar_id", flat=True)
            .first(),
            language=_language_for(visitor),
        )
    try:
        with transaction.atomic():
            status = Session.Status.ROBOT
            if not with_robot:
                workgroup_id, status = routing.queue_admit(workgroup_id=workgroup_id)
            conversation = im_services.conversation_create(
                kind=Conversation.Kind.VISITOR, title=visitor.name
            )
            im_services.participant_add(
                conversation=conversation,
                member_key=visitor.member_key,
                name=visitor.name,
                role=Participant.Role.VISITOR,
            )
            session = Session.objects.create(
                conversation=conversation,
                visitor=visitor,
                channel=channel,
                workgroup_id=workgroup_id,
                skill_id=skill_id,
                status=status,
                queued_at=timezone.now() if status == Session.Status.QUEUED else None,
            )
    except IntegrityError:
        existing = selectors.visitor_live_session(visitor_id=visitor.pk)
        if existing is None:
            raise
        return existing
    return session


def visitor_message_send(
    *,
    visitor: Visitor,
    conversation_id: object,
    content: object,
    client_msg_id: object,
    department_id: object = None,
) -> tuple[Message, bool]:
    """A visitor's message. Without ``conversation_id`` it goes to the live session, or starts one
    (and routes it) when there is none. Returns ``(message, created)`` like ``message_send``.
    The sensitive-word filter applies (:mod:`kefu.sensitive`: masked, or ``forbidden``). In a
    session the robot serves, the robot answers it or hands over (:mod:`kefu.robot`).
    ``department_id``: the workgroup the visitor chose, for a message that starts a session.
    """
    blocking.check(visitor=visitor)
    sender = visitor_sender(visitor)
    content = sensitive.apply(content)
    if conversation_id is not None:
        if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
            raise ServiceError(
                "invalid", _("conversation_id must be an integer."), field="conversation_id"
            )
        with transaction.atomic():
            # lock order is session → conversation everywhere (see agent_message_send)
            session = (
                Session.objects.select_for_update(of=("self",))
                .select_related("channel", "visitor")
                .filter(conversation_id=conversation_id)
                .exclude(status=Session.Status.CLOSED)
                .first()
            )
            result = im_services.message_send(
                conversation_id=conversation_id,
                sender=sender,
                content=content,
                client_msg_id=client_msg_id,
            )
            if result[1] and session is not None:
                _after_visitor_message(session, result[0])
        return result
    if isinstance(client_msg_id, str):
        stored = Message.objects.filter(sender_key=sender.key, client_msg_id=client_msg_id).first()
        if stored is not None:
            return stored, False
    session = session_start(visitor=visitor, department_id=department_id)
    with transaction.atomic():
        Session.objects.select_for_update().filter(pk=session.pk).first()  # session → conversation
        result = im_services.message_send(
            conversation_id=session.conversation_id,
            sender=sender,
            content=content,
            client_msg_id=client_msg_id,
        )
        if result[1]:
            _after_visitor_message(session, result[0])
    if session.status == Session.Status.QUEUED:
        # first come, first served: older waiting visitors are assigned before this one
        workgroup_dispatch(workgroup_id=session.workgroup_id)
    return result


def _after_visitor_message(session: Session, message: Message) -> None:
    """A new visitor text in a live session: its clock moves, then a keyword auto-reply answers
    it, or else the robot does when it serves the session (call inside the transaction)."""
    Session.objects.filter(pk=session.pk).update(last_visitor_at=message.created_at)
    if message.msg_type != Message.Type.TEXT:
        return
    rule = automation.auto_reply_for(session.channel, message.content)
    if rule is not None:
        automation.auto_reply_post(session=session, rule=rule)
    elif session.status == Session.Status.ROBOT:
        robot.on_visitor_message(session=session, message=message)


def agent_message_send(
    *, user: User, conversation_id: object, **fields: object
) -> tuple[Message, bool]:
    """An agent's (or staff member's) message, with the fields of ``im.services.message_send``;
    the first public reply in a session sets its ``first_response_at``. Public replies to a
    visitor pass the sensitive-word filter (:mod:`kefu.sensitive`)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    if (
        sensitive.words()
        and fields.get("internal") is not True
        and Session.objects.filter(conversation_id=conversation_id).exists()
    ):
        fields["content"] = sensitive.apply(fields.get("content"))
    with transaction.atomic():
        # Lock order is session → conversation everywhere (assign and close do the same), so the
        # session row is touched before message_send locks the conversation row.
        if fields.get("internal") is not True:
            now = timezone.now()
            Session.objects.filter(
                conversation_id=conversation_id, first_response_at__isnull=True
            ).update(first_response_at=now)
            Session.objects.filter(conversation_id=conversation_id).update(last_agent_at=now)
        return im_services.message_send(
            conversation_id=conversation_id, sender=agent_sender(user), **fields
        )
