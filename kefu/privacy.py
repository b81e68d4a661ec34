"""Privacy requests and retention (docs/security.md, "Privacy"; MISSION.md SEC; GDPR art. 15,
17 and 5(1)(e)).

- :func:`visitor_export`: everything the tenant holds about one visitor, as one JSON document
  (art. 15, right of access): the profile, tags, notes, pages seen, every conversation with its
  messages and files, ratings, and what other apps add (tickets: :func:`register`).
- :func:`visitor_erase`: the visitor's personal data erased (art. 17): the profile emptied (name
  replaced by "Erased visitor #id"), tags, notes and pages deleted, every message of their
  conversations redacted and their files deleted, ratings' comments removed. The rows that
  statistics count stay (sessions with their times, agents and scores; messages' senders and
  times), so reports of the past do not change; nothing left names the person.
- Retention (:class:`kefu.models.RetentionPolicy`, one row per tenant): conversations closed more
  than N days ago are anonymised (as above, per conversation) or deleted, by Celery beat once a
  day or ``manage.py retention`` (``--dry-run`` counts without changing anything).

Only the tenant's administrators may export or erase (``ServiceError("forbidden")``); each is
written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from im.models import Attachment, Conversation, Message
from im.services import messages as im_messages
from kefu.models import RetentionPolicy, Session, Visitor, VisitorNote, VisitorPageView
from kefu.visitors import visitor_get
from org import audit
from org.models import User
from weiyu.errors import ServiceError

#: other apps' parts of an export and an erasure: name → (export(visitor) → JSON-able,
#: erase(visitor) → count). Registered from their AppConfig.ready (tickets).
_contributors: dict[str, tuple[Callable[[Visitor], Any], Callable[[Visitor], int]]] = {}


def register(name: str, export: Callable[[Visitor], Any], erase: Callable[[Visitor], int]) -> None:
    """Add another app's data about a visitor to :func:`visitor_export` (under ``name``) and
    :func:`visitor_erase`. Registering a name again replaces it."""
    _contributors[name] = (export, erase)


def _admin_require(user: User) -> None:
    if not user.is_admin:
        raise ServiceError("forbidden", _("Only administrators can export or erase a visitor."))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _message(message: Message) -> dict[str, Any]:
    attachment = message.attachment
    return {
        "seq": message.seq,
        "sender": {"type": message.sender_type, "name": message.sender_name},
        "type": message.msg_type,
        "content": message.content,
        "internal": message.internal,
        "file": (
            {
                "name": attachment.name,
                "content_type": attachment.content_type,
                "size": attachment.size,
                "sha256": attachment.sha256,
            }
            if attachment is not None
            else None
        ),
        "created_at": _iso(message.created_at),
    }


def visitor_export(*, user: User, visitor_id: object) -> dict[str, Any]:
    """Everything about the visitor: ``{"exported_at", "visitor": {"id", "name", "email",
    "phone", "ip_address", "user_agent", "language", "referrer", "page_url", "first_seen",
    "last_seen", "channel", "tags"}, "notes": [{"text", "author", "created_at"}], "pages":
    [{"url", "title", "at"}], "conversations": [{"id", "status", "workgroup", "agent",
    "created_at", "closed_at", "csat": {"score", "comment", "at"} | null, "messages": [{"seq",
    "sender": {"type", "name"}, "type", "content", "internal", "file": {"name",
    "content_type", "size" (bytes), "sha256"} | null, "created_at"}]}], <contributor>: …}``.
    Internal notes of agents are included (they are data about the person).

    Raises ``ServiceError``: ``forbidden`` (not an administrator), ``invalid``, ``not_found``."""
    _admin_require(user)
    visitor = visitor_get(visitor_id)
    sessions = (
        Session.objects.filter(visitor=visitor)
        .select_related("agent", "workgroup")
        .order_by("created_at")
    )
    by_conversation: dict[int, list[dict[str, Any]]] = {}
    messages = (
        Message.objects.filter(conversation__kefu_session__visitor=visitor)
        .select_related("attachment")
        .order_by("conversation_id", "seq")
    )
    for message in messages:
        by_conversation.setdefault(message.conversation_id, []).append(_message(message))
    document: dict[str, Any] = {
        "exported_at": timezone.now().isoformat(),
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name,
            "email": visitor.email,
            "phone": visitor.phone,
            "ip_address": visitor.ip_address,
            "user_agent": visitor.user_agent,
            "language": visitor.language,
            "referrer": visitor.referrer,
            "page_url": visitor.page_url,
            "first_seen": _iso(visitor.created_at),
            "last_seen": _iso(visitor.last_seen_at),
            "channel": visitor.channel.name,
            "tags": list(visitor.tags.order_by("name").values_list("name", flat=True)),
            "customer_id": visitor.external_id,
            "attributes": visitor.attributes or {},
        },
        "notes": [
            {
                "text": note.text,
                "author": note.author.display_name if note.author else "",
                "created_at": _iso(note.created_at),
            }
            for note in VisitorNote.objects.filter(visitor=visitor)
            .select_related("author")
            .order_by("created_at")
        ],
        "pages": [
            {"url": view.url, "title": view.title, "at": _iso(view.created_at)}
            for view in VisitorPageView.objects.filter(visitor=visitor).order_by("created_at")
        ],
        "conversations": [
            {
                "id": session.conversation_id,
                "status": session.status,
                "workgroup": session.workgroup.name,
                "agent": session.agent.display_name if session.agent else None,
                "created_at": _iso(session.created_at),
                "closed_at": _iso(session.closed_at),
                "csat": (
                    {
                        "score": session.csat_score,
                        "comment": session.csat_comment,
                        "at": _iso(session.csat_at),
                    }
                    if session.csat_score is not None
                    else None
                ),
                "messages": by_conversation.get(session.conversation_id, []),
            }
            for session in sessions
        ],
    }
    for name, (export, _erase) in sorted(_contributors.items()):
        document[name] = export(visitor)
    audit.audit_record(
        actor=user, action=audit.EXPORT, target=visitor, data={"what": "visitor personal data"}
    )
    return document


def _anonymise_sessions(visitor: Visitor, sessions: list[Session]) -> int:
    """Redact the conversations of these sessions of ``visitor`` (see the module docstring)."""
    ids = [s.conversation_id for s in sessions]
    redacted = im_messages.conversations_redact(
        conversation_ids=ids,
        member_key=visitor.member_key,
        name=_("Erased visitor #%(id)d") % {"id": visitor.pk},
    )
    Session.objects.filter(pk__in=[s.pk for s in sessions]).update(csat_comment="")
    return redacted


@transaction.atomic
def visitor_erase(*, user: User | None, visitor_id: object) -> dict[str, int]:
    """Erase the visitor's personal data (see the module docstring); ``user`` None: the system
    (retention). Returns ``{"conversations", "messages", <contributor>: count}``. Idempotent.

    Raises ``ServiceError``: ``forbidden`` (not an administrator), ``invalid``, ``not_found``."""
    if user is not None:
        _admin_require(user)
    visitor = visitor_get(visitor_id)
    visitor = Visitor.objects.select_for_update().get(pk=visitor.pk)
    sessions = list(Session.objects.filter(visitor=visitor))
    redacted = _anonymise_sessions(visitor, sessions)
    result = {"conversations": len(sessions), "messages": redacted}
    # other apps first, while the visitor still says who they were (a channel's vendor id)
    for name, (_export, erase) in sorted(_contributors.items()):
        result[name] = erase(visitor)
    visitor.refresh_from_db()  # what the other apps changed stays changed
    visitor.name = _("Erased visitor #%(id)d") % {"id": visitor.pk}
    visitor.name_given = False
    visitor.email = visitor.phone = visitor.user_agent = visitor.referrer = visitor.page_url = ""
    # the customer id of Weiyu.identify and its attributes identify the person too
    visitor.external_id = ""
    visitor.attributes = {}
    visitor.timezone = ""
    visitor.ip_address = None
    visitor.erased_at = timezone.now()
    visitor.save()
    visitor.tags.clear()
    VisitorNote.objects.filter(visitor=visitor).delete()
    VisitorPageView.objects.filter(visitor=visitor).delete()
    audit.audit_record(
        actor=user, action=audit.ERASE, target=visitor, data={"conversations": len(sessions)}
    )
    return result


# --- retention --------------------------------------------------------------------------------


def retention_due(policy: RetentionPolicy, *, now: dt.datetime | None = None) -> list[Session]:
    """The closed sessions the policy applies to now: closed more than ``policy.days`` days
    ago and, when anonymising, not anonymised yet. Empty when the policy is off (0 days)."""
    if not policy.days:
        return []
    cutoff = (now or timezone.now()) - dt.timedelta(days=policy.days)
    due = Session.objects.filter(status=Session.Status.CLOSED, closed_at__lt=cutoff)
    if policy.action == RetentionPolicy.Action.ANONYMISE:
        due = due.filter(anonymised_at__isnull=True)
    return list(due.select_related("visitor").order_by("closed_at"))


def retention_apply(*, dry_run: bool = False, now: dt.datetime | None = None) -> dict[str, Any]:
    """Apply the tenant's retention policy (call inside its schema): ``{"action", "days",
    "conversations", "messages", "files", "dry_run"}`` — what was (or, with ``dry_run``, would
    be) anonymised or deleted. Files: attachments of those conversations."""
    policy = RetentionPolicy.current()
    due = retention_due(policy, now=now)
    conversation_ids = [s.conversation_id for s in due]
    report: dict[str, Any] = {
        "action": policy.action,
        "days": policy.days,
        "conversations": len(due),
        "messages": Message.objects.filter(conversation_id__in=conversation_ids)
        .exclude(msg_type=Message.Type.SYSTEM)
        .count(),
        "files": Attachment.objects.filter(conversation_id__in=conversation_ids).count(),
        "dry_run": dry_run,
    }
    if dry_run or not due:
        return report
    with transaction.atomic():
        if policy.action == RetentionPolicy.Action.DELETE:
            files = list(Attachment.objects.filter(conversation_id__in=conversation_ids))
            Session.objects.filter(pk__in=[s.pk for s in due]).delete()
            Conversation.objects.filter(pk__in=conversation_ids).delete()
            for attachment in files:
                transaction.on_commit(lambda a=attachment: _files_delete(a))
        else:
            for session in due:
                _anonymise_sessions(session.visitor, [session])
            Session.objects.filter(pk__in=[s.pk for s in due]).update(anonymised_at=timezone.now())
        # visitors left with no conversation and not seen since the cutoff are erased too
        stale = Visitor.objects.filter(
            erased_at__isnull=True,
            last_seen_at__lt=(now or timezone.now()) - dt.timedelta(days=policy.days),
        ).exclude(Q(sessions__isnull=False) & Q(sessions__anonymised_at__isnull=True))
        for visitor_id in stale.values_list("pk", flat=True):
            visitor_erase(user=None, visitor_id=visitor_id)
        audit.audit_record(actor=None, action=audit.RETENTION, target=RetentionPolicy, data=report)
    return report


def _files_delete(attachment: Attachment) -> None:
    for field in (attachment.file, attachment.thumbnail):
        if field:
            field.delete(save=False)
