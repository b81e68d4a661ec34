"""Where a new conversation goes, and what happens past a workgroup's queue limits (KF-6, KF-7).

:func:`route` picks the workgroup (and the skill asked for) of a new session: the department the
visitor chose in the widget when the channel offers it, else the first matching routing rule of
the channel (page URL, referrer, language, visitor tag), else the channel's workgroup.

:func:`queue_admit` applies ``max_queue_length`` when a session would join a queue, and
:func:`queue_wait_scan` (every few seconds, from Celery beat) applies ``max_wait_s`` to sessions
already waiting; both act by the workgroup's ``overflow_action`` (see
:class:`kefu.models.Workgroup`). A session overflows at most once.

Assignment (KF-6, DESIGN.md §4): a queued session is assigned by its workgroup's strategy (round
robin, least busy, skill, sticky — :class:`kefu.models.Workgroup`) to an agent who is online,
active and under their concurrent-chat cap; otherwise it waits in the workgroup's queue and the
visitor is told its position. Assignment is race-free: each attempt locks the workgroup row
(serialising assignments within the workgroup, so the queue order holds) and claims a slot of
the chosen agent with one conditional ``UPDATE`` (so an agent in two workgroups is never pushed
over the cap). docs/architecture.md, "Routing (kefu)".
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im.models import Participant
from im.services import conversations as im_conversations
from im.services import messages as im_messages
from kefu.models import AgentState, Channel, RoutingRule, Session, Visitor, Workgroup
from kefu.senders import language_for
from kefu.services.events import (
    agent_state_publish,
    conversation_assigned_publish,
    queue_positions_publish,
)
from org.models import User
from weiyu.errors import ServiceError


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
                session_assign(session=session, workgroup=workgroup, state=state, counted=True)
                return ASSIGNED, len(waiting) > 1
            if not (workgroup.strategy == Workgroup.Strategy.SKILL and session.skill_id):
                return NO_AGENT, True
            # waits for a skilled agent; those behind may need nobody special
        return NO_AGENT, True


def session_assign(
    *, session: Session, workgroup: Workgroup, state: AgentState, counted: bool = False
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
    im_conversations.participant_add(
        conversation=session.conversation,
        member_key=agent.member_key,
        name=agent.name,
        role=Participant.Role.AGENT,
        user_id=agent.pk,
    )
    with translation.override(language_for(session.visitor)):
        text = _("%(agent)s is now serving you.") % {"agent": agent.name}
    im_messages.system_message_post(conversation_id=session.conversation_id, content=text)
    conversation_assigned_publish(session=session, agent=agent)
    agent_state_publish(user_id=agent.pk)
    return agent


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
