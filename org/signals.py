"""Signals of the organisation app that other apps listen to (org imports none of them)."""

from django.dispatch import Signal

#: sent inside the transaction that disabled or deleted a user (:mod:`org.services`); keyword
#: arguments ``user`` (already saved inactive) and ``deleted`` (bool). Receivers hand the user's
#: live work to others — kefu: open conversations back to the queue, pending transfers
#: cancelled; on delete, im: out of their groups (ownership handed on); tickets: open tickets
#: unassigned — and keep every record of the past.
user_deactivated = Signal()
