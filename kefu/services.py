"""Customer-service state changes: visitors, sessions, routing and the queue, agent status.

Routing (KF-6, DESIGN.md §4): a new session is assigned by its workgroup's strategy (round robin,
least busy, skill, sticky — :class:`kefu.models.Workgroup`) to an agent who is online, active and
under their concurrent-chat cap; otherwise it waits in the workgroup's queue and the visitor is
told its position. Assignment is race-free: each attempt locks the workgroup row (serialising
assignments within the workgroup, so the queue order holds) and claims a slot of the chosen
agent with one conditional ``UPDATE`` (so an agent in two workgroups is never pushed over the
cap). docs/architecture.md, "Routing".
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.core import signing
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im import services as im_services
from im.hooks import SendHook
from im.models import Conversation, Message, Participant
from im.services import Sender
from kefu import automation, blocking, hours, presence, robot, routing, selectors, sensitive
from kefu.models import AgentState, Channel, Session, Visitor, Workgroup
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

logger = logging.getLogger(__name__)

VISITOR_TOKEN_SALT = "weiyu.kefu.visitor"  # noqa: S105 - a salt, not a secret
VISITOR_TOKEN_MAX_AGE = 365 * 24 * 3600  # seconds


# --- visitors -----------------------------------------------------------------------------------


def visitor_token_make(visitor: Visitor) -> str:
    """A signed token naming the visitor *and the tenant schema*, so it is refused elsewhere."""
    return signing.dumps(
        {"v": visitor.pk, "s": connection.schema_name}, salt=VISITOR_TOKEN_SALT, compress=True
    )


def visitor_from_token(token: object) -> Visitor:
    """The visitor a token names. Raises ``ServiceError("invalid_token")`` for a malformed,
    tampered, expired (1 year) or other-tenant token, or a visitor that no longer exists."""
    error = ServiceError(
        "invalid_token", _("Your chat session is not valid here. Please reload the page.")
    )
    if not isinstance(token, str) or len(token) > 512:
        raise error
    try:
        data = signing.loads(token, salt=VISITOR_TOKEN_SALT, max_age=VISITOR_TOKEN_MAX_AGE)
    except signing.BadSignature as exc:
        raise error from exc
    if not isinstance(data, dict) or data.get("s") != connection.schema_name:
        raise error
    visitor = Visitor.objects.select_related("channel").filter(pk=data.get("v")).first()
    if visitor is None:
        raise error
    return visitor


def _clip(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def visitor_start(
    *,
    channel: Channel,
    token: object = None,
    ip_address: str | None = None,
    user_agent: str = "",
    page_url: object = "",
    referrer: object = "",
    language: object = "",
) -> tuple[Visitor, str]:
    """Resume the visitor named by ``token`` on this channel, or create a new one.

    Returns ``(visitor, token)``. A bad or foreign token is not an error: a new visitor is made.
    """
    visitor = None
    if token:
        try:
            visitor = visitor_from_token(token)
        except ServiceError:
            visitor = None
        if visitor is not None and visitor.channel_id != channel.pk:
            visitor = None
    fields = {
        "ip_address": ip_address,
        "user_agent": _clip(user_agent, 500),
        "page_url": _clip(page_url, 2000),
        "referrer": _clip(referrer, 2000),
        "language": _clip(language, 16),
    }
    if visitor is None:
        visitor = Visitor.objects.create(channel=channel, name="", **fields)
        with translation.override(_language_for(visitor)):
            visitor.name = _("Visitor %(number)04d") % {"number": visitor.pk % 10000}
        visitor.save(update_fields=["name"])
    else:
        for key, value in fields.items():
            if value or key == "ip_address":
                setattr(visitor, key, value)
        visitor.save(update_fields=[*fields, "last_seen_at"])
    return visitor, visitor_token_make(visitor)


def _language_for(visitor: Visitor) -> str:
    return "en" if visitor.language.lower().startswith("en") else "zh-hans"


def visitor_sender(visitor: Visitor) -> Sender:
    return Sender(key=visitor.member_key, type=Message.SenderType.VISITOR, name=visitor.name)


def agent_sender(user: User) -> Sender:
    return Sender(
        key=user.member_key, type=Message.SenderType.AGENT, name=user.name, user_id=user.pk
    )


# --- sessions -----------------------------------------------------------------------------------


def _session_route(*, visitor: Visitor, department_id: object) -> tuple[int, int | None]:
    """``(workgroup_id, skill_id)`` for a new session of ``visitor`` (reads only): the department
    chosen in the widget, the channel's routing rules, else the channel's workgroup
    (:func:`kefu.routing.route`); outside the workgroup's work hours a human-only channel refuses
    with ``ServiceError("closed")`` (:mod:`kefu.hours`)."""
    channel = visitor.channel
    workgroup_id, skill_id = routing.route(
        channel=channel, visitor=visitor, department_id=department_id
    )
    if channel.mode not in robot.ROBOT_MODES:
        hours.check_open(
            calendar_id=Workgroup.objects.filter(pk=workgroup_id)
            .values_list("calendar_id", flat=True)
            .first(),
            language=_language_for(visitor),
        )
    return workgroup_id, skill_id


def _session_open(*, visitor: Visitor, workgroup_id: int, skill_id: int | None) -> Session:
    """Write a new session and its conversation (call inside a transaction): ``queued`` on a
    human-only channel (dispatched by the caller after commit), ``robot`` on a robot or
    robot-first channel. The queue limits apply (:func:`kefu.routing.queue_admit`: raises
    ``ServiceError("queue_full")``). Raises ``IntegrityError`` when the visitor already has a
    live session (the partial unique index; the caller's savepoint takes it back)."""
    channel = visitor.channel
    status = Session.Status.ROBOT
    if channel.mode not in robot.ROBOT_MODES:
        workgroup_id, status = routing.queue_admit(workgroup_id=workgroup_id)
    conversation = im_services.conversation_create(
        kind=Conversation.Kind.VISITOR,
        title=visitor.name,
        members=(
            im_services.Member(
                key=visitor.member_key, name=visitor.name, role=Participant.Role.VISITOR
            ),
        ),
    )
    return Session.objects.create(
        conversation=conversation,
        visitor=visitor,
        channel=channel,
        workgroup_id=workgroup_id,
        skill_id=skill_id,
        status=status,
        queued_at=timezone.now() if status == Session.Status.QUEUED else None,
    )


def visitor_message_send(
    *,
    visitor: Visitor,
    conversation_id: object,
    content: object,
    client_msg_id: object,
    department_id: object = None,
) -> tuple[Message, bool]:
    """A visitor's text message. Returns ``(message, created)`` like ``im.services.message_send``.

    With ``conversation_id`` it is sent there through the one send path (``message_send``; the
    hook kefu registers for visitor conversations, :class:`VisitorConversationHook`, applies the
    sensitive-word filter, moves the session's clock and lets an auto-reply or the robot answer).
    Without one it goes to the visitor's live session, or starts one: the message is validated
    first, then the session, its conversation and the message are written in one transaction,
    and a queued session is dispatched after commit (first come, first served: older waiting
    visitors are assigned before this one). ``department_id``: the workgroup the visitor chose.

    Raises ``ServiceError``: ``forbidden`` (blocked visitor, forbidden word), ``invalid``,
    ``not_found``, ``conversation_closed``, and for a new session ``closed`` (outside work
    hours) or ``queue_full`` (kefu.routing.queue_admit) — nothing is written then.
    """
    blocking.check(visitor=visitor)
    sender = visitor_sender(visitor)
    if conversation_id is not None:
        if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
            raise ServiceError(
                "invalid", _("conversation_id must be an integer."), field="conversation_id"
            )
        return im_services.message_send(
            conversation_id=conversation_id,
            sender=sender,
            content=content,
            client_msg_id=client_msg_id,
        )
    im_services.client_msg_id_check(client_msg_id)
    draft = im_services.message_draft(sender=sender, content=content)
    draft.content = sensitive.apply(draft.content)
    if client_msg_id is not None:
        stored = Message.objects.filter(sender_key=sender.key, client_msg_id=client_msg_id).first()
        if stored is not None:
            return stored, False
    live = selectors.visitor_live_session(visitor_id=visitor.pk)
    if live is None:
        workgroup_id, skill_id = _session_route(visitor=visitor, department_id=department_id)
        with transaction.atomic():
            opened = True
            try:
                with transaction.atomic():
                    live = _session_open(
                        visitor=visitor, workgroup_id=workgroup_id, skill_id=skill_id
                    )
            except IntegrityError:
                # another tab of this visitor opened a session meanwhile: write into that one
                opened = False
                live = selectors.visitor_live_session(visitor_id=visitor.pk)
                if live is None:
                    raise
            result = im_services.message_send(
                conversation_id=live.conversation_id,
                sender=sender,
                draft=draft,
                client_msg_id=client_msg_id,
            )
            if opened and live.status == Session.Status.QUEUED:
                # after the message's own event, so the visitor sees it before "X is serving you"
                workgroup_id = live.workgroup_id
                transaction.on_commit(lambda: workgroup_dispatch(workgroup_id=workgroup_id))
            return result
    return im_services.message_send(
        conversation_id=live.conversation_id,
        sender=sender,
        draft=draft,
        client_msg_id=client_msg_id,
    )


class VisitorConversationHook(SendHook):
    """What kefu adds to the send path of ``visitor`` conversations (registered in
    ``KefuConfig.ready``; im.hooks). Only messages people write count (text, files, stickers):
    recalls, system lines and the robot's answers pass untouched.

    - the sensitive-word filter (:mod:`kefu.sensitive`) on the visitor's messages and agents'
      public replies (masked, or ``ServiceError("forbidden")``);
    - the session's clock, in the send's transaction and before the conversation row is locked
      (lock order session → conversation, as assignment and closing take them): a visitor's
      message sets ``last_visitor_at``; an agent's public reply sets ``last_agent_at`` and, the
      first time, ``first_response_at``; one ``UPDATE`` either way;
    - after a visitor's text: a keyword auto-reply answers it, or else the robot does when it
      serves the session (:mod:`kefu.automation`, :mod:`kefu.robot`).
    """

    def _counts(self, sender: Sender, draft: im_services.MessageDraft) -> bool:
        return draft.msg_type in im_services.USER_TYPES and sender.type in (
            Message.SenderType.VISITOR,
            Message.SenderType.AGENT,
        )

    def prepare(
        self, *, conversation_id: int, sender: Sender, draft: im_services.MessageDraft
    ) -> None:
        if self._counts(sender, draft) and not draft.internal:
            draft.content = sensitive.apply(draft.content)

    def before_append(
        self,
        *,
        conversation_id: int,
        sender: Sender,
        draft: im_services.MessageDraft,
        now: dt.datetime,
    ) -> tuple[int, str, int] | None:
        if not self._counts(sender, draft) or draft.internal:
            return None
        with connection.cursor() as cursor:
            if sender.type == Message.SenderType.VISITOR:
                cursor.execute(
                    "UPDATE kefu_session SET last_visitor_at = %s "
                    "WHERE conversation_id = %s AND status <> %s RETURNING id, status, channel_id",
                    [now, conversation_id, Session.Status.CLOSED],
                )
                return cursor.fetchone()
            cursor.execute(
                "UPDATE kefu_session SET last_agent_at = %s, "
                "first_response_at = COALESCE(first_response_at, %s) WHERE conversation_id = %s",
                [now, now, conversation_id],
            )
        return None

    def after_append(self, *, message: Message, sender: Sender, context: Any) -> None:
        if context is None or message.msg_type != Message.Type.TEXT:
            return
        session_id, status, channel_id = context
        rule = automation.auto_reply_for(channel_id=channel_id, content=message.content)
        if rule is None and status != Session.Status.ROBOT:
            return
        session = Session.objects.select_related("channel", "visitor").get(pk=session_id)
        if rule is not None:
            automation.auto_reply_post(session=session, rule=rule)
        else:
            robot.on_visitor_message(session=session, message=message)


def agent_message_send(
    *, user: User, conversation_id: object, **fields: object
) -> tuple[Message, bool]:
    """An agent's (or staff member's) message: ``im.services.message_send`` with the user as
    sender and the fields it takes. In a visitor conversation the hook kefu registers applies
    (:class:`VisitorConversationHook`)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    return im_services.message_send(
        conversation_id=conversation_id, sender=agent_sender(user), **fields
    )


def _ranked_agents(workgroup: Workgroup, session: Session) -> list[AgentState] | None:
    """The available agents in the order the workgroup's strategy prefers them for ``session``
    (see :class:`Workgroup`); ``None`` when the session must wait (skill strategy: someone has
    the skill but is not free). Reads without locking: :func:`_claim` confirms the choice."""
    candidates = list(
        AgentState.objects.filter(
            user__workgroups=workgroup,
            user__is_active=True,
            status=AgentState.Status.ONLINE,
            open_count__lt=F("max_concurrent"),
        ).order_by("user_id")
    )
    if session.reassigned_from_id is not None:
        # re-assigned for not answering: someone else this time
        candidates = [c for c in candidates if c.user_id != session.reassigned_from_id]
    if not candidates:
        return []
    strategy = workgroup.strategy
    if strategy == Workgroup.Strategy.ROUND_ROBIN:
        cursor = workgroup.last_assigned_user_id or 0
        after = [c for c in candidates if c.user_id > cursor]
        return after + [c for c in candidates if c.user_id <= cursor]
    first: list[AgentState] = []
    if strategy == Workgroup.Strategy.STICKY:
        previous = (
            Session.objects.filter(visitor_id=session.visitor_id, agent__isnull=False)
            .exclude(pk=session.pk)
            .order_by("-created_at")
            .values_list("agent_id", flat=True)
            .first()
        )
        first = [c for c in candidates if c.user_id == previous]
    if strategy == Workgroup.Strategy.SKILL and session.skill_id is not None:
        skilled = set(
            AgentState.skills.through.objects.filter(
                skill_id=session.skill_id, agentstate_id__in=[c.pk for c in candidates]
            ).values_list("agentstate_id", flat=True)
        )
        if skilled:
            candidates = [c for c in candidates if c.pk in skilled]
        elif AgentState.objects.filter(
            user__workgroups=workgroup, user__is_active=True, skills=session.skill_id
        ).exists():
            return None  # someone has the skill but is not free: wait for them
    epoch = timezone.now().replace(year=2000)
    rest = sorted(
        (c for c in candidates if c not in first),
        key=lambda s: (
            s.open_count,
            s.open_count / max(s.max_concurrent, 1),
            s.last_assigned_at or epoch,
            s.user_id,
        ),
    )
    return first + rest


def _claim(state: AgentState) -> bool:
    """Take one slot of the agent's cap, if they are still online and under it — one
    conditional UPDATE, so two workgroups' dispatchers can never push an agent over the cap."""
    return bool(
        AgentState.objects.filter(
            pk=state.pk,
            status=AgentState.Status.ONLINE,
            open_count__lt=F("max_concurrent"),
        ).update(open_count=F("open_count") + 1, last_assigned_at=timezone.now())
    )


def _pick_agent(workgroup: Workgroup, session: Session) -> AgentState | None:
    """The agent who gets ``session``, with a slot of their cap already taken (:func:`_claim`);
    None when nobody is available (or, for a skill, the skilled ones are busy)."""
    for _attempt in range(3):
        ranked = _ranked_agents(workgroup, session)
        if not ranked:
            return None
        for state in ranked[:5]:
            if _claim(state):
                return state
    return None


ASSIGNED, EMPTY, NO_AGENT = "assigned", "empty", "no_agent"
#: queued sessions looked at per assignment (more only matter for skills nobody free has)
HEAD = 50


def _assign_next(workgroup_id: int) -> tuple[str, bool]:
    """Assign the oldest queued session of the workgroup that can be served now. Returns
    ``(ASSIGNED | EMPTY | NO_AGENT, whether others were waiting too)``. The workgroup row lock
    serialises assignments within the workgroup, so the queue order holds."""
    with transaction.atomic():
        workgroup = Workgroup.objects.select_for_update().get(pk=workgroup_id)
        waiting = list(
            Session.objects.select_for_update(of=("self",))
            .select_related("visitor", "conversation")
            .filter(workgroup_id=workgroup_id, status=Session.Status.QUEUED)
            .order_by("queued_at", "id")[:HEAD]
        )
        if not waiting:
            return EMPTY, False
        for session in waiting:
            state = _pick_agent(workgroup, session)
            if state is not None:
                _give(session, workgroup, state, counted=True)
                return ASSIGNED, len(waiting) > 1
            if not (workgroup.strategy == Workgroup.Strategy.SKILL and session.skill_id):
                return NO_AGENT, True
            # waits for a skilled agent; those behind may need nobody special
        return NO_AGENT, True


def _give(
    session: Session, workgroup: Workgroup, state: AgentState, *, counted: bool = False
) -> User:
    """Hand a locked queued session to an agent (caller's transaction): load counted (unless
    ``counted``: the slot was claimed already), the agent joins, the visitor is told, both sides
    get ``conversation.assigned``."""
    if not counted:
        AgentState.objects.filter(pk=state.pk).update(
            open_count=F("open_count") + 1, last_assigned_at=timezone.now()
        )
    Workgroup.objects.filter(pk=workgroup.pk).update(last_assigned_user_id=state.user_id)
    agent = User.objects.get(pk=state.user_id)
    session.agent = agent
    session.status = Session.Status.OPEN
    session.assigned_at = timezone.now()
    session.save(update_fields=["agent", "status", "assigned_at"])
    im_services.participant_add(
        conversation=session.conversation,
        member_key=agent.member_key,
        name=agent.name,
        role=Participant.Role.AGENT,
        user_id=agent.pk,
    )
    with translation.override(_language_for(session.visitor)):
        text = _("%(agent)s is now serving you.") % {"agent": agent.name}
    im_services.system_message_post(conversation_id=session.conversation_id, content=text)
    _publish_assigned(session, agent)
    _publish_agent_state(agent.pk)
    return agent


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
        workgroup = Workgroup.objects.select_for_update().get(pk=found.workgroup_id)
        if not workgroup.allow_pick:
            raise ServiceError("forbidden", _("Visitors of this workgroup are assigned for you."))
        session = Session.objects.select_for_update().select_related("visitor").get(pk=session_id)
        if session.status != Session.Status.QUEUED:
            raise ServiceError("conflict", _("Someone else took this visitor."))
        state = AgentState.objects.select_for_update().filter(user=user).first()
        if state is None or state.status != AgentState.Status.ONLINE:
            raise ServiceError("forbidden", _("Go online to take visitors."))
        if state.open_count >= state.max_concurrent:
            raise ServiceError("full", _("You are at your limit of conversations."))
        _give(session, workgroup, state)
        transaction.on_commit(lambda: queue_positions_publish(workgroup_id=workgroup.pk))
    session.refresh_from_db()
    return session


def _publish_assigned(session: Session, agent: User) -> None:
    conversation_id = session.conversation_id
    visitor_key = session.visitor.member_key

    def publish() -> None:
        # Serialised after commit so both sides see the committed state (receipts, last message);
        # outside a transaction publish_event_on_commit sends at once.
        payloads = selectors.conversation_get_for_members(
            conversation_id=conversation_id, member_keys=[agent.member_key, visitor_key]
        )
        for key in (agent.member_key, visitor_key):  # the agent first, as always
            if key in payloads:
                publish_event_on_commit(
                    {"type": "conversation.assigned", "conversation": payloads[key]}, [key]
                )

    transaction.on_commit(publish)


def _publish_agent_state(user_id: int) -> None:
    state = AgentState.objects.get(user_id=user_id)
    publish_event_on_commit(
        {"type": "agent.status", **selectors.agent_state_payload(state)}, [f"u:{user_id}"]
    )


def queue_positions_publish(*, workgroup_id: int) -> None:
    """Send ``queue.position`` to every visitor waiting in the workgroup (1 = next), and
    ``queue.changed`` ``{"workgroup_id", "length"}`` to the workgroup's agents."""
    waiting = selectors.queue_list(workgroup_id=workgroup_id)
    if presence.queue_length_changed(
        schema=connection.schema_name, workgroup_id=workgroup_id, length=len(waiting)
    ):
        # only when the length agents last saw differs: a visitor assigned on arrival (the
        # usual case) leaves it at 0, and a workgroup of 100 agents is not sent 100 events
        members = Workgroup.agents.through.objects.filter(workgroup_id=workgroup_id).values_list(
            "user_id", flat=True
        )
        publish_event_on_commit(
            {"type": "queue.changed", "workgroup_id": workgroup_id, "length": len(waiting)},
            [f"u:{uid}" for uid in members],
        )
    for position, session in enumerate(waiting, start=1):
        publish_event_on_commit(
            {
                "type": "queue.position",
                "conversation_id": session.conversation_id,
                "position": position,
                "workgroup": {"id": session.workgroup_id, "name": session.workgroup.name},
            },
            [f"v:{session.visitor_id}"],
        )


def workgroup_dispatch(*, workgroup_id: int) -> int:
    """Assign queued sessions of a workgroup, oldest first, while agents are available; then tell
    every visitor still waiting their position.

    On assignment the agent joins the conversation, a system line is posted, and
    ``conversation.assigned`` goes to the agent and to the visitor. Returns the number assigned.
    Safe to call at any time and from several processes at once.
    """
    assigned = 0
    while True:
        result, more = _assign_next(workgroup_id)
        if result != ASSIGNED:
            break
        assigned += 1
        if not more:
            break
    queue_positions_publish(workgroup_id=workgroup_id)
    return assigned


def agent_workgroups_dispatch(*, user_id: int) -> int:
    """Dispatch the queue of every workgroup the agent serves (after they gained a free slot)."""
    return sum(
        workgroup_dispatch(workgroup_id=wid)
        for wid in Workgroup.objects.filter(agents=user_id).values_list("id", flat=True)
    )


def session_close(*, session_id: int, closed_by: Sender) -> Session:
    """End a session: a system line, the conversation closed (``conversation.closed`` to all),
    the agent's load released, then the workgroup's queue dispatched. Idempotent.
    """
    with transaction.atomic():
        session = Session.objects.select_for_update().select_related("visitor").get(pk=session_id)
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
            _publish_agent_state(was_open_with)
        with translation.override(_language_for(session.visitor)):
            text = _("The conversation has ended.")
        im_services.system_message_post(conversation_id=session.conversation_id, content=text)
        im_services.conversation_close(conversation_id=session.conversation_id, closed_by=closed_by)
        workgroup_id = session.workgroup_id

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


def conversation_close_by_member(*, conversation_id: object, sender: Sender) -> Session:
    """Close the session of a conversation the member (agent or visitor) is in.

    Raises ``ServiceError``: ``invalid``, ``not_found`` (not a participant, or not a visitor chat).
    """
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    from im import selectors as im_selectors

    im_selectors.participant_get(conversation_id=conversation_id, member_key=sender.key)
    session = Session.objects.filter(conversation_id=conversation_id).first()
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return session_close(session_id=session.pk, closed_by=sender)


# --- agents -------------------------------------------------------------------------------------


def agent_status_set(*, user: User, status: object) -> AgentState:
    """Set an agent's status (online/busy/away/offline; only online agents are assigned new
    conversations, busy and away ones keep theirs). Going online dispatches the queues of the
    agent's workgroups. Publishes ``agent.status`` to every socket of the agent.

    Raises ``ServiceError("invalid")`` for an unknown status, ``forbidden`` for a non-agent.
    """
    if status not in AgentState.Status.values:
        raise ServiceError("invalid", _("Unknown status."), field="status")
    if not user.is_agent:
        raise ServiceError("forbidden", _("Only agents have a service status."))
    with transaction.atomic():
        state = selectors.agent_state_get(user_id=user.pk)
        AgentState.objects.filter(pk=state.pk).update(
            status=status, status_changed_at=timezone.now()
        )
        state.refresh_from_db()
        _publish_agent_state(user.pk)
        if status == AgentState.Status.ONLINE:
            transaction.on_commit(lambda: agent_workgroups_dispatch(user_id=user.pk))
    return state
