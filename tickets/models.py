"""Tickets and SLAs (MISSION.md TK-1 … TK-4): work that outlives a chat.

A :class:`Ticket` has a requester (a visitor of the widget or a staff member), an assignee and a
workgroup, a priority, a status and comments (public replies reach the requester; internal notes
never do). Its :class:`SlaPolicy` sets targets per priority, counted in a business calendar
(:class:`org.models.BusinessCalendar`) or around the clock; each running target is an :class:`SlaClock` with its due and warning
instants stored, so a beat scanner (``tickets.services.sla``, run by ``tickets.tasks``) acts on what is due (DESIGN.md §7).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from org.models import BusinessCalendar


class Priority(models.TextChoices):
    LOW = "low", _("Low")
    NORMAL = "normal", _("Normal")
    HIGH = "high", _("High")
    URGENT = "urgent", _("Urgent")


class SlaPolicy(models.Model):
    """Targets per priority (:class:`SlaTarget`), the calendar they count in (none: around the
    clock), when to warn, and whom to escalate a breach to.

    A ticket takes the policy of its workgroup, else the default policy (``is_default``). Warning:
    at ``warning_percent`` of a target's time. Escalation: the assignee is told at the breach; the
    workgroup's lead ``escalate_lead_after_s`` after it; ``supervisor`` after
    ``escalate_supervisor_after_s``.
    """

    name = models.CharField(_("name"), max_length=100)
    is_default = models.BooleanField(_("default policy"), default=False)
    calendar = models.ForeignKey(
        BusinessCalendar,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        verbose_name=_("business calendar"),
        help_text=_("Empty: targets count around the clock."),
    )
    workgroups = models.ManyToManyField(
        "kefu.Workgroup",
        blank=True,
        related_name="sla_policies",
        verbose_name=_("workgroups"),
        help_text=_("Tickets of these workgroups use this policy."),
    )
    warning_percent = models.PositiveSmallIntegerField(
        _("warn at (percent of the target)"),
        default=75,
        validators=[MinValueValidator(1), MaxValueValidator(99)],
    )
    escalate_lead_after_s = models.PositiveIntegerField(
        _("escalate to the workgroup lead after (s)"), default=0
    )
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("supervisor"),
    )
    escalate_supervisor_after_s = models.PositiveIntegerField(
        _("escalate to the supervisor after (s)"), default=3600
    )

    class Meta:
        verbose_name = _("SLA policy")
        verbose_name_plural = _("SLA policies")
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="tickets_one_default_sla"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SlaTarget(models.Model):
    """How long (seconds of the policy's calendar) a ticket of one priority may take to reach a
    milestone. Empty: no target."""

    policy = models.ForeignKey(
        SlaPolicy, on_delete=models.CASCADE, related_name="targets", verbose_name=_("policy")
    )
    priority = models.CharField(_("priority"), max_length=16, choices=Priority.choices)
    first_response_s = models.PositiveIntegerField(_("first response (s)"), null=True, blank=True)
    next_response_s = models.PositiveIntegerField(_("next response (s)"), null=True, blank=True)
    resolution_s = models.PositiveIntegerField(_("resolution (s)"), null=True, blank=True)

    class Meta:
        verbose_name = _("SLA target")
        verbose_name_plural = _("SLA targets")
        constraints = [
            models.UniqueConstraint(fields=["policy", "priority"], name="tickets_target_unique")
        ]

    def __str__(self) -> str:
        return f"{self.policy} · {self.get_priority_display()}"


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)

    class Meta:
        verbose_name = _("ticket category")
        verbose_name_plural = _("ticket categories")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """A request that is tracked until solved. ``number`` is the tenant's running number (#1, #2…).

    Requester: ``requester_visitor`` (widget) or ``requester_user`` (staff), exactly one.
    ``conversation``: the chat it came from, if any. ``merged_into``: set when status is merged.
    """

    class Status(models.TextChoices):
        NEW = "new", _("New")
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        ON_HOLD = "on_hold", _("On hold")
        SOLVED = "solved", _("Solved")
        CLOSED = "closed", _("Closed")
        MERGED = "merged", _("Merged")

    class Source(models.TextChoices):
        INBOX = "inbox", _("Inbox")
        CONVERSATION = "conversation", _("Conversation")
        WIDGET = "widget", _("Offline message")
        API = "api", _("API")
        ADMIN = "admin", _("Back office")

    number = models.PositiveIntegerField(_("number"), unique=True, editable=False)
    subject = models.CharField(_("subject"), max_length=200)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.NEW
    )
    priority = models.CharField(
        _("priority"), max_length=16, choices=Priority.choices, default=Priority.NORMAL
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    requester_visitor = models.ForeignKey(
        "kefu.Visitor",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("requester (visitor)"),
    )
    requester_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="requested_tickets",
        verbose_name=_("requester (staff)"),
    )
    requester_email = models.EmailField(_("requester e-mail"), blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tickets",
        verbose_name=_("assignee"),
    )
    workgroup = models.ForeignKey(
        "kefu.Workgroup",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("workgroup"),
    )
    category = models.ForeignKey(
        Category,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("category"),
    )
    tags = models.JSONField(_("tags"), default=list, blank=True)
    watchers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="watched_tickets",
        verbose_name=_("watchers"),
    )
    due_at = models.DateTimeField(_("due date"), null=True, blank=True)
    conversation = models.ForeignKey(
        "im.Conversation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("conversation"),
    )
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_tickets",
        verbose_name=_("merged into"),
    )
    sla_policy = models.ForeignKey(
        SlaPolicy,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tickets",
        verbose_name=_("SLA policy"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    first_responded_at = models.DateTimeField(_("first response at"), null=True, blank=True)
    solved_at = models.DateTimeField(_("solved at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requester_visitor__isnull=True) | Q(requester_user__isnull=True),
                name="tickets_one_requester",
            )
        ]
        indexes = [
            models.Index(fields=["status", "priority"], name="tickets_status_priority"),
            models.Index(fields=["assignee", "status"], name="tickets_assignee_status"),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.subject}"

    @property
    def requester_name(self) -> str:
        if self.requester_visitor_id:
            return self.requester_visitor.name
        if self.requester_user_id:
            return self.requester_user.name
        return self.requester_email


class TicketCounter(models.Model):
    """The tenant's last ticket number (one row; locked to take the next number)."""

    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return str(self.last)


class Comment(models.Model):
    """A public reply (reaches the requester) or an internal note (staff only) on a ticket.

    Author: a staff member (``author_user``), the requester visitor (``author_visitor``), or the
    system (neither: e.g. "merged from #12")."""

    ticket = models.ForeignKey(
        Ticket, on_delete=models.CASCADE, related_name="comments", verbose_name=_("ticket")
    )
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author (staff)"),
    )
    author_visitor = models.ForeignKey(
        "kefu.Visitor",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author (visitor)"),
    )
    public = models.BooleanField(_("public reply"), default=True)
    body = models.TextField(_("text"))
    mentions = models.JSONField(_("mentions"), default=list, blank=True)
    attachments = models.ManyToManyField(
        "im.Attachment", blank=True, related_name="+", verbose_name=_("attachments")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    emailed_at = models.DateTimeField(
        _("e-mailed at"),
        null=True,
        blank=True,
        help_text=_("When this public reply was e-mailed to the requester."),
    )

    class Meta:
        verbose_name = _("comment")
        verbose_name_plural = _("comments")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.ticket} · {self.body[:40]}"

    @property
    def author_name(self) -> str:
        if self.author_user_id:
            return self.author_user.name
        if self.author_visitor_id:
            return self.author_visitor.name
        return ""


