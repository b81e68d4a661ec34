"""What customer service adds to the one send path (docs/architecture.md, "The send path"): a
visitor's message (opening and routing a session when needed), the hook kefu registers for
visitor conversations (sensitive words, the session's clocks, the auto-reply or robot turn), and
an agent's reply.

Lock order is session → conversation everywhere (docs/architecture.md, "Routing (kefu)")."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.hooks import SendHook
from im.models import Attachment, Conversation, Message, Participant
from im.senders import Sender
from im.services import conversations as im_conversations
from im.services import drafts as im_drafts
from im.services import messages as im_messages
from kefu import hours, selectors, sensitive, webhooks
from kefu.channels import adapter_for
from kefu.channels.delivery import delivery_create
from kefu.models import Channel, Session, Visitor, Workgroup
from kefu.robot import answers as robot
from kefu.robot.persona import ROBOT_MODES
from kefu.senders import agent_sender, visitor_sender
from kefu.senders import language_for as _language_for
from kefu.services import automation, blocking, files, labels, routing, snooze
from kefu.services.routing import workgroup_dispatch
from org.models import User
from tenants import quotas
from weiyu import parsing
from weiyu.errors import ServiceError


def _session_route(
    *, visitor: Visitor, department_id: object
) -> tuple[int, int | None, Workgroup | None]:
    """``(workgroup_id, skill_id, workgroup)`` for a new session of ``visitor`` (reads only):
    the department chosen in the widget, the channel's routing rules, else the channel's
    workgroup (:func:`kefu.services.routing.route`), and that workgroup's row (its work hours,
    queue limit and strategy; None on a robot channel, where nobody queues yet). Outside the
    workgroup's work hours a human-only channel refuses with ``ServiceError("closed")``
    (:mod:`kefu.hours`)."""
    channel = visitor.channel
    workgroup_id, skill_id = routing.route(
        channel=channel, visitor=visitor, department_id=department_id
    )
    if channel.mode in ROBOT_MODES:
        return workgroup_id, skill_id, None  # the robot answers at any hour
    workgroup = selectors.workgroup_get(workgroup_id=workgroup_id)
    hours.check_open(
        calendar_id=workgroup.calendar_id if workgroup else None, language=_language_for(visitor)
    )
    return workgroup_id, skill_id, workgroup


def _session_open(
    *,
    visitor: Visitor,
    workgroup_id: int,
    skill_id: int | None,
    queue_limit: int,
    thread_key: str = "",
) -> Session:
    """Write a new session and its conversation (call inside a transaction): ``queued`` on a
    human-only channel (dispatched by the caller after commit), ``robot`` on a robot or
    robot-first channel. The queue limits apply (:func:`kefu.services.routing.queue_admit`: raises
    ``ServiceError("queue_full")``; ``queue_limit``: the workgroup's, as read before). Raises
    ``IntegrityError`` when the visitor already has a live session (the partial unique index;
    the caller's savepoint takes it back)."""
    channel = visitor.channel
    status = Session.Status.ROBOT
    if channel.mode not in ROBOT_MODES:
        workgroup_id, status = routing.queue_admit(workgroup_id=workgroup_id, limit=queue_limit)
    conversation = im_conversations.conversation_create(
        kind=Conversation.Kind.VISITOR,
        title=visitor.name,
        members=(
            im_conversations.Member(
                key=visitor.member_key, name=visitor.name, role=Participant.Role.VISITOR
            ),
        ),
    )
    session = Session.objects.create(
        conversation=conversation,
        visitor=visitor,
        channel=channel,
        workgroup_id=workgroup_id,
        skill_id=skill_id,
        status=status,
        queued_at=timezone.now() if status == Session.Status.QUEUED else None,
        thread_key=thread_key,
    )
    webhooks.conversation_emit(
        "conversation.created", session_id=session.pk, conversation_id=conversation.pk
    )
    return session


def visitor_message_send(
    *,
    visitor: Visitor,
    conversation_id: object,
    content: object,
    client_msg_id: object,
    department_id: object = None,
    msg_type: object = Message.Type.TEXT,
    attachment_id: object = None,
    thread_key: str = "",
) -> tuple[Message, bool]:
    """A visitor's message: text, or a file it uploaded (``msg_type`` ``image``/``voice``/
    ``video``/``file`` with ``attachment_id`` from ``POST /api/v1/widget/files``, ``content`` an
    optional caption). Returns ``(message, created)`` like
    ``im.services.messages.message_send``.

    With ``conversation_id`` it is sent there through the one send path (``message_send``; the
    hook kefu registers for visitor conversations, :class:`VisitorConversationHook`, applies the
    sensitive-word filter, moves the session's clock and lets an auto-reply or the robot answer).
    Without one it goes to the visitor's live session, or starts one: the message is validated
    first, then the session, its conversation and the message are written in one transaction;
    when nobody else of the workgroup waits, an available agent is given the session in that
    transaction too (:func:`kefu.services.routing.session_claim`), otherwise the queue is
    dispatched after commit (first come, first served: older waiting visitors are assigned
    before this one). ``department_id``: the workgroup the visitor chose.
    A file uploaded before the visitor had a conversation joins the conversation its message goes
    to: the send refuses it before writing anything, :func:`kefu.services.files.attachment_claim`
    moves it (one ``UPDATE``) and the send is made again; a file already in the conversation costs
    what a staff member's does.

    Raises ``ServiceError``: ``forbidden`` (blocked visitor, forbidden word), ``invalid``,
    ``not_found``, ``conversation_closed``, and for a new session ``closed`` (outside work
    hours), ``queue_full`` (kefu.services.routing.queue_admit) or ``quota_exceeded`` (the plan's
    conversations this month are used up: :mod:`tenants.quotas`; counted once the session is
    written) — nothing is written then; the widget offers the leave-a-message form for the last
    three.

    ``thread_key`` (e-mail, :mod:`kefu.channels.email`): the live session of that thread is
    used or started, so one contact can have a conversation per e-mail thread.
    """
    blocking.check(visitor=visitor)
    sender = visitor_sender(visitor)
    is_text = msg_type in (None, Message.Type.TEXT)
    if not is_text and msg_type not in im_drafts.MEDIA_TYPES:
        raise ServiceError("invalid", _("Unknown message type."), field="msg_type")

    def send(target: int, draft: im_drafts.MessageDraft | None) -> tuple[Message, bool]:
        if is_text:
            return im_messages.message_send(
                conversation_id=target,
                sender=sender,
                content=content,
                client_msg_id=client_msg_id,
                draft=draft,
            )

        def attempt() -> tuple[Message, bool]:
            return im_messages.message_send(
                conversation_id=target,
                sender=sender,
                content=content,
                client_msg_id=client_msg_id,
                msg_type=msg_type,
                attachment_id=attachment_id,
            )

        try:
            return attempt()
        except ServiceError as exc:
            # refused before any write: the file may still wait for its conversation (uploaded
            # before the widget knew one); claim it and send again
            if exc.field != "attachment_id" or not files.attachment_claim(
                visitor=visitor, attachment_id=attachment_id, conversation_id=target
            ):
                raise
            return attempt()

    if conversation_id is not None:
        if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
            raise ServiceError(
                "invalid", _("conversation_id must be an integer."), field="conversation_id"
            )
        return send(conversation_id, None)
    im_drafts.client_msg_id_check(client_msg_id)
    draft = None
    if is_text:
        draft = im_drafts.message_draft(sender=sender, content=content)
        draft.content = sensitive.apply(draft.content)
    elif not Attachment.objects.filter(
        pk=parsing.positive_int(attachment_id, "attachment_id"),
        uploader_key=sender.key,
        kind=msg_type,
    ).exists():
        raise ServiceError(
            "invalid", _("Upload the file to this conversation first."), field="attachment_id"
        )
    if client_msg_id is not None:
        stored = im_selectors.message_by_client_id(
            sender_key=sender.key, client_msg_id=str(client_msg_id)
        )
        if stored is not None:
            im_messages.message_republish(stored)
            return stored, False
    live = selectors.visitor_live_session(visitor_id=visitor.pk, thread_key=thread_key)
    if live is None:
        quotas.check("conversations")  # the plan's conversations this month (one Redis GET)
        workgroup_id, skill_id, workgroup = _session_route(
            visitor=visitor, department_id=department_id
        )
        with transaction.atomic():
            opened = True
            try:
                with transaction.atomic():
                    live = _session_open(
                        visitor=visitor,
                        workgroup_id=workgroup_id,
                        skill_id=skill_id,
                        queue_limit=workgroup.max_queue_length if workgroup else 0,
                        thread_key=thread_key,
                    )
            except IntegrityError:
                # another tab of this visitor opened a session meanwhile: write into that one
                opened = False
                live = selectors.visitor_live_session(visitor_id=visitor.pk, thread_key=thread_key)
                if live is None:
                    raise
            result = send(live.conversation_id, draft)
            if opened:
                schema = connection.schema_name
                transaction.on_commit(lambda: quotas.count("conversations", schema=schema))
            # after the message, so the visitor sees it before "X is serving you": an agent now,
            # in this transaction, when nobody else waits; else the queue, after commit
            if (
                opened
                and live.status == Session.Status.QUEUED
                and (
                    workgroup is None
                    or routing.session_claim(session=live, workgroup=workgroup) is None
                )
            ):
                workgroup_id = live.workgroup_id
                transaction.on_commit(lambda: workgroup_dispatch(workgroup_id=workgroup_id))
            return result
    return send(live.conversation_id, draft)


class _AgentReply(NamedTuple):
    """What :meth:`VisitorConversationHook.before_append` learns of an agent's reply's session."""

    session_id: int
    channel_id: int
    kind: str
    visitor_id: int


class VisitorConversationHook(SendHook):
    """What kefu adds to the send path of ``visitor`` conversations (registered in
    ``KefuConfig.ready``; im.hooks). Only messages people write count (text, files, stickers):
    recalls, system lines and the robot's answers pass untouched.

    - the sensitive-word filter (:mod:`kefu.sensitive`) on the visitor's messages and agents'
      public replies (masked, or ``ServiceError("forbidden")``);
    - the session's clock, in the send's transaction and before the conversation row is locked
      (lock order session → conversation, as assignment and closing take them): a visitor's
      message sets ``last_visitor_at`` (and ends a snooze, :mod:`kefu.services.snooze`); an agent's public reply sets ``last_agent_at`` and, the
      first time, ``first_response_at``; one ``UPDATE`` either way;
    - after a visitor's text: the label rules that match add their labels
      (:func:`kefu.services.labels.label_rules_apply`); a keyword auto-reply answers it, or else the robot does when it
      serves the session (:mod:`kefu.automation`, :mod:`kefu.robot`);
    - on a messaging channel (Telegram, WeChat…, :mod:`kefu.channels`): an agent's reply the
      vendor would refuse now is refused (``ServiceError("reply_window_closed")``, WeChat's 48
      hours), and agents' and the robot's messages are queued for delivery to the customer
      (:func:`kefu.channels.delivery.delivery_create`; the widget's visitors get them by socket;
      the system lines a customer reads: :func:`kefu.channels.delivery.session_line_post`).
    """

    def _counts(self, sender: Sender, draft: im_drafts.MessageDraft) -> bool:
        return draft.msg_type in im_drafts.USER_TYPES and sender.type in (
            Message.SenderType.VISITOR,
            Message.SenderType.AGENT,
        )

    def prepare(
        self, *, conversation_id: int, sender: Sender, draft: im_drafts.MessageDraft
    ) -> None:
        if self._counts(sender, draft) and not draft.internal:
            draft.content = sensitive.apply(draft.content)

    def before_append(
        self,
        *,
        conversation_id: int,
        sender: Sender,
        draft: im_drafts.MessageDraft,
        now: dt.datetime,
    ) -> tuple[int, str, int, bool] | _AgentReply | None:
        if draft.msg_type == Message.Type.RECALL and not draft.internal:
            _recall_check(conversation_id)
        if not self._counts(sender, draft) or draft.internal:
            return None
        with connection.cursor() as cursor:
            if sender.type == Message.SenderType.VISITOR:
                # one statement still: the customer's reply also ends a snooze, and the old
                # row (read under the update's lock) tells whether there was one to end
                cursor.execute(
                    "WITH old AS (SELECT id, snoozed_at FROM kefu_session "
                    "WHERE conversation_id = %s AND status <> %s FOR UPDATE) "
                    "UPDATE kefu_session s SET last_visitor_at = %s, snoozed_at = NULL, "
                    "snoozed_until = NULL, snoozed_by_id = NULL FROM old WHERE s.id = old.id "
                    "RETURNING s.id, s.status, s.channel_id, old.snoozed_at IS NOT NULL",
                    [conversation_id, Session.Status.CLOSED, now],
                )
                return cursor.fetchone()
            # the channel's kind comes back in the same statement: the reply path's budget
            cursor.execute(
                "UPDATE kefu_session s SET last_agent_at = %s, "
                "first_response_at = COALESCE(s.first_response_at, %s) FROM kefu_channel c "
                "WHERE s.conversation_id = %s AND c.id = s.channel_id "
                "RETURNING s.id, s.channel_id, c.kind, s.visitor_id",
                [now, now, conversation_id],
            )
            row = cursor.fetchone()
        if row is None or row[2] == Channel.Kind.WIDGET:
            return None
        reply = _AgentReply(*row)
        adapter = adapter_for(reply.kind)
        if adapter is None:
            return None
        if draft.msg_type != Message.Type.TEXT and (
            draft.msg_type not in adapter.capabilities.attachments
        ):
            raise ServiceError(
                "invalid",
                _("This channel cannot carry this kind of message."),
                field="msg_type",
            )
        if adapter.capabilities.reply_window_s:
            session = Session.objects.only("last_visitor_at").get(pk=reply.session_id)
            adapter.reply_window_check(session=session)
        return reply

    def after_append(self, *, message: Message, sender: Sender, context: Any) -> None:
        webhooks.message_emit(message)  # nothing but a set look-up without a subscription
        if isinstance(context, _AgentReply):
            delivery_create(
                message=message, channel_id=context.channel_id, visitor_id=context.visitor_id
            )
            return
        if (
            context is None
            and sender.type == Message.SenderType.ROBOT
            and message.msg_type in im_drafts.USER_TYPES
        ):
            _robot_delivery(message)
            return
        if context is None:
            return
        session_id, status, channel_id, was_snoozed = context
        if was_snoozed:
            snooze.snooze_woken_publish(session_id=session_id)
        if message.msg_type != Message.Type.TEXT:
            return
        label_rules = automation.label_rules()
        if label_rules:
            labels.label_rules_apply(
                session_id=session_id,
                channel_id=channel_id,
                content=message.content,
                rules=label_rules,
            )
        rule = automation.auto_reply_for(channel_id=channel_id, content=message.content)
        if rule is None and status != Session.Status.ROBOT:
            return
        session = Session.objects.select_related("channel", "visitor").get(pk=session_id)
        if rule is not None:
            automation.auto_reply_post(session=session, rule=rule)
        else:
            robot.on_visitor_message(session=session, message=message)


def _recall_check(conversation_id: int) -> None:
    """A message already at a messaging channel's vendor cannot be taken back from the customer
    (``ServiceError("forbidden")``), unless the kind can recall (``capabilities.recall``)."""
    kind = (
        Session.objects.filter(conversation_id=conversation_id)
        .values_list("channel__kind", flat=True)
        .first()
    )
    adapter = adapter_for(kind or "")
    if adapter is not None and not adapter.capabilities.recall:
        raise ServiceError(
            "forbidden",
            _("The customer already has this message in %(channel)s; it cannot be recalled.")
            % {"channel": Channel.Kind(kind).label},
        )


def _robot_delivery(message: Message) -> None:
    """Queue the robot's (or an auto-reply's) message for a messaging channel's customer."""
    row = (
        Session.objects.filter(conversation_id=message.conversation_id)
        .exclude(channel__kind=Channel.Kind.WIDGET)
        .values_list("channel_id", "visitor_id")
        .first()
    )
    if row is not None:
        delivery_create(message=message, channel_id=row[0], visitor_id=row[1])


def agent_message_send(
    *, user: User, conversation_id: object, **fields: object
) -> tuple[Message, bool]:
    """An agent's (or staff member's) message: ``im.services.messages.message_send`` with the
    user as sender and the fields it takes. In a visitor conversation the hook kefu registers applies
    (:class:`VisitorConversationHook`)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    return im_messages.message_send(
        conversation_id=conversation_id, sender=agent_sender(user), **fields
    )
