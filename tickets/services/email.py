"""E-mailing a public staff reply to the ticket's requester: scheduled after the reply commits,
built and sent by a worker (:func:`tickets.tasks.reply_email_task` calls :func:`reply_email_send`).
"""

from __future__ import annotations

from celery import current_app
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kefu.channels import mail as channel_mail
from tenants import mail
from tickets.models import Comment, Ticket

#: the Celery task that sends one reply; queued by name so this module need not import
#: tickets.tasks, which imports it (tests/tickets/test_email.py checks the name is registered)
REPLY_EMAIL_TASK = "tickets.tasks.reply_email_task"


def requester_address(ticket: Ticket) -> str:
    """Where e-mail replies go: the address given with the ticket, else the staff requester's;
    ``""`` for none."""
    if ticket.requester_email:
        return ticket.requester_email
    if ticket.requester_user_id and ticket.requester_user.email:
        return ticket.requester_user.email
    return ""


def reply_email_schedule(*, comment: Comment) -> None:
    """After the current transaction commits, have a worker e-mail this public reply (of the
    current tenant) to the requester. Nothing is queued if the transaction rolls back."""
    schema, comment_id = connection.schema_name, comment.pk
    transaction.on_commit(
        lambda: current_app.send_task(REPLY_EMAIL_TASK, args=[schema, comment_id])
    )


@transaction.atomic
def reply_email_send(*, comment_id: int) -> bool:
    """E-mail a public staff reply to the ticket's requester, once: the comment is locked and
    marked ``emailed_at`` in the same transaction as the send (a worker killed between the send
    and the commit may send it again — at least once, never lost). SMTP errors propagate as
    ``OSError`` or, through an e-mail channel, ``DeliveryError`` (the task retries them) and
    leave the comment unmarked. Written in the visitor's language when we speak it. Returns
    whether a mail was sent (not for an internal note, a comment already e-mailed, or a ticket
    without an address nor an e-mail conversation). Runs in the current tenant."""
    comment = (
        Comment.objects.select_for_update(of=("self",))
        .select_related(
            "ticket", "ticket__requester_user", "ticket__requester_visitor", "author_user"
        )
        .filter(pk=comment_id, emailed_at__isnull=True, public=True)
        .first()
    )
    if comment is None:
        return False
    ticket = comment.ticket
    address = requester_address(ticket)
    if not address and ticket.conversation_id is None:
        return False
    with translation.override(_requester_language(ticket)):
        if not _send_reply(comment, ticket, address):
            return False
    comment.emailed_at = timezone.now()
    comment.save(update_fields=["emailed_at"])
    return True


def _requester_language(ticket: Ticket) -> str:
    """The visitor's browser language when we speak it, else the site's default."""
    wanted = ticket.requester_visitor.language if ticket.requester_visitor_id else ""
    try:
        return translation.get_supported_language_variant(wanted.lower()) if wanted else ""
    except LookupError:
        return ""


def _send_reply(comment: Comment, ticket: Ticket, address: str) -> bool:
    """Compose and send one reply (in the active language). A ticket made from an e-mail
    channel's conversation is answered in the customer's mail thread, from the channel's
    address and server, with its files attached (kefu.channels.mail.mail_reply_send), even
    without a requester address. Returns whether a mail was sent."""
    lines = [comment.body, ""]
    files = list(comment.attachments.all())
    if ticket.conversation_id is not None:
        signature = _("— %(name)s, ticket #%(number)s") % {
            "name": comment.author_name,
            "number": ticket.number,
        }
        sent = channel_mail.mail_reply_send(
            conversation_id=ticket.conversation_id,
            text="\n".join([*lines, signature]),
            files=files,
        )
        if sent is not None:
            return True
    if not address:
        return False
    if files:
        lines += [_("Attached files (see the ticket):")] + [f"- {a.name}" for a in files] + [""]
    lines.append(
        _("— %(name)s, ticket #%(number)s. Reply to us in the chat on our website.")
        % {"name": comment.author_name, "number": ticket.number}
    )
    mail.mail_send(
        subject=_("Re: [#%(number)s] %(subject)s")
        % {"number": ticket.number, "subject": ticket.subject},
        body="\n".join(lines),
        to=[address],
    )
    return True
