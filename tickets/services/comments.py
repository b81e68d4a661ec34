"""Comments on tickets (TK-1): replies and internal notes by staff or the requesting visitor,
their files, and what a public reply does — status and SLA clocks move, and a staff reply is
e-mailed to the requester after commit (:mod:`tickets.services.email`).

Refusals raise :class:`weiyu.errors.ServiceError` with nothing written.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from im.attachments import attachment_upload
from im.models import Attachment
from kefu.models import Visitor
from org.models import User
from tickets.models import Comment, Notification, Ticket
from tickets.selectors import ticket_get
from tickets.services.clocks import (
    sla_clocks_requester_replied,
    sla_clocks_staff_replied,
    sla_clocks_status_changed,
)
from tickets.services.email import reply_email_schedule, requester_address
from tickets.services.events import ticket_updated_publish
from tickets.services.notifications import notifications_create
from tickets.services.tickets import BODY_MAX
from weiyu import parsing
from weiyu.errors import ServiceError

S = Ticket.Status
ATTACHMENTS_MAX = 10
MENTIONS_MAX = 20


@transaction.atomic
def comment_add(
    *,
    ticket_id: object,
    body: object,
    user: User | None = None,
    visitor: Visitor | None = None,
    public: object = True,
    mentions: object = None,
    attachment_ids: object = None,
) -> Comment:
    """A reply or an internal note, by a staff member (``user``) or the requesting visitor.

    Visitors reply publicly on their own tickets only. ``mentions``: user ids to notify (staff
    only). ``attachment_ids``: up to 10 files the author uploaded for this ticket
    (:func:`attachment_add`) and not yet on a comment. Errors: ``invalid``, ``not_found``,
    ``conflict`` on a closed or merged ticket.
    """
    now = timezone.now()
    body = parsing.text(body, "body", BODY_MAX)
    public = parsing.boolean(public, "public")
    if visitor is not None:
        ticket = (
            Ticket.objects.select_for_update().filter(pk=parsing.pk(ticket_id, "ticket_id")).first()
        )
        if ticket is None or ticket.requester_visitor_id != visitor.pk:
            raise ServiceError("not_found", _("No such ticket."))
        public = True
    elif user is not None:
        ticket = ticket_get(ticket_id=ticket_id, user=user, lock=True)
    else:
        raise ServiceError("invalid", _("A comment needs an author."))
    if ticket.status in (S.CLOSED, S.MERGED):
        raise ServiceError("conflict", _("A closed or merged ticket takes no more comments."))
    mentioned = []
    if mentions:
        if user is None or not isinstance(mentions, list) or len(mentions) > MENTIONS_MAX:
            raise ServiceError(
                "invalid", _("mentions must be a list of user ids."), field="mentions"
            )
        mentioned = list(
            User.objects.filter(
                pk__in=[parsing.pk(m, "mentions") for m in mentions], is_active=True
            )
        )
    files = _uploaded_files(attachment_ids, uploader_key=(user or visitor).member_key)
    comment = Comment.objects.create(
        ticket=ticket,
        author_user=user,
        author_visitor=visitor,
        public=public,
        body=body,
        mentions=[u.pk for u in mentioned],
    )
    if files:
        comment.attachments.add(*files)
    by_requester = visitor is not None or (user is not None and user.pk == ticket.requester_user_id)
    if public:
        _public_reply_effects(ticket, comment, by_requester=by_requester, now=now)
    if user is not None and not by_requester:
        ticket.watchers.add(user)  # staff who write on a ticket follow it
    label = {"number": ticket.number, "subject": ticket.subject}
    if mentioned:
        notifications_create(
            recipients=mentioned,
            kind=Notification.Kind.MENTION,
            text=_("%(name)s mentioned you on #%(number)s %(subject)s")
            % {**label, "name": user.name if user else ""},
            ticket=ticket,
            exclude=user,
        )
    if by_requester:
        notifications_create(
            recipients=[ticket.assignee, *ticket.watchers.all()],
            kind=Notification.Kind.REPLY,
            text=_("New reply on #%(number)s %(subject)s") % label,
            ticket=ticket,
            exclude=user,
        )
    ticket_updated_publish(ticket=ticket)
    return comment


def _public_reply_effects(
    ticket: Ticket, comment: Comment, *, by_requester: bool, now: dt.datetime
) -> None:
    """Status and SLA after a public comment; a staff reply is also e-mailed to the requester."""
    old_status = ticket.status
    if not by_requester:  # staff answered the requester
        if requester_address(ticket):
            reply_email_schedule(comment=comment)
        if ticket.first_responded_at is None:
            ticket.first_responded_at = now
        if ticket.status == S.NEW:
            ticket.status = S.OPEN
        ticket.save(update_fields=["first_responded_at", "status", "updated_at"])
        sla_clocks_staff_replied(ticket=ticket, now=now)
    else:
        if ticket.status in (S.PENDING, S.SOLVED):
            ticket.status = S.OPEN
            ticket.solved_at = None
            ticket.save(update_fields=["status", "solved_at", "updated_at"])
        sla_clocks_requester_replied(ticket=ticket, now=now)
    if ticket.status != old_status:
        sla_clocks_status_changed(ticket=ticket, old=old_status, now=now)


def _uploaded_files(ids: object, *, uploader_key: str) -> list[Attachment]:
    if ids in (None, []):
        return []
    if not isinstance(ids, list) or len(ids) > ATTACHMENTS_MAX:
        raise ServiceError(
            "invalid", _("attachment_ids must be a list of at most 10 ids."), field="attachment_ids"
        )
    wanted = {parsing.pk(i, "attachment_ids") for i in ids}
    files = list(
        Attachment.objects.filter(
            pk__in=wanted, uploader_key=uploader_key, conversation__isnull=True
        ).exclude(pk__in=Comment.attachments.through.objects.values("attachment_id"))
    )
    if len(files) != len(wanted):
        raise ServiceError(
            "invalid", _("Upload the files to this ticket first."), field="attachment_ids"
        )
    return files


def attachment_add(
    *,
    ticket_id: object,
    upload: Any,
    kind: object = "file",
    user: User | None = None,
    visitor: Visitor | None = None,
) -> Attachment:
    """Store a file for a comment about to be written on a ticket the uploader may see (staff)
    or asked for (visitor). Same checks as chat files (``im.attachments.attachment_upload``:
    type by content, the tenant's size limits and blocked types). Errors: ``not_found``,
    ``invalid``, ``too_large``, ``conflict`` on a closed ticket."""
    if visitor is not None:
        ticket = Ticket.objects.filter(pk=parsing.pk(ticket_id, "ticket_id")).first()
        if ticket is None or ticket.requester_visitor_id != visitor.pk:
            raise ServiceError("not_found", _("No such ticket."))
        key = visitor.member_key
    elif user is not None:
        ticket = ticket_get(ticket_id=ticket_id, user=user)
        key = user.member_key
    else:
        raise ServiceError("invalid", _("A file needs an uploader."))
    if ticket.status in (S.CLOSED, S.MERGED):
        raise ServiceError("conflict", _("A closed or merged ticket takes no more comments."))
    return attachment_upload(
        conversation_id=None, uploader_key=key, upload=upload, kind=kind, standalone=True
    )
