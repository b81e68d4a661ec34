"""Ticket services (TK-1, TK-3): create, update, bulk changes, merge, split, watch, a visitor's
left message, and releasing a deleted staff member's tickets.

Every function validates its input, runs in one transaction, keeps the SLA clocks in step
(:mod:`tickets.services.clocks`), writes notifications (:mod:`tickets.services.notifications`)
and publishes ``ticket.updated`` after commit (:mod:`tickets.services.events`). Refusals raise
:class:`weiyu.errors.ServiceError` with nothing written. Comments and their files are
:mod:`tickets.services.comments`.

Status rules (after Zendesk's ticket statuses): ``new → open/pending/on_hold/solved``;
``open ↔ pending ↔ on_hold``, any of them ``→ solved``; ``solved → open`` (reopen) or
``→ closed``; ``closed`` and ``merged`` are final. A public staff reply on a *new* ticket makes it
*open*; a requester reply on a *pending* or *solved* ticket reopens it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im import selectors as im_selectors
from im.models import Conversation, Message
from im.services import messages as im_messages
from kefu import syslines as kefu_syslines
from kefu.models import Session, Visitor, Workgroup
from org.models import User
from tickets.models import Category, Comment, Notification, Priority, Ticket, TicketCounter
from tickets.selectors import can_see, may_work, ticket_get
from tickets.services.clocks import (
    sla_clocks_retarget,
    sla_clocks_start,
    sla_clocks_status_changed,
)
from tickets.services.events import ticket_updated_publish
from tickets.services.notifications import notifications_create
from weiyu import parsing
from weiyu.errors import ServiceError

S = Ticket.Status
SUBJECT_MAX = 200
BODY_MAX = 20_000
TAGS_MAX = 20
TAG_MAX = 32
TRANSITIONS: dict[str, set[str]] = {
    S.NEW: {S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED},
    S.OPEN: {S.PENDING, S.ON_HOLD, S.SOLVED},
    S.PENDING: {S.OPEN, S.ON_HOLD, S.SOLVED},
    S.ON_HOLD: {S.OPEN, S.PENDING, S.SOLVED},
    S.SOLVED: {S.OPEN, S.CLOSED},
    S.CLOSED: set(),
    S.MERGED: set(),
}
EDITABLE = (
    "subject",
    "status",
    "priority",
    "assignee_id",
    "workgroup_id",
    "category_id",
    "tags",
    "due_at",
)


def _user(value: object, field: str, *, agents_only: bool = False) -> User | None:
    if value is None:
        return None
    user = User.objects.filter(pk=parsing.pk(value, field), is_active=True).first()
    if user is None or (agents_only and not user.is_agent):
        raise ServiceError(
            "invalid", _("No such agent.") if agents_only else _("No such person."), field=field
        )
    return user


def _workgroup(value: object) -> Workgroup | None:
    if value is None:
        return None
    workgroup = Workgroup.objects.filter(pk=parsing.pk(value, "workgroup_id")).first()
    if workgroup is None:
        raise ServiceError("invalid", _("No such workgroup."), field="workgroup_id")
    return workgroup


def _category(value: object) -> Category | None:
    if value is None:
        return None
    category = Category.objects.filter(pk=parsing.pk(value, "category_id")).first()
    if category is None:
        raise ServiceError("invalid", _("No such category."), field="category_id")
    return category


def _tags(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > TAGS_MAX:
        raise ServiceError(
            "invalid",
            _("tags must be a list of at most %(n)d words.") % {"n": TAGS_MAX},
            field="tags",
        )
    tags: list[str] = []
    for raw in value:
        tag = parsing.text(raw, "tags", TAG_MAX).lower()
        if tag not in tags:
            tags.append(tag)
    return tags


def _next_number() -> int:
    counter, _created = TicketCounter.objects.select_for_update().get_or_create(pk=1)
    counter.last += 1
    counter.save(update_fields=["last"])
    return counter.last


def _system_note(ticket: Ticket, text: str) -> Comment:
    return Comment.objects.create(ticket=ticket, public=False, body=text)


def _transcript(conversation: Conversation) -> str:
    lines = []
    for m in (
        Message.objects.filter(conversation=conversation, internal=False, recalled_at__isnull=True)
        .exclude(msg_type__in=("system", "recall"))
        .order_by("seq")
    ):
        when = timezone.localtime(m.created_at).strftime("%Y-%m-%d %H:%M")
        text = m.content or (m.attachment.name if m.attachment_id else "")
        lines.append(f"[{when}] {m.sender_name or m.sender_key}: {text}")
    return "\n".join(lines)


# --- create ------------------------------------------------------------------------------------


@transaction.atomic
def ticket_create(
    *,
    subject: object,
    body: object,
    source: str,
    creator: User | None = None,
    requester_visitor: Visitor | None = None,
    requester_user_id: object = None,
    requester_email: object = "",
    priority: object = Priority.NORMAL,
    assignee_id: object = None,
    workgroup_id: object = None,
    category_id: object = None,
    tags: object = None,
    due_at: object = None,
    conversation_id: object = None,
) -> Ticket:
    """Open a ticket; returns it with its SLA clocks started.

    Requester: the visitor (widget, conversation), or ``requester_user_id``, or the ``creator``
    when neither is given. ``body`` becomes the first public comment, written by the requester
    when the requester is the one asking (widget, API by a visitor), else by the creator.
    ``conversation_id``: the chat it comes from; its transcript is kept as an internal note.
    Errors: ``invalid`` (with ``field``), ``not_found`` for a conversation the creator is not in.
    """
    now = timezone.now()
    subject = parsing.text(subject, "subject", SUBJECT_MAX)
    body = parsing.text(body, "body", BODY_MAX)
    priority = parsing.choice(priority, "priority", Priority)
    requester_user = _user(requester_user_id, "requester_user_id")
    if requester_visitor is None and requester_user is None and creator is not None:
        requester_user = creator
    email = parsing.text(requester_email, "requester_email", 254, required=False)
    conversation = None
    if conversation_id is not None:
        pk = parsing.pk(conversation_id, "conversation_id")
        if creator is None:
            raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
        # active members only: a former member must not get the transcript through a ticket
        conversation = im_selectors.participant_get(
            conversation_id=pk, member_key=creator.member_key
        ).conversation
        if requester_visitor is None and requester_user_id is None:
            session = getattr(conversation, "kefu_session", None)
            visitor_id = session.visitor_id if session is not None else None
            if visitor_id:
                requester_visitor = Visitor.objects.get(pk=visitor_id)
                requester_user = None
    ticket = Ticket.objects.create(
        number=_next_number(),
        subject=subject,
        priority=priority,
        source=source,
        requester_visitor=requester_visitor,
        requester_user=requester_user,
        requester_email=email,
        assignee=_user(assignee_id, "assignee_id", agents_only=True),
        workgroup=_workgroup(workgroup_id),
        category=_category(category_id),
        tags=_tags(tags),
        due_at=parsing.optional_datetime(due_at, "due_at"),
        conversation=conversation,
    )
    by_requester = requester_visitor is not None and creator is None
    Comment.objects.create(
        ticket=ticket,
        author_visitor=requester_visitor if by_requester else None,
        author_user=None if by_requester else creator,
        public=True,
        body=body,
    )
    if conversation is not None:
        transcript = _transcript(conversation)
        if transcript:
            _system_note(ticket, _("Conversation transcript:") + "\n" + transcript)
    sla_clocks_start(ticket=ticket, now=now)
    if creator is not None:
        ticket.watchers.add(creator)
    if ticket.assignee is not None:
        _assigned_notify(ticket, by=creator)
    ticket_updated_publish(ticket=ticket, webhook_event="ticket.created")
    return ticket


def _assigned_notify(ticket: Ticket, *, by: User | None) -> None:
    """Tell the ticket's new assignee (unless they assigned it to themselves)."""
    notifications_create(
        recipients=[ticket.assignee],
        kind=Notification.Kind.ASSIGNED,
        text=_("#%(number)s %(subject)s was assigned to you")
        % {"number": ticket.number, "subject": ticket.subject},
        ticket=ticket,
        exclude=by,
    )


