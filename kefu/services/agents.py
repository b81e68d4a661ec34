"""Agents' service status and presence (KF-3).

The status (online/busy/away/offline) is the agent's choice, kept while they are away; whether
an inbox of theirs is open is ``AgentState.connected`` (:mod:`kefu.presence` keeps the tabs).
An agent is assigned new conversations only while both say so. The first inbox socket sets
``connected`` (:func:`agent_connected`) and, for an online agent, dispatches the queues of their
workgroups; :func:`offline_scan` clears it once the last one has been gone for the grace period,
and returns their open conversations to the queue (per workgroup, ``requeue_on_leave``).
"""

from __future__ import annotations

import logging
import time

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kefu import presence
from kefu.models import AgentState
from kefu.services.events import agent_state_publish
from kefu.services.routing import agent_workgroups_dispatch
from kefu.services.transfers import requeue_open
from org.models import User
from tenants import fanout
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)


def agent_state_ensure(*, user_id: int) -> AgentState:
    """The agent's service state, created (online — applying once an inbox is open — with the
    default cap) on first use."""
    state, _created = AgentState.objects.get_or_create(user_id=user_id)
    return state


def agent_status_set(*, user: User, status: object) -> AgentState:
    """Set the status an agent chose (online/busy/away/offline; only online agents with an inbox
    open are assigned new conversations, busy and away ones keep theirs). It is kept while they
    are away and applies again when they open the inbox. With an inbox open, the queues of the
    agent's workgroups are dispatched after commit (going online takes visitors; any change
    tells those waiting whether anyone is available). Publishes ``agent.status`` to every
    socket of the agent.

    Raises ``ServiceError("invalid")`` for an unknown status, ``forbidden`` for a non-agent.
    """
    if status not in AgentState.Status.values:
        raise ServiceError("invalid", _("Unknown status."), field="status")
    if not user.is_agent:
        raise ServiceError("forbidden", _("Only agents have a service status."))
    with transaction.atomic():
        state = agent_state_ensure(user_id=user.pk)
        AgentState.objects.filter(pk=state.pk).update(
            status=status, status_changed_at=timezone.now()
        )
        state.refresh_from_db()
        agent_state_publish(user_id=user.pk)
        if state.connected:
            transaction.on_commit(lambda: agent_workgroups_dispatch(user_id=user.pk))
    return state


def agent_connected(*, user_id: int) -> AgentState:
    """An inbox socket of the agent is open (call after :func:`kefu.presence.socket_seen`).
    The first one makes the agent available again with the status they chose last time: an
    online agent's workgroups' queues are dispatched, and ``agent.status`` goes to their
    sockets. Returns the agent's state (created on first use, see :func:`agent_state_ensure`)."""
    with transaction.atomic():
        state = agent_state_ensure(user_id=user_id)
        if state.connected:
            return state
        came = AgentState.objects.filter(pk=state.pk, connected=False).update(connected=True)
        state.connected = True
        if came:
            fanout.live_mark("timers")  # the timers scan watches for their tabs closing
            agent_state_publish(user_id=user_id, state=state)
            transaction.on_commit(lambda: agent_workgroups_dispatch(user_id=user_id))
    return state


def _gone(schema: str, user_id: int, grace: float) -> bool:
    """Whether every inbox socket of the agent has been closed or silent for ``grace`` s."""
    alive, seen = presence.last_seen(schema=schema, user_id=user_id)
    if alive:
        return False
    if seen is None:  # connected, yet no record: Redis lost it; the grace starts now
        presence.grace_starts(schema=schema, user_id=user_id)
        return grace <= 0
    return time.time() - seen >= grace


def agent_disconnected(*, user: User) -> int:
    """The agent's last inbox has been gone for the grace period: they are no longer available
    (their chosen status is kept for their return), and their open conversations of workgroups
    that ``requeue_on_leave`` go back to the queue — the visitor reads that the agent had to
    leave — and the queues of their workgroups are dispatched after commit (those waiting learn
    whether anyone is still available). Returns how many went back (0 as well when the agent
    was not connected, or came back meanwhile).

    Two transactions, each taking its locks in the routing order (session before agent state):
    the first makes the agent unavailable, so no assignment can follow; the second hands back
    what they serve, unless they are connected again by then.
    """
    # a tab may have opened since the scan looked: then the agent stays
    if not _gone(connection.schema_name, user.pk, presence.grace_s()):
        return 0
    if not AgentState.objects.filter(user=user, connected=True).update(connected=False):
        return 0
    presence.forget(schema=connection.schema_name, user_id=user.pk)
    with transaction.atomic():
        agent_state_publish(user_id=user.pk)
        transaction.on_commit(lambda: agent_workgroups_dispatch(user_id=user.pk))
        if AgentState.objects.filter(user=user, connected=True).exists():
            return 0
        return requeue_open(user=user, leaving=True)


def offline_scan() -> int:
    """Make unavailable the current tenant's connected agents whose inbox tabs were all closed,
    or silent, for the grace period (``AGENT_OFFLINE_GRACE_S``), returning their open
    conversations to the queue (:func:`agent_disconnected`); their presence record is then
    cleared. Returns how many agents left."""
    schema = connection.schema_name
    grace = presence.grace_s()
    done = 0
    states = AgentState.objects.filter(connected=True).select_related("user")
    for state in states:
        try:
            gone = _gone(schema, state.user_id, grace)
        except Exception as exc:  # Redis down: nobody is judged gone
            logger.warning("agent presence unreadable: %s", exc)
            return done
        if gone:
            agent_disconnected(user=state.user)
            done += 1
    return done
