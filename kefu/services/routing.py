"""Where a new conversation goes, and what happens past a workgroup's queue limits (KF-6, KF-7).

:func:`route` picks the workgroup (and the skill asked for) of a new session: the department the
visitor chose in the widget when the channel offers it, else the first matching routing rule of
the channel (page URL, referrer, language, visitor tag), else the channel's workgroup.

:func:`queue_admit` applies ``max_queue_length`` when a session would join a queue, and
:func:`queue_wait_scan` (every few seconds, from Celery beat) applies ``max_wait_s`` to sessions
already waiting; both act by the workgroup's ``overflow_action`` (see
:class:`kefu.models.Workgroup`). A session overflows at most once.

Assignment (KF-6, DESIGN.md §4): a queued session is assigned by its workgroup's strategy (round
robin, least busy, skill, sticky — :class:`kefu.models.Workgroup`) to an agent who is online
with an inbox open (``AgentState.connected``), active and under their concurrent-chat cap;
otherwise it waits in the workgroup's queue and the visitor is told its position (and whether
anyone is available at all). Assignment is race-free: each attempt locks the workgroup row
(serialising assignments within the workgroup, so the queue order holds) and claims a slot of
the chosen agent with one conditional ``UPDATE`` (so an agent in two workgroups is never pushed
over the cap). A visitor arriving while nobody of the workgroup waits (the usual case) is served
by the same ``UPDATE`` in the transaction of their first message, without the workgroup's lock
(:func:`session_claim`). The workgroup's lock is ``FOR NO KEY UPDATE``: it serialises
dispatchers, but not the foreign-key checks of sessions being written (``FOR KEY SHARE`` on the
workgroup row), so a direct claim holding an agent's row never waits for a dispatcher waiting
for that agent. docs/architecture.md, "Routing (kefu)".
"""

from __future__ import annotations

import functools

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from im.models import Participant
from im.services import conversations as im_conversations
from kefu import selectors, syslines
from kefu.channels.delivery import session_line_post
from kefu.models import AgentState, Channel, RoutingRule, Session, Visitor, Workgroup
from kefu.services.events import (
    agent_state_publish,
    conversation_assigned_publish,
    queue_positions_publish,
)
from org import alerts
from org.models import User
from weiyu.errors import ServiceError


def departments(channel: Channel) -> list[dict[str, object]]:
    """The departments a channel's widget offers: ``[{"id", "name"}]`` (empty: no choice)."""
    return [{"id": w.pk, "name": w.name} for w in channel.departments.order_by("name", "pk")]