@transaction.atomic
def ticket_leave_message(
    *,
    visitor: Visitor,
    body: object,
    subject: object = None,
    name: object = None,
    email: object = None,
) -> Ticket:
    """A widget visitor leaves a message (KF-4, TK-3): a ticket of the channel's workgroup with the
    visitor as requester. ``subject`` defaults to the start of the message; ``name`` renames the
    visitor; ``email`` is kept for replies by e-mail. Errors: ``invalid`` (with ``field``)."""
    text = parsing.text(body, "body", BODY_MAX)
    if subject in (None, ""):
        first = text.splitlines()[0]
        subject = first if len(first) <= 60 else first[:59] + "…"
    new_name = parsing.text(name, "name", 100, required=False)
    if new_name and new_name != visitor.name:
        visitor.name = new_name
        visitor.save(update_fields=["name"])
    address = parsing.text(email, "email", 254, required=False)
    if address:
        try:
            validate_email(address)
        except ValidationError:
            raise ServiceError(
                "invalid", _("Enter a valid e-mail address."), field="email"
            ) from None
    return ticket_create(
        subject=subject,
        body=text,
        source=Ticket.Source.WIDGET,
        requester_visitor=visitor,
        requester_email=address,
        workgroup_id=visitor.channel.workgroup_id,
    )


