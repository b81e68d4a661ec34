"""Realtime events of customer service that several services send: an agent's status, a
conversation assigned, the queue positions. Sending only; every state change is the caller's."""

from __future__ import annotations

from django.db import connection, transaction

from im.models import Message
from kefu import presence, selectors, webhooks
from kefu.models import AgentState, Session, Visitor, Workgroup
from org.models import User
from weiyu.realtime import publish_event_on_commit, publish_events_on_commit


def conversation_assigned_publish(
    *, session: Session, agent: User, last_message: Message | None = None
) -> None:
    """``conversation.assigned`` (the conversation with its session, as each sees it) to the
    agent, then to the visitor, serialised after commit. ``session``: as just assigned, with its
    visitor, channel and workgroup loaded (its part of the payload is built from it);
    ``last_message``: the message the caller just wrote into the conversation, if any (then
    not read again)."""
    conversation_id = session.conversation_id
    visitor_key = session.visitor.member_key
    webhooks.conversation_emit(
        "conversation.assigned", session_id=session.pk, conversation_id=conversation_id
    )

    def publish() -> None:
        # Serialised after commit so both sides see the committed state (receipts, last message);
        # outside a transaction publish_event_on_commit sends at once.
        payloads = selectors.conversation_get_for_members(
            conversation_id=conversation_id,
            member_keys=[agent.member_key, visitor_key],
            session=session,
            last_message=last_message,
        )
        for key in (agent.member_key, visitor_key):  # the agent first, as always
            if key in payloads:
                publish_event_on_commit(
                    {"type": "conversation.assigned", "conversation": payloads[key]}, [key]
                )

    transaction.on_commit(publish)


def agent_state_publish(*, user_id: int, state: AgentState | None = None) -> None:
    """``agent.status`` ``{"status", "open_count", "max_concurrent"}`` to every socket of the
    agent (after commit, inside a transaction). ``state``: the agent's state as the caller just
    wrote it (read otherwise)."""
    if state is None:
        state = AgentState.objects.get(user_id=user_id)
    publish_event_on_commit(
        {"type": "agent.status", **selectors.agent_state_payload(state)}, [f"u:{user_id}"]
    )


def queue_positions_publish(*, workgroup_id: int, waiting: list[Session] | None = None) -> None:
    """Send ``queue.position`` to every visitor waiting in the workgroup (1 = next; with
    ``agents_online``: whether any agent of the workgroup is online with an inbox open — when
    nobody is, the widget says so instead of the position), and
    ``queue.changed`` ``{"workgroup_id", "length"}`` to the workgroup's agents. ``waiting``: the
    whole queue in order, with each session's workgroup loaded, when the caller has just read
    it under the workgroup's lock (read otherwise)."""
    if waiting is None:
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
    available = bool(waiting) and selectors.workgroup_has_online_agent(workgroup_id=workgroup_id)
    publish_events_on_commit(
        (
            {
                "type": "queue.position",
                "conversation_id": session.conversation_id,
                "position": position,
                "agents_online": available,
                "workgroup": {"id": session.workgroup_id, "name": session.workgroup.name},
            },
            [f"v:{session.visitor_id}"],
        )
        for position, session in enumerate(waiting, start=1)
    )


def views_changed_publish(*, workgroup_id: int) -> None:
    """``views.changed`` ``{"workgroup_id"}`` to every agent of the workgroup after commit: a
    conversation of theirs changed in a way their list's views count (closed by a colleague,
    the visitor or a timer), so open inboxes fetch their counts again. A doorbell without
    data: what each agent may see is decided when they fetch (kefu.inbox_views)."""
    members = Workgroup.agents.through.objects.filter(workgroup_id=workgroup_id).values_list(
        "user_id", flat=True
    )
    publish_event_on_commit(
        {"type": "views.changed", "workgroup_id": workgroup_id}, [f"u:{uid}" for uid in members]
    )


def visitor_changed_publish(visitor: Visitor) -> None:
    """Tell the agents serving the visitor that the profile changed (``visitor.updated``)."""
    agents = set(
        Session.objects.filter(visitor=visitor, agent__isnull=False)
        .exclude(status=Session.Status.CLOSED)
        .values_list("agent_id", flat=True)
    )
    publish_event_on_commit(
        {"type": "visitor.updated", "visitor_id": visitor.pk}, [f"u:{a}" for a in agents]
    )
    webhooks.contact_emit("contact.updated", visitor_id=visitor.pk)
