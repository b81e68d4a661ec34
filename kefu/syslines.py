"""The automatic lines customer service posts into visitor conversations, by code (see
:mod:`im.syslines`: stored as code + parameters, rendered in each reader's language — the visitor
in theirs, the agents in theirs). static/weiyu/syslines.js carries the same codes and texts."""

from django.utils.translation import gettext_noop as _

from im.syslines import system_lines_register

ASSIGNED = "kefu.assigned"
JOINED = "kefu.joined"
TRANSFERRED = "kefu.transferred"
REQUEUED = "kefu.requeued"
AGENT_LEFT = "kefu.agent_left"
HANDOVER = "kefu.handover"
OVERFLOW_LEAVE_MESSAGE = "kefu.overflow_leave_message"
IDLE_CLOSED = "kefu.idle_closed"
ENDED = "kefu.ended"
#: internal lines (agents only) of snoozing (kefu.services.snooze)
SNOOZED = "kefu.snoozed"
SNOOZED_UNTIL_REPLY = "kefu.snoozed_until_reply"
SNOOZE_ENDED = "kefu.snooze_ended"
SNOOZE_ENDED_REPLY = "kefu.snooze_ended_reply"
#: internal: a message was split off into a ticket (tickets.services.tickets.ticket_from_message)
TICKET_SPLIT = "kefu.ticket_split"
#: internal: conversations of one customer merged (kefu.services.merge)
MERGED_IN = "kefu.merged_in"
MERGED_AWAY = "kefu.merged_away"

#: the lines a customer on a messaging channel (Telegram, WeChat, the API channel) receives, as
#: text in their language, because the widget shows them to its visitors: who serves them, a
#: transfer or a return to the queue, the robot handing over, an overflow, the end. A system line
#: without a code (a tenant's own idle-closing text) is sent too. Internal lines (snoozes,
#: ticket splits, merges) are for the staff and never leave (docs/channels.md, "System lines").
CUSTOMER_LINES = frozenset(
    {
        ASSIGNED,
        JOINED,
        TRANSFERRED,
        REQUEUED,
        AGENT_LEFT,
        HANDOVER,
        OVERFLOW_LEAVE_MESSAGE,
        IDLE_CLOSED,
        ENDED,
    }
)

system_lines_register(
    {
        ASSIGNED: _("%(agent)s is now serving you."),
        JOINED: _("%(agent)s joined the conversation."),
        TRANSFERRED: _("You are being transferred to %(workgroup)s. Please wait a moment."),
        REQUEUED: _("Sorry for the wait. We are connecting you to another colleague."),
        AGENT_LEFT: _(
            "%(agent)s had to leave. You are back in the queue for the next colleague available."
        ),
        HANDOVER: _("Connecting you to a colleague…"),
        OVERFLOW_LEAVE_MESSAGE: _(
            "Sorry for the wait: all our agents are busy. Please leave a message and we will get "
            "back to you."
        ),
        IDLE_CLOSED: _(
            "This conversation was closed because there has been no reply for a while. Write "
            "again any time."
        ),
        ENDED: _("The conversation has ended."),
        SNOOZED: _("%(agent)s snoozed the conversation until %(until)s."),
        SNOOZED_UNTIL_REPLY: _("%(agent)s snoozed the conversation until the customer replies."),
        SNOOZE_ENDED: _("The snooze ended: the conversation is back."),
        SNOOZE_ENDED_REPLY: _("The customer replied: the conversation is back."),
        TICKET_SPLIT: _("%(agent)s split a message off into ticket #%(number)s."),
        MERGED_IN: _("%(agent)s merged conversation #%(id)s (%(time)s) into this one."),
        MERGED_AWAY: _("%(agent)s merged this conversation into #%(id)s."),
    }
)