# --- update ------------------------------------------------------------------------------------


@transaction.atomic
def ticket_update(*, ticket_id: object, actor: User, changes: dict[str, Any]) -> Ticket:  # noqa: PLR0912
    """Change any of :data:`EDITABLE` (``assignee_id`` / ``workgroup_id`` / ``category_id`` /
    ``due_at`` may be null). Agents, and supervisors for the tickets they see
    (``tickets.selectors.may_work``). Errors: ``invalid`` (unknown field or value, a status
    change the rules above do not allow: ``conflict``), ``forbidden`` for anyone else."""
    if not may_work(actor):
        raise ServiceError("forbidden", _("Only agents can change tickets."))
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown or not changes:
        raise ServiceError(
            "invalid",
            _("Change one of: %(fields)s.") % {"fields": ", ".join(EDITABLE)},
            field=unknown[0] if unknown else None,
        )
    ticket = ticket_get(ticket_id=ticket_id, user=actor, lock=True)
    if ticket.status in (S.CLOSED, S.MERGED):
        raise ServiceError("conflict", _("A closed or merged ticket cannot be changed."))
    now = timezone.now()
    old_status, old_priority, old_workgroup = ticket.status, ticket.priority, ticket.workgroup_id
    old_assignee = ticket.assignee_id
    if "subject" in changes:
        ticket.subject = parsing.text(changes["subject"], "subject", SUBJECT_MAX)
    if "priority" in changes:
        ticket.priority = parsing.choice(changes["priority"], "priority", Priority)
    if "assignee_id" in changes:
        ticket.assignee = _user(changes["assignee_id"], "assignee_id", agents_only=True)
    if "workgroup_id" in changes:
        ticket.workgroup = _workgroup(changes["workgroup_id"])
    if "category_id" in changes:
        ticket.category = _category(changes["category_id"])
    if "tags" in changes:
        ticket.tags = _tags(changes["tags"])
    if "due_at" in changes:
        ticket.due_at = parsing.optional_datetime(changes["due_at"], "due_at")
    if "status" in changes:
        status = parsing.choice(changes["status"], "status", S)
        if status != ticket.status:
            if status not in TRANSITIONS[ticket.status]:
                raise ServiceError(
                    "conflict",
                    _("A %(old)s ticket cannot become %(new)s.")
                    % {"old": S(ticket.status).label, "new": S(status).label},
                    field="status",
                )
            ticket.status = status
            if status == S.SOLVED:
                ticket.solved_at = now
            elif status == S.CLOSED:
                ticket.closed_at = now
            elif old_status == S.SOLVED:
                ticket.solved_at = None
    ticket.save()
    if ticket.priority != old_priority or ticket.workgroup_id != old_workgroup:
        sla_clocks_retarget(ticket=ticket, now=now)
    if ticket.status != old_status:
        sla_clocks_status_changed(ticket=ticket, old=old_status, now=now)
    if ticket.assignee_id and ticket.assignee_id != old_assignee:
        _assigned_notify(ticket, by=actor)
    ticket_updated_publish(ticket=ticket)
    return ticket