def _attribute_text(value: object) -> str:
    """A contact attribute's value as a rule compares it: ``true``/``false``, numbers and
    dates as written, lower case; empty when unset."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _matches(rule: RoutingRule, visitor: Visitor, tags: list[str]) -> bool:
    wanted = rule.value.strip().lower()
    if rule.attribute == RoutingRule.Attribute.TAG:
        values = tags
    elif rule.attribute == RoutingRule.Attribute.CONTACT_ATTRIBUTE:
        value = (visitor.attributes or {}).get(rule.attribute_key)
        if value is None:
            return False  # an unset attribute matches nothing, not even "contains ''"
        values = [_attribute_text(value)]
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
    rules = selectors.routing_rules(channel_id=channel.pk)
    if rules:
        tags = [t.lower() for t in visitor.tags.values_list("name", flat=True)]
        for rule in rules:
            if _matches(rule, visitor, tags):
                return rule.workgroup_id, rule.skill_id
    return channel.workgroup_id, None


def queue_admit(*, workgroup_id: int, limit: int | None = None) -> tuple[int, str]:
    """Whether one more visitor may wait in the workgroup's queue. Returns ``(workgroup id,
    status)``: the same workgroup or its overflow one, and ``queued`` or ``robot``. Call inside
    the transaction that creates the session: the workgroup row is locked, so the limit holds
    under concurrent arrivals. ``limit``: the workgroup's ``max_queue_length`` when the caller
    has just read it (read otherwise); 0 takes no lock.

    Raises ``ServiceError("queue_full")`` when the action is to leave a message (nothing is
    stored; the widget offers the leave-a-message form with the visitor's text).
    """
    if limit is None:
        limit = Workgroup.objects.values_list("max_queue_length", flat=True).get(pk=workgroup_id)
    if not limit:
        return workgroup_id, Session.Status.QUEUED  # no limit: nothing to serialise
    workgroup = Workgroup.objects.select_for_update(no_key=True).get(pk=workgroup_id)
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


#: The order each strategy prefers available agents in (see :class:`Workgroup`): ``round_robin``
#: takes the next user id after the cursor, wrapping round; the others the least busy — fewest
#: open conversations, then the lowest share of their cap, then the longest since their last
#: assignment (never assigned first), then the lower user id — and ``sticky`` a returning
#: visitor's agent of their latest earlier session before anyone.
_ROUND_ROBIN = "(a.user_id <= %(cursor)s), a.user_id"
_LEAST_BUSY = (
    "a.open_count, a.open_count::float / GREATEST(a.max_concurrent, 1), "
    "a.last_assigned_at ASC NULLS FIRST, a.user_id"
)
_STICKY_FIRST = (
    "(a.user_id = COALESCE((SELECT agent_id FROM kefu_session WHERE visitor_id = %(visitor_id)s "
    "AND agent_id IS NOT NULL AND id <> %(session_id)s ORDER BY created_at DESC LIMIT 1), 0)) "
    "DESC, "
)

#: skill strategy, a session asking for a skill: agents who have it; agents without it only
#: when no active member of the workgroup has it (when someone has it but is busy, or offline,
#: the session waits for them)
_SKILL_FILTER = """
    AND (
        EXISTS (SELECT 1 FROM kefu_agentstate_skills k
                WHERE k.agentstate_id = a.id AND k.skill_id = %(skill_id)s)
        OR NOT EXISTS (
            SELECT 1 FROM kefu_agentstate_skills k
            JOIN kefu_agentstate s ON s.id = k.agentstate_id
            JOIN org_user su ON su.id = s.user_id AND su.is_active
            JOIN kefu_workgroup_agents sm ON sm.user_id = s.user_id
            WHERE k.skill_id = %(skill_id)s AND sm.workgroup_id = %(workgroup_id)s
        )
    )
"""

#: One round trip picks and claims an agent for a queued session: the best available agent of
#: the workgroup by its strategy (online with an inbox open, active, under their cap; not the one
#: it is being taken from) is locked, a slot of their cap taken, the workgroup's round-robin cursor moved and the
#: session given to them (``open``).
#: Under concurrency the row lock re-checks the conditions on the newest row version and moves
#: on to the next agent when they no longer hold, so two dispatchers can never push an agent over
#: the cap. Returns the agent's new state and name fields, or no row.
#: ``{direct}`` (:func:`session_claim`, without the workgroup's lock) adds a condition and
#: ``SKIP LOCKED``: nobody else of the workgroup may be waiting (the statement's snapshot shows
#: every visitor queued before it began), and an agent another claim holds this instant is passed
#: over instead of waited for; the cursor, which only the workgroup's lock may move, stays.
_CLAIM_SQL = """
WITH pick AS (
    SELECT a.id FROM kefu_agentstate a
    JOIN org_user u ON u.id = a.user_id AND u.is_active
    JOIN kefu_workgroup_agents m ON m.user_id = a.user_id AND m.workgroup_id = %(workgroup_id)s
    WHERE a.status = %(online)s AND a.connected AND a.open_count < a.max_concurrent
      AND a.user_id <> %(not_user_id)s {skill}{queue_empty}
    ORDER BY {prefer}{order}
    LIMIT 1
    FOR UPDATE OF a{skip_locked}
), claimed AS (
    UPDATE kefu_agentstate a SET open_count = a.open_count + 1, last_assigned_at = %(now)s
    FROM pick
    WHERE a.id = pick.id AND a.status = %(online)s AND a.connected
      AND a.open_count < a.max_concurrent
    RETURNING a.user_id, a.status, a.open_count, a.max_concurrent
), {moved}assigned AS (
    UPDATE kefu_session SET agent_id = claimed.user_id, status = %(open)s, assigned_at = %(now)s
    FROM claimed WHERE kefu_session.id = %(session_id)s
)
SELECT c.status, c.open_count, c.max_concurrent, {user_columns}
FROM claimed c JOIN org_user u ON u.id = c.user_id
"""

#: the cursor of round robin, moved under the workgroup's lock (:data:`_CLAIM_SQL`)
_MOVED = """moved AS (
    UPDATE kefu_workgroup SET last_assigned_user_id = claimed.user_id
    FROM claimed WHERE kefu_workgroup.id = %(workgroup_id)s
), """

#: a direct claim (:data:`_CLAIM_SQL`): only while nobody else waits in the workgroup
_QUEUE_EMPTY = """
      AND NOT EXISTS (SELECT 1 FROM kefu_session q WHERE q.workgroup_id = %(workgroup_id)s
                      AND q.status = %(queued)s AND q.id <> %(session_id)s)"""

#: the user fields an assignment needs (the agent's name, key and payload)
_USER_FIELDS = ("id", "username", "first_name", "last_name", "display_name")


_USER_COLUMNS = ", ".join(f"u.{User._meta.get_field(name).column}" for name in _USER_FIELDS)


@functools.cache
def _claim_sql(strategy: str, skill: bool, direct: bool) -> str:
    """:data:`_CLAIM_SQL` for a strategy, with the skill filter or not, direct or not."""
    return _CLAIM_SQL.format(
        skill=_SKILL_FILTER if skill else "",
        queue_empty=_QUEUE_EMPTY if direct else "",
        order=_ROUND_ROBIN if strategy == Workgroup.Strategy.ROUND_ROBIN else _LEAST_BUSY,
        prefer=_STICKY_FIRST if strategy == Workgroup.Strategy.STICKY else "",
        skip_locked=" SKIP LOCKED" if direct else "",
        moved="" if direct else _MOVED,
        user_columns=_USER_COLUMNS,
    )


def _claim_agent(
    workgroup: Workgroup, session: Session, *, direct: bool = False
) -> tuple[User, AgentState] | None:
    """The agent who gets ``session``, and their new state, with a slot of their cap taken and
    the session theirs (:data:`_CLAIM_SQL`; ``session`` is updated in memory too); None when
    nobody is available (or, for a skill, the agents who have it are not). ``User`` carries
    only the fields of :data:`_USER_FIELDS`. ``direct``: see :func:`session_claim`."""
    strategy = workgroup.strategy
    skill = strategy == Workgroup.Strategy.SKILL and session.skill_id is not None
    sql = _claim_sql(strategy, skill, direct)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "workgroup_id": workgroup.pk,
                "online": AgentState.Status.ONLINE,
                "open": Session.Status.OPEN,
                "queued": Session.Status.QUEUED,
                "not_user_id": session.reassigned_from_id or 0,
                "skill_id": session.skill_id,
                "cursor": workgroup.last_assigned_user_id or 0,
                "visitor_id": session.visitor_id,
                "session_id": session.pk,
                "now": now,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    status, open_count, max_concurrent, *user_values = row
    agent = User.from_db(connection.alias, list(_USER_FIELDS), user_values)
    state = AgentState(
        user_id=agent.pk, status=status, open_count=open_count, max_concurrent=max_concurrent
    )
    if not direct:
        workgroup.last_assigned_user_id = agent.pk
    session.agent = agent
    session.status = Session.Status.OPEN
    session.assigned_at = now
    return agent, state


ASSIGNED, EMPTY, NO_AGENT = "assigned", "empty", "no_agent"


#: queued sessions looked at per assignment with the skill strategy (more only matter for
#: skills nobody free has); the other strategies serve the head or nobody
HEAD = 50


def _assign_next(workgroup_id: int) -> tuple[str, bool, list[Session] | None]:
    """Assign the oldest queued session of the workgroup that can be served now. Returns
    ``(ASSIGNED | EMPTY | NO_AGENT, whether others were waiting too, the sessions still waiting
    when all of them were read — else None)``. The workgroup row lock serialises assignments
    within the workgroup, so the queue order holds; what runs under it is a fixed handful of
    statements (tests/test_send_path_queries.py counts them)."""
    with transaction.atomic():
        workgroup = Workgroup.objects.select_for_update(no_key=True).get(pk=workgroup_id)
        skill = workgroup.strategy == Workgroup.Strategy.SKILL
        limit = HEAD if skill else 2
        waiting = list(
            Session.objects.select_for_update(of=("self",))
            .select_related("visitor", "channel")
            .filter(workgroup_id=workgroup_id, status=Session.Status.QUEUED)
            .order_by("queued_at", "id")[:limit]
        )
        complete = len(waiting) < limit
        if not waiting:
            return EMPTY, False, []
        for session in waiting:
            session.workgroup = workgroup
        for session in waiting:
            claimed = _claim_agent(workgroup, session)
            if claimed is not None:
                agent, state = claimed
                session_assign(session=session, workgroup=workgroup, agent=agent, state=state)
                rest = [s for s in waiting if s is not session] if complete else None
                return ASSIGNED, len(waiting) > 1, rest
            if not (skill and session.skill_id):
                return NO_AGENT, True, waiting if complete else None
            # waits for a skilled agent; those behind may need nobody special
        return NO_AGENT, True, waiting if complete else None


def session_claim(*, session: Session, workgroup: Workgroup) -> User | None:
    """Serve a visitor on arrival, without the workgroup's lock: in the transaction that wrote
    the new ``queued`` session (with its visitor and channel loaded) and its first message, give
    it to the workgroup's best available agent (:data:`_CLAIM_SQL`, direct) when nobody else of
    the workgroup is waiting — the agent joins, the visitor is told, ``conversation.assigned``
    and ``agent.status`` follow the commit (:func:`session_assign`). Returns the agent, or None
    when the session must queue: someone was waiting already (first come, first served: the
    caller dispatches the queue after commit, under the lock), nobody is free (or free this
    instant: an agent another claim holds is not waited for), or the workgroup is round robin
    (its cursor moves only under the lock).

    The agent's row lock keeps their cap exact against every other claim; a visitor who queued
    before this statement began is seen by it, so a newcomer never overtakes someone already
    waiting. Returns without writing anything when it returns None."""
    if workgroup.strategy == Workgroup.Strategy.ROUND_ROBIN or session.workgroup_id != workgroup.pk:
        return None
    claimed = _claim_agent(workgroup, session, direct=True)
    if claimed is None:
        return None
    agent, state = claimed
    session_assign(session=session, workgroup=workgroup, agent=agent, state=state)
    return agent


def session_assign(
    *,
    session: Session,
    workgroup: Workgroup,
    agent: User,
    state: AgentState | None = None,
) -> User:
    """Hand a locked queued session to an agent (caller's transaction): the agent joins, the
    visitor is told, both sides get ``conversation.assigned`` and the agent ``agent.status``.
    ``session`` comes with its visitor and channel loaded. ``state``: the agent's state when
    :func:`_claim_agent` has taken their slot and given them the session already; without it
    both happen here, under the caller's lock of the agent's row."""
    if state is None:
        now = timezone.now()
        AgentState.objects.filter(user_id=agent.pk).update(
            open_count=F("open_count") + 1, last_assigned_at=now
        )
        Workgroup.objects.filter(pk=workgroup.pk).update(last_assigned_user_id=agent.pk)
        Session.objects.filter(pk=session.pk).update(
            agent_id=agent.pk, status=Session.Status.OPEN, assigned_at=now
        )
        session.agent = agent
        session.status = Session.Status.OPEN
        session.assigned_at = now
    session.workgroup = workgroup
    im_conversations.participant_add(
        conversation_id=session.conversation_id,
        member_key=agent.member_key,
        name=agent.name,
        role=Participant.Role.AGENT,
        user_id=agent.pk,
    )
    line = session_line_post(
        session=session,
        code=syslines.ASSIGNED,
        params={"agent": agent.name},
    )
    conversation_assigned_publish(session=session, agent=agent, last_message=line)
    agent_state_publish(user_id=agent.pk, state=state)
    alerts.alert(
        kind="assignment",
        user_ids=[agent.pk],
        title=gettext_noop("New conversation"),
        body=gettext_noop("%(visitor)s is assigned to you."),
        params={"visitor": alerts.preview(session.visitor.name)},
        url=f"/inbox/#c{session.conversation_id}",
    )
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
        result, more, waiting = _assign_next(workgroup_id)
        if result != ASSIGNED:
            break
        assigned += 1
        if not more:
            break
    queue_positions_publish(workgroup_id=workgroup_id, waiting=waiting)
    return assigned


def agent_workgroups_dispatch(*, user_id: int) -> int:
    """Dispatch the queue of every workgroup the agent serves (after they gained a free slot)."""
    return sum(
        workgroup_dispatch(workgroup_id=wid)
        for wid in Workgroup.objects.filter(agents=user_id).values_list("id", flat=True)
    )
