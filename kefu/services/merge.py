"""Merging two conversations of the same customer (issue 17, "Merge"; Chatwoot #9264).

The agent serving a conversation (the one kept) merges another conversation of the same customer
into it: the same visitor, or a visitor of the tenant with the same e-mail address or phone
number. The other one is closed (if it was still going) and points at the kept one
(``Session.merged_into``); its messages stay where they are, and the kept conversation's
transcript — the export, the printable transcript (:mod:`kefu.exports`) — has the messages of
both, in the order they were written. Both conversations get an internal line (agents only).

Messages are not copied: a conversation's ``seq`` numbers are what every client's receipts and
history rely on, and re-numbering them would break them.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.services import messages as im_messages
from kefu import syslines
from kefu.models import Session, Visitor
from kefu.senders import agent_sender
from kefu.services import sessions as kefu_sessions
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError

#: candidates listed at most
CANDIDATES_MAX = 20


def _same_customer(visitor: Visitor) -> Q:
    """Sessions of the same customer as ``visitor``: that visitor, or one with the same
    (non-empty) e-mail address or phone number."""
    same = Q(visitor_id=visitor.pk)
    if visitor.email:
        same |= Q(visitor__email__iexact=visitor.email)
    if visitor.phone:
        same |= Q(visitor__phone=visitor.phone)
    return same


def _kept_session(user: User, conversation_id: object) -> Session:
    """The session of a customer conversation the agent is (still) in; ``not_found`` otherwise
    (a former participant included)."""
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    im_selectors.participant_get(conversation_id=conversation_id, member_key=user.member_key)
    session = (
        Session.objects.select_related("visitor").filter(conversation_id=conversation_id).first()
    )
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return session


def merge_candidates(*, user: User, conversation_id: object) -> list[dict[str, Any]]:
    """The other conversations of the same customer that can be merged into this one (newest
    first, at most :data:`CANDIDATES_MAX`): ``[{"conversation_id", "visitor", "status",
    "created_at", "closed_at", "agent"}]``. Errors as :func:`conversation_merge`."""
    kept = _kept_session(user, conversation_id)
    rows = (
        Session.objects.filter(_same_customer(kept.visitor))
        .exclude(pk=kept.pk)
        .filter(merged_into__isnull=True)
        .select_related("visitor", "agent")
        .order_by("-created_at")[:CANDIDATES_MAX]
    )
    return [
        {
            "conversation_id": s.conversation_id,
            "visitor": s.visitor.name,
            "status": s.status,
            "created_at": s.created_at.isoformat(),
            "closed_at": s.closed_at.isoformat() if s.closed_at else None,
            "agent": s.agent.name if s.agent else None,
        }
        for s in rows
    ]


def conversation_merge(
    *, user: User, conversation_id: object, other_conversation_id: object
) -> Session:
    """Merge ``other_conversation_id`` into ``conversation_id`` (kept); returns the other
    session, now closed and pointing at the kept one.

    Who: an agent in the kept conversation (``not_found`` for others and former participants).
    Raises ``ServiceError``: ``invalid`` (the same conversation, a conversation that is not a
    customer conversation, another customer's — matched by visitor, e-mail or phone, ``field``
    ``other_conversation_id``), ``conflict`` (either was merged already). An open other
    conversation is closed first (its visitor reads that it ended). Writes internal lines in
    both and the audit of the close.
    """
    kept = _kept_session(user, conversation_id)
    other_id = parsing.positive_int(other_conversation_id, "other_conversation_id")
    if other_id == kept.conversation_id:
        raise ServiceError(
            "invalid", _("Choose another conversation."), field="other_conversation_id"
        )
    with transaction.atomic():
        # both rows, in id order (the lock order of sessions elsewhere)
        locked = {
            s.pk: s
            for s in Session.objects.select_for_update(of=("self",))
            .filter(Q(pk=kept.pk) | Q(conversation_id=other_id))
            .order_by("pk")
        }
        other = next((s for s in locked.values() if s.conversation_id == other_id), None)
        kept = locked[kept.pk]
        if (
            other is None
            or not Session.objects.filter(_same_customer(kept.visitor), pk=other.pk).exists()
        ):
            raise ServiceError(
                "invalid",
                _("Only conversations of the same customer can be merged."),
                field="other_conversation_id",
            )
        if other.merged_into_id is not None or kept.merged_into_id is not None:
            raise ServiceError("conflict", _("One of these conversations was merged already."))
        when = timezone.localtime(other.created_at).strftime("%Y-%m-%d %H:%M")
        params = {"agent": user.name, "id": other.conversation_id, "time": when}
        im_messages.system_message_post(
            conversation_id=kept.conversation_id,
            code=syslines.MERGED_IN,
            params=params,
            internal=True,
        )
        if other.status != Session.Status.CLOSED:
            im_messages.system_message_post(
                conversation_id=other.conversation_id,
                code=syslines.MERGED_AWAY,
                params={"agent": user.name, "id": kept.conversation_id},
                internal=True,
            )
            kefu_sessions.session_close(session_id=other.pk, closed_by=agent_sender(user))
        Session.objects.filter(pk=other.pk).update(merged_into=kept)
        other.merged_into = kept
    return other


def merged_conversation_ids(*, conversation_id: int) -> list[int]:
    """The conversation and every conversation merged into it (directly or through another
    merge), oldest first: whose messages make up its transcript."""
    ids = [conversation_id]
    frontier = [conversation_id]
    while frontier:
        found = list(
            Session.objects.filter(merged_into__conversation_id__in=frontier).values_list(
                "conversation_id", flat=True
            )
        )
        frontier = [i for i in found if i not in ids]
        ids.extend(frontier)
    return sorted(ids)