@transaction.atomic
def tickets_bulk_update(*, ticket_ids: object, actor: User, changes: dict[str, Any]) -> dict:
    """The same change on many tickets: ``{"updated": [ids], "failed": [{"id", "code",
    "detail"}]}``. Each ticket is all or nothing; one refusal does not stop the others."""
    if not isinstance(ticket_ids, list) or not ticket_ids or len(ticket_ids) > 200:
        raise ServiceError(
            "invalid", _("ticket_ids must be a list of 1 to 200 ids."), field="ticket_ids"
        )
    updated, failed = [], []
    for ticket_id in ticket_ids:
        try:
            with transaction.atomic():
                ticket_update(ticket_id=ticket_id, actor=actor, changes=dict(changes))
            updated.append(ticket_id)
        except ServiceError as exc:
            failed.append({"id": ticket_id, "code": exc.code, "detail": exc.message})
    return {"updated": updated, "failed": failed}


# --- merge and split ---------------------------------------------------------------------------


@transaction.atomic
def ticket_merge(*, source_id: object, target_id: object, actor: User) -> Ticket:
    """Merge ticket ``source_id`` into ``target_id``: the source's public comments are copied to
    the target as one internal note, its watchers join the target, and the source becomes
    *merged* (final) pointing at the target. Returns the target. Agents only; ``conflict`` for
    the same ticket or a closed/merged one."""
    if not actor.is_agent:
        raise ServiceError("forbidden", _("Only agents can merge tickets."))
    first, second = sorted([parsing.pk(source_id, "source_id"), parsing.pk(target_id, "target_id")])
    if first == second:
        raise ServiceError("conflict", _("A ticket cannot be merged into itself."))
    # lock in id order so two opposite merges cannot deadlock
    locked = {
        t.pk: t for t in (ticket_get(ticket_id=pk, user=actor, lock=True) for pk in (first, second))
    }
    source, target = locked[source_id], locked[target_id]
    for ticket in (source, target):
        if ticket.status in (S.CLOSED, S.MERGED):
            raise ServiceError(
                "conflict", _("#%(number)s is closed or merged.") % {"number": ticket.number}
            )
    now = timezone.now()
    lines = [
        f"[{timezone.localtime(c.created_at).strftime('%Y-%m-%d %H:%M')}] {c.author_name}: {c.body}"
        for c in source.comments.filter(public=True).select_related("author_user", "author_visitor")
    ]
    _system_note(
        target,
        _("Merged from #%(number)s %(subject)s:")
        % {"number": source.number, "subject": source.subject}
        + "\n"
        + "\n".join(lines),
    )
    _system_note(source, _("Merged into #%(number)s") % {"number": target.number})
    target.watchers.add(*source.watchers.all())
    old = source.status
    source.status = S.MERGED
    source.merged_into = target
    source.closed_at = now
    source.save(update_fields=["status", "merged_into", "closed_at", "updated_at"])
    sla_clocks_status_changed(ticket=source, old=old, now=now)
    ticket_updated_publish(ticket=source)
    ticket_updated_publish(ticket=target)
    return target


@transaction.atomic
def ticket_split(*, comment_id: object, actor: User, subject: object = None) -> Ticket:
    """A new ticket from one comment of an existing one (same requester, workgroup and
    priority); both get a note pointing at the other. Agents only."""
    if not actor.is_agent:
        raise ServiceError("forbidden", _("Only agents can split tickets."))
    comment = (
        Comment.objects.select_related("ticket")
        .filter(pk=parsing.pk(comment_id, "comment_id"))
        .first()
    )
    if comment is None or not can_see(actor, comment.ticket):
        raise ServiceError("not_found", _("No such comment."))
    origin = comment.ticket
    new = ticket_create(
        subject=subject if subject not in (None, "") else origin.subject,
        body=comment.body,
        source=Ticket.Source.INBOX,
        creator=actor,
        requester_visitor=origin.requester_visitor,
        requester_user_id=origin.requester_user_id,
        requester_email=origin.requester_email,
        priority=origin.priority,
        workgroup_id=origin.workgroup_id,
    )
    _system_note(new, _("Split from #%(number)s") % {"number": origin.number})
    _system_note(origin, _("A comment was split into #%(number)s") % {"number": new.number})
    return new