class SlaClock(models.Model):
    """One SLA target of one ticket as it runs.

    ``elapsed_s``: business seconds counted before the current run; ``running_since``: start of
    the current run (null while paused or stopped). ``due_at``/``warn_at`` are computed when a run
    starts, so the scanner needs no calendar. ``met_at``: reached in time or not; ``breached_at``:
    the due instant once the scanner saw it pass unmet. ``warned_at``, ``breach_notified_at`` and
    ``escalation_level`` (0 none, 1 lead, 2 supervisor) make each notification happen once.
    """

    class Kind(models.TextChoices):
        FIRST_RESPONSE = "first_response", _("First response")
        NEXT_RESPONSE = "next_response", _("Next response")
        RESOLUTION = "resolution", _("Resolution")

    ticket = models.ForeignKey(
        Ticket, on_delete=models.CASCADE, related_name="clocks", verbose_name=_("ticket")
    )
    kind = models.CharField(_("target"), max_length=16, choices=Kind.choices)
    target_s = models.PositiveIntegerField(_("target (s)"))
    elapsed_s = models.FloatField(_("elapsed business time (s)"), default=0)
    started_at = models.DateTimeField(_("started at"))
    running_since = models.DateTimeField(_("running since"), null=True, blank=True)
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    warn_at = models.DateTimeField(_("warn at"), null=True, blank=True)
    met_at = models.DateTimeField(_("met at"), null=True, blank=True)
    breached_at = models.DateTimeField(_("breached at"), null=True, blank=True)
    warned_at = models.DateTimeField(_("warned at"), null=True, blank=True)
    breach_notified_at = models.DateTimeField(_("breach notified at"), null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(_("escalation level"), default=0)
    next_escalation_at = models.DateTimeField(_("next escalation at"), null=True, blank=True)
    cancelled = models.BooleanField(_("cancelled"), default=False)

    class Meta:
        verbose_name = _("SLA clock")
        verbose_name_plural = _("SLA clocks")
        indexes = [
            # the scanner's three questions, each on a small partial index
            models.Index(
                fields=["warn_at"],
                name="tickets_clock_warn_due",
                condition=Q(warned_at__isnull=True, met_at__isnull=True, cancelled=False)
                & Q(warn_at__isnull=False),
            ),
            models.Index(
                fields=["due_at"],
                name="tickets_clock_breach_due",
                condition=Q(breach_notified_at__isnull=True, met_at__isnull=True, cancelled=False)
                & Q(due_at__isnull=False),
            ),
            models.Index(
                fields=["breached_at"],
                name="tickets_clock_breach_found",
                condition=Q(breach_notified_at__isnull=True, met_at__isnull=True, cancelled=False)
                & Q(breached_at__isnull=False),
            ),
            models.Index(
                fields=["next_escalation_at"],
                name="tickets_clock_escalation_due",
                condition=Q(next_escalation_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket} · {self.get_kind_display()}"

    @property
    def paused(self) -> bool:
        return self.met_at is None and not self.cancelled and self.running_since is None


class Notification(models.Model):
    """Something a staff member must know about (SLA warning/breach/escalation, assignment,
    @mention, reply on a watched ticket). Shown in the inbox; pushed live when it is created."""

    class Kind(models.TextChoices):
        SLA_WARNING = "sla_warning", _("SLA warning")
        SLA_BREACH = "sla_breach", _("SLA breach")
        SLA_ESCALATION = "sla_escalation", _("SLA escalation")
        ASSIGNED = "assigned", _("Assigned to you")
        MENTION = "mention", _("Mentioned you")
        REPLY = "reply", _("New reply")

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        verbose_name=_("recipient"),
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    ticket = models.ForeignKey(
        Ticket,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
        verbose_name=_("ticket"),
    )
    clock = models.ForeignKey(
        SlaClock,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
        verbose_name=_("SLA clock"),
    )
    text = models.CharField(_("text"), max_length=500)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="tickets_notif_unread")]

    def __str__(self) -> str:
        return self.text


__all__ = [
    "Category",
    "Comment",
    "Notification",
    "Priority",
    "SlaClock",
    "SlaPolicy",
    "SlaTarget",
    "Ticket",
    "TicketCounter",
]
