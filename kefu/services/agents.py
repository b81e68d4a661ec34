"""Agents' service status: set by the agent (or the back office), and set offline after the
last inbox tab closed (:mod:`kefu.presence` keeps the tabs)."""

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
from org.models import User
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)


def agent_state_ensure(*, user_id: int) -> AgentState:
    """The agent's service state, created (offline, default cap) on first use."""
    state, _created = AgentState.objects.get_or_create(user_id=user_id)
    return state


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
        state = agent_state_ensure(user_id=user.pk)
        AgentState.objects.filter(pk=state.pk).update(
            status=status, status_changed_at=timezone.now()
        )
        state.refresh_from_db()
        agent_state_publish(user_id=user.pk)
        if status == AgentState.Status.ONLINE:
            transaction.on_commit(lambda: agent_workgroups_dispatch(user_id=user.pk))
    return state


def offline_scan() -> int:
    """Set offline the current tenant's agents (not offline yet) whose inbox tabs were all closed,
    or silent, for the grace period; their presence record is then cleared. Returns how many."""
    schema = connection.schema_name
    grace = presence.grace_s()
    now = time.time()
    done = 0
    states = AgentState.objects.exclude(status=AgentState.Status.OFFLINE).select_related("user")
    for state in states:
        try:
            alive, seen = presence.last_seen(schema=schema, user_id=state.user_id)
        except Exception as exc:
            logger.warning("agent presence unreadable: %s", exc)
            return done
        if alive or seen is None or now - seen < grace:
            continue
        agent_status_set(user=state.user, status=AgentState.Status.OFFLINE)
        presence.forget(schema=schema, user_id=state.user_id)
        done += 1
    return done