@transaction.atomic
def ticket_from_message(*, message_id: object, actor: User, subject: object = None) -> Ticket:
    """Split one message of a customer conversation off into a new ticket (issue 17): the
    message's text is the ticket's first comment, the conversation's visitor its requester, its
    workgroup the conversation's; the ticket points at the conversation, an internal note says
    which message it came from, and the agents of the conversation read an internal line
    "Ticket #N split off from a message". ``subject``: default the message's first 80 characters.

    Only an agent who is (still) in the conversation (a former participant: ``not_found``);
    internal notes, system lines and recalled messages cannot be split (``invalid``).
    """
    if not actor.is_agent:
        raise ServiceError("forbidden", _("Only agents can create tickets."))
    pk = parsing.pk(message_id, "message_id")
    message = Message.objects.filter(pk=pk).first()
    if message is None:
        raise ServiceError("not_found", _("No such message."), field="message_id")
    # active members only: a former participant must not read it through a ticket
    conversation = im_selectors.participant_get(
        conversation_id=message.conversation_id, member_key=actor.member_key
    ).conversation
    session = Session.objects.filter(conversation_id=conversation.pk).first()
    if conversation.kind != Conversation.Kind.VISITOR or session is None:
        raise ServiceError("not_found", _("No such message."), field="message_id")
    if (
        message.internal
        or message.recalled_at is not None
        or message.msg_type in (Message.Type.SYSTEM, Message.Type.RECALL)
    ):
        raise ServiceError(
            "invalid", _("Only a message of the conversation can be split off."), field="message_id"
        )
    text = message.content or (message.attachment.name if message.attachment_id else "")
    if not text.strip():
        raise ServiceError("invalid", _("This message has no text."), field="message_id")
    if subject in (None, ""):
        subject = " ".join(text.split())[:80]
    ticket = ticket_create(
        subject=subject,
        body=text[:BODY_MAX],
        source=Ticket.Source.CONVERSATION,
        creator=actor,
        requester_visitor=Visitor.objects.get(pk=session.visitor_id),
        workgroup_id=session.workgroup_id,
    )
    ticket.conversation = conversation
    ticket.save(update_fields=["conversation"])
    when = timezone.localtime(message.created_at).strftime("%Y-%m-%d %H:%M")
    _system_note(
        ticket,
        _("Split off from a message of %(name)s at %(time)s in conversation %(id)s.")
        % {"name": message.sender_name or message.sender_key, "time": when, "id": conversation.pk},
    )
    im_messages.system_message_post(
        conversation_id=conversation.pk,
        code=kefu_syslines.TICKET_SPLIT,
        params={"number": ticket.number, "agent": actor.name},
        internal=True,
    )
    return ticket


def ticket_watch(*, ticket_id: object, user: User, watching: object) -> Ticket:
    """Follow (``watching`` true) or stop following a ticket the user can see: watchers hear of
    requester replies and SLA breaches. Errors: ``invalid``, ``not_found``."""
    watching = parsing.boolean(watching, "watching")
    ticket = ticket_get(ticket_id=ticket_id, user=user)
    if watching:
        ticket.watchers.add(user)
    else:
        ticket.watchers.remove(user)
    return ticket


def tickets_release_user(*, user: User) -> int:
    """A deleted staff member's tickets (receiver of :data:`org.signals.user_deactivated` with
    ``deleted=True``): every ticket still being worked (not solved, closed or merged) they were
    assigned goes back to its workgroup unassigned, with an internal note; they stop watching
    tickets. Their comments and requests stay under their name. Returns how many tickets were
    unassigned."""
    live = Ticket.objects.filter(assignee=user).exclude(
        status__in=[Ticket.Status.SOLVED, Ticket.Status.CLOSED, Ticket.Status.MERGED]
    )
    count = 0
    for ticket in live.select_for_update():
        ticket.assignee = None
        ticket.save(update_fields=["assignee", "updated_at"])
        _system_note(ticket, _("Unassigned: %(name)s was deleted.") % {"name": user.name})
        ticket_updated_publish(ticket=ticket)
        count += 1
    user.watched_tickets.clear()
    return count
