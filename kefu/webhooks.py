"""The webhook events of customer service (docs/webhooks.md): conversations, their messages,
contacts and CSAT. Each helper is called by the service that made the change, inside its
transaction; :func:`org.webhooks.services.webhook_emit` sends nothing when no endpoint of the
tenant subscribes, and builds the payload after commit otherwise. Deliveries are ordered per
conversation (key ``conversation:<id>``) and per contact (``contact:<id>``)."""

from __future__ import annotations

from typing import Any

from im.models import Message
from im.serializers import message_payload
from kefu.models import Session, Visitor
from org.webhooks.services import webhook_emit


def contact_payload(visitor: Visitor) -> dict[str, Any]:
    """A contact (visitor) in webhook payloads: ``{"id", "external_id" (the tenant's customer id
    given with a verified ``Weiyu.identify``, else ""), "name", "email", "phone", "language",
    "channel_id", "page_url", "attributes", "tags": [name], "created_at"}``."""
    return {
        "id": visitor.pk,
        "external_id": visitor.external_id,
        "name": visitor.name,
        "email": visitor.email,
        "phone": visitor.phone,
        "language": visitor.language,
        "channel_id": visitor.channel_id,
        "page_url": visitor.page_url,
        "attributes": visitor.attributes or {},
        "tags": sorted(visitor.tags.values_list("name", flat=True)),
        "created_at": visitor.created_at.isoformat(),
    }


def conversation_data(session_id: int) -> dict[str, Any]:
    """``{"conversation": {"id", "session_id", "status", "channel": {"id", "name"},
    "workgroup": {"id", "name"}, "agent": {"id", "name"} | null, "contact": contact,
    "created_at", "assigned_at", "closed_at", "closed_by", "csat": {"score", "comment"} |
    null}}``, read now (after commit)."""
    session = Session.objects.select_related("visitor", "channel", "workgroup", "agent").get(
        pk=session_id
    )
    agent = session.agent
    return {
        "conversation": {
            "id": session.conversation_id,
            "session_id": session.pk,
            "status": session.status,
            "channel": {"id": session.channel_id, "name": session.channel.name},
            "workgroup": {"id": session.workgroup_id, "name": session.workgroup.name},
            "agent": {"id": agent.pk, "name": agent.name} if agent else None,
            "contact": contact_payload(session.visitor),
            "created_at": session.created_at.isoformat(),
            "assigned_at": session.assigned_at.isoformat() if session.assigned_at else None,
            "closed_at": session.closed_at.isoformat() if session.closed_at else None,
            "closed_by": session.closed_by or None,
            "csat": {"score": session.csat_score, "comment": session.csat_comment}
            if session.csat_score is not None
            else None,
        }
    }


def conversation_emit(
    event: str, *, session_id: int, conversation_id: int, extra: dict[str, Any] | None = None
) -> None:
    """``event`` (``conversation.created|assigned|transferred|closed``, ``csat.submitted``) with
    :func:`conversation_data` and ``extra`` merged in (e.g. ``{"from_agent": {...}}``)."""

    def build() -> dict[str, Any]:
        return {**conversation_data(session_id), **(extra or {})}

    webhook_emit(event=event, key=f"conversation:{conversation_id}", build=build)


def message_emit(message: Message) -> None:
    """``message.created`` ``{"message": message as the REST API shows it}``."""
    webhook_emit(
        event="message.created",
        key=f"conversation:{message.conversation_id}",
        build=lambda: {"message": message_payload(message)},
    )


def contact_emit(event: str, *, visitor_id: int) -> None:
    """``contact.created`` / ``contact.updated`` ``{"contact": contact}``, read after commit."""

    def build() -> dict[str, Any]:
        return {"contact": contact_payload(Visitor.objects.get(pk=visitor_id))}

    webhook_emit(event=event, key=f"contact:{visitor_id}", build=build)
