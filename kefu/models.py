"""Customer-service tables. Messages live in ``im``; a Session points at its Conversation."""

import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from im.models import Conversation
from kefu.blocking import parse_network
from weiyu.fields import EncryptedTextField


def new_public_key() -> str:
    """A random, URL-safe channel key (the ``data-channel`` of the widget snippet)."""
    return secrets.token_urlsafe(16)


class Skill(models.Model):
    """Something an agent knows (a product, a language…). Routing rules and department choices
    can ask for one; the ``skill`` strategy then offers the conversation to agents who have it."""

    name = models.CharField(_("name"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("skill")
        verbose_name_plural = _("skills")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Workgroup(models.Model):
    """A team of agents that shares a waiting queue (KF-6, KF-7).

    Routing strategies (:mod:`kefu.services.routing`) among agents who are available (online
    with an inbox open, see :class:`AgentState`), active and under their cap: ``round_robin`` — the next agent after the last one assigned (by user
    id, ``last_assigned_user_id`` is the cursor); ``least_busy`` — fewest open conversations,
    then the lowest share of their cap, then the longest since their last assignment; ``skill``
    — agents with the conversation's skill (all, when it asks for none or nobody has it), least
    busy first; ``sticky`` — a returning visitor's previous agent when available, else least
    busy. Except with round robin (whose cursor is this row, moved under its lock), a visitor
    arriving while nobody waits is served in the transaction of their first message, without
    the workgroup's lock (``kefu.services.routing.session_claim``).

    Queue limits: past ``max_queue_length`` waiting visitors, or ``max_wait_s`` seconds of
    waiting (0: no limit), ``overflow_action`` applies: ``wait`` (nothing), ``overflow`` (move to
    ``overflow_workgroup``), ``leave_message`` (the conversation ends with an offer to leave a
    message, which becomes a ticket) or ``robot`` (the robot takes over).

    ``requeue_on_leave`` (on by default): when an agent's last inbox has been gone for the grace
    period, their open conversations of the workgroup go back to its queue (the visitor is
    told); off, they stay with the agent until they come back.
    """

    class Strategy(models.TextChoices):
        ROUND_ROBIN = "round_robin", _("Round robin")
        LEAST_BUSY = "least_busy", _("Least busy (fewest open conversations)")
        SKILL = "skill", _("Skill match")
        STICKY = "sticky", _("Sticky (returning visitors get their last agent)")

    class OverflowAction(models.TextChoices):
        WAIT = "wait", _("Keep waiting")
        OVERFLOW = "overflow", _("Move to the overflow workgroup")
        LEAVE_MESSAGE = "leave_message", _("Offer to leave a message")
        ROBOT = "robot", _("Hand to the robot")

    name = models.CharField(_("name"), max_length=100)
    strategy = models.CharField(
        _("routing strategy"), max_length=32, choices=Strategy.choices, default=Strategy.ROUND_ROBIN
    )
    agents = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="workgroups", verbose_name=_("agents")
    )
    lead = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="led_workgroups",
        verbose_name=_("lead"),
        help_text=_("Gets the workgroup's SLA escalations."),
    )
    department = models.ForeignKey(
        "org.Department",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="workgroups",
        verbose_name=_("department"),
        help_text=_(
            "The heads of this department and of the departments above it supervise the workgroup."
        ),
    )
    calendar = models.ForeignKey(
        "org.BusinessCalendar",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("work hours"),
        help_text=_(
            "Outside these hours (in their time zone, holidays included) the widget offers to "
            "leave a message. Empty: always open."
        ),
    )
    allow_pick = models.BooleanField(
        _("agents may pick from the queue"),
        default=True,
        help_text=_("Agents see the waiting visitors and can take one themselves."),
    )
    max_queue_length = models.PositiveIntegerField(
        _("queue limit"), default=0, help_text=_("Visitors waiting at most (0: no limit).")
    )
    max_wait_s = models.PositiveIntegerField(
        _("longest wait (seconds)"), default=0, help_text=_("0: no limit.")
    )
    overflow_action = models.CharField(
        _("past the limits"),
        max_length=16,
        choices=OverflowAction.choices,
        default=OverflowAction.WAIT,
    )
    overflow_workgroup = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("overflow workgroup"),
    )
    remind_after_s = models.PositiveIntegerField(
        _("remind the agent after (seconds)"),
        default=0,
        help_text=_("A visitor waiting this long for an answer: the agent is reminded (0: never)."),
    )
    reassign_after_s = models.PositiveIntegerField(
        _("re-assign after (seconds)"),
        default=0,
        help_text=_("A visitor waiting this long for an answer goes to another agent (0: never)."),
    )
    idle_close_after_min = models.PositiveIntegerField(
        _("close idle conversations after (minutes)"),
        default=0,
        help_text=_("No message from either side for this long ends the conversation (0: never)."),
    )
    idle_close_message = models.CharField(
        _("closing message"),
        max_length=500,
        blank=True,
        help_text=_("Posted when an idle conversation is closed. Empty: a standard line."),
    )
    requeue_on_leave = models.BooleanField(
        _("return conversations to the queue when the agent leaves"),
        default=True,
        help_text=_(
            "When an agent's last inbox has been closed for the grace period, their open "
            "conversations of this workgroup go back to its queue for a colleague."
        ),
    )
    knowledge_bases = models.ManyToManyField(
        "kbase.KnowledgeBase",
        blank=True,
        related_name="restricted_to",
        verbose_name=_("restricted knowledge bases"),
        help_text=_(
            "Knowledge bases only this workgroup's people see (and the robot answers from only "
            "in its channels). A knowledge base no workgroup lists is open to every agent."
        ),
    )
    last_assigned_user_id = models.BigIntegerField(
        _("last assigned agent id"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("workgroup")
        verbose_name_plural = _("workgroups")
        # granted per workgroup with django-guardian (kefu.supervision)
        permissions = [("supervise_workgroup", _("Can supervise the workgroup"))]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.overflow_action == self.OverflowAction.OVERFLOW and (
            self.overflow_workgroup_id is None or self.overflow_workgroup_id == self.pk
        ):
            raise ValidationError(
                {"overflow_workgroup": _("Choose another workgroup to overflow to.")}
            )


PRECHAT_FIELDS = ("name", "email", "phone")


class Channel(models.Model):
    """Where customers reach the tenant: the website widget (what the ``<script
    data-channel="…">`` snippet connects to), a Telegram bot or a WeChat Official Account
    (``kind``; the vendor's credentials and health are in :class:`ChannelAccount`, the adapters
    in :mod:`kefu.channels`). Every kind is routed, served and counted the same way.

    Service modes (KF-1): ``agent`` — visitors go straight to the workgroup's queue; ``robot`` —
    the robot answers from the knowledge bases and never hands over; ``workgroup`` — the robot
    answers first and hands over to the workgroup when the visitor asks for a person (a button,
    or a phrase from ``handover_phrases``) or after ``handover_after_misses`` questions in a row
    it could not answer with at least ``min_confidence`` (:mod:`kefu.robot.answers`).
    """

    class Kind(models.TextChoices):
        WIDGET = "widget", _("Website widget")
        TELEGRAM = "telegram", _("Telegram bot")
        WECHAT_MP = "wechat_mp", _("WeChat Official Account")
        API = "api", _("API (your own system)")
        EMAIL = "email", _("E-mail")

    class Mode(models.TextChoices):
        AGENT = "agent", _("Agent (human only)")
        ROBOT = "robot", _("Robot only")
        WORKGROUP = "workgroup", _("Robot first, then agents")

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(
        _("kind"), max_length=16, choices=Kind.choices, default=Kind.WIDGET, db_default="widget"
    )
    public_key = models.CharField(
        _("public key"), max_length=64, unique=True, default=new_public_key
    )
    mode = models.CharField(
        _("service mode"), max_length=16, choices=Mode.choices, default=Mode.AGENT
    )
    workgroup = models.ForeignKey(
        Workgroup, on_delete=models.PROTECT, related_name="channels", verbose_name=_("workgroup")
    )
    title = models.CharField(_("widget title"), max_length=100, blank=True)
    welcome_text = models.CharField(_("welcome text"), max_length=500, blank=True)
    color = models.CharField(
        _("colour"), max_length=7, default="#1f6feb", help_text=_("Hex colour, e.g. #1f6feb.")
    )
    robot_name = models.CharField(
        _("robot name"), max_length=100, blank=True, help_text=_("Empty: “Assistant”.")
    )
    robot_greeting = models.CharField(
        _("robot greeting"),
        max_length=500,
        blank=True,
        help_text=_("The robot's first message in a new conversation. Empty: a standard greeting."),
    )
    knowledge_bases = models.ManyToManyField(
        "kbase.KnowledgeBase",
        blank=True,
        related_name="channels",
        verbose_name=_("robot knowledge bases"),
        help_text=_("Public knowledge bases the robot answers from. None chosen: all public ones."),
    )
    min_confidence = models.FloatField(
        _("minimum confidence"),
        default=0.5,
        help_text=_("0-1. A best match below this counts as not answered."),
    )
    handover_after_misses = models.PositiveSmallIntegerField(
        _("hand over after"),
        default=2,
        help_text=_("Questions in a row the robot could not answer (robot-first mode; 0: never)."),
    )
    handover_phrases = models.CharField(
        _("hand-over phrases"),
        max_length=500,
        default="人工, 转人工, 人工客服, 真人, agent, human, operator, real person",
        help_text=_("Comma-separated. A short message containing one asks for a person."),
    )
    prechat_fields = models.CharField(
        _("pre-chat form"),
        max_length=64,
        blank=True,
        help_text=_(
            "Comma-separated: name, email, phone. Asked (all required) before the first "
            "message. Empty: no form."
        ),
    )
    csat_enabled = models.BooleanField(
        _("satisfaction survey"),
        default=True,
        help_text=_(
            "Ask the visitor to rate the conversation (1-5 stars and a comment) when it ends."
        ),
    )
    departments = models.ManyToManyField(
        Workgroup,
        blank=True,
        related_name="+",
        verbose_name=_("departments offered"),
        help_text=_("Visitors choose one of these in the widget before their first message."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    #: identity verification (docs/protocol.md, "Known customers"): the HMAC-SHA256 key of
    #: ``Weiyu.identify``; generated in the back office, shown once
    identity_secret = EncryptedTextField(_("identity verification secret"), blank=True)
    identity_required = models.BooleanField(
        _("identity verification"),
        default=False,
        help_text=_(
            "Customers identified with Weiyu.identify must come with the HMAC-SHA256 of their id "
            "under this channel's secret; an identity without a valid one is refused. Only "
            "verified identities share one contact and history across browsers."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")

    def __str__(self) -> str:
        return self.name

    @property
    def prechat(self) -> list[str]:
        """The pre-chat form's fields, in order (of ``name``, ``email``, ``phone``)."""
        wanted = {f.strip().lower() for f in self.prechat_fields.split(",")}
        return [f for f in PRECHAT_FIELDS if f in wanted]

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        unknown = {f.strip().lower() for f in self.prechat_fields.split(",") if f.strip()} - set(
            PRECHAT_FIELDS
        )
        if unknown:
            raise ValidationError({"prechat_fields": _("Use only: name, email, phone.")})


class RoutingRule(models.Model):
    """Sends a channel's new conversations to a workgroup (and optionally asks for a skill) when
    the visitor matches (KF-6). Rules are tried in ``priority`` order; the first match wins, and
    a department the visitor chose in the widget comes before every rule."""

    class Attribute(models.TextChoices):
        PAGE_URL = "page_url", _("Page URL")
        REFERRER = "referrer", _("Referrer")
        LANGUAGE = "language", _("Language")
        TAG = "tag", _("Visitor tag")
        CONTACT_ATTRIBUTE = "contact_attribute", _("Contact attribute")

    class Operator(models.TextChoices):
        CONTAINS = "contains", _("contains")
        EQUALS = "equals", _("equals")
        STARTS_WITH = "starts_with", _("starts with")

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="routing_rules", verbose_name=_("channel")
    )
    priority = models.PositiveSmallIntegerField(_("priority"), default=10)
    attribute = models.CharField(_("when"), max_length=24, choices=Attribute.choices)
    operator = models.CharField(
        _("operator"), max_length=16, choices=Operator.choices, default=Operator.CONTAINS
    )
    attribute_key = models.CharField(
        _("attribute"),
        max_length=64,
        blank=True,
        default="",
        help_text=_(
            "For “Contact attribute”: the key of a contact attribute defined under Custom "
            "attributes (e.g. plan); the rule compares its value."
        ),
    )
    value = models.CharField(_("value"), max_length=500)
    workgroup = models.ForeignKey(
        Workgroup, on_delete=models.CASCADE, related_name="+", verbose_name=_("send to")
    )
    skill = models.ForeignKey(
        Skill,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("ask for skill"),
    )

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        ordering = ["priority", "pk"]

    def __str__(self) -> str:
        what = self.get_attribute_display()
        if self.attribute == self.Attribute.CONTACT_ATTRIBUTE:
            what = f"{what} {self.attribute_key}"
        return f"{what} {self.get_operator_display()} {self.value}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.attribute == self.Attribute.CONTACT_ATTRIBUTE:
            known = AttributeDefinition.objects.filter(
                applies_to=AttributeDefinition.AppliesTo.CONTACT, key=self.attribute_key
            ).exists()
            if not known:
                raise ValidationError(
                    {"attribute_key": _("Choose the key of a defined contact attribute.")}
                )
        elif self.attribute_key:
            raise ValidationError(
                {"attribute_key": _("Only a “Contact attribute” rule names an attribute.")}
            )


class AttributeDefinition(models.Model):
    """A custom attribute the tenant's administrators define (issue 13) on contacts (visitors and
    known customers: ``Visitor.attributes``) or on conversations (``Session.attributes``): its
    key, the name agents read, and its kind — text, number, date, a list of allowed values, or
    true/false. Values are checked against the definition wherever they are written
    (``kefu.services.attributes``: the inbox's visitor panel, the API, ``Weiyu.identify``);
    routing rules, the inbox's filters and saved views and the API filter by them."""

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        LIST = "list", _("List")
        BOOLEAN = "boolean", _("True/false")

    class AppliesTo(models.TextChoices):
        CONTACT = "contact", _("Contacts")
        CONVERSATION = "conversation", _("Conversations")

    applies_to = models.CharField(
        _("applies to"), max_length=16, choices=AppliesTo.choices, default=AppliesTo.CONTACT
    )
    key = models.CharField(
        _("key"),
        max_length=64,
        validators=[
            RegexValidator(
                r"^[a-z][a-z0-9_]*$",
                _("Lower-case letters, digits and _, starting with a letter (e.g. plan)."),
            )
        ],
        help_text=_("What the API and Weiyu.identify call it, e.g. plan or order_count."),
    )
    name = models.CharField(_("name"), max_length=100, help_text=_("What agents read."))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.TEXT)
    options = models.TextField(
        _("allowed values"),
        blank=True,
        help_text=_("For a list: one allowed value per line."),
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=10)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("custom attribute")
        verbose_name_plural = _("custom attributes")
        ordering = ["applies_to", "position", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["applies_to", "key"], name="kefu_attributedefinition_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    @property
    def choices(self) -> list[str]:
        """The allowed values of a list attribute, in order (empty lines skipped)."""
        return [line.strip() for line in self.options.splitlines() if line.strip()]

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.kind == self.Kind.LIST and not self.choices:
            raise ValidationError({"options": _("A list needs at least one allowed value.")})
        if len(self.choices) > 100 or any(len(c) > 100 for c in self.choices):
            raise ValidationError(
                {"options": _("At most 100 values of at most 100 characters each.")}
            )


class VisitorTag(models.Model):
    """A label on visitors (VIP, wholesale…), set by agents; routing rules can use it."""

    name = models.CharField(_("name"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("visitor tag")
        verbose_name_plural = _("visitor tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Visitor(models.Model):
    """A person on the tenant's website. Identified in the browser by a signed token."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="visitors", verbose_name=_("channel")
    )
    name = models.CharField(_("name"), max_length=100)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    name_given = models.BooleanField(_("name given by the visitor"), default=False, editable=False)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=500, blank=True)
    language = models.CharField(_("language"), max_length=16, blank=True)
    referrer = models.CharField(_("referrer"), max_length=2000, blank=True)
    page_url = models.CharField(_("page"), max_length=2000, blank=True)
    tags = models.ManyToManyField(
        VisitorTag, blank=True, related_name="visitors", verbose_name=_("tags")
    )
    external_id = models.CharField(
        _("customer id"),
        max_length=128,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text=_(
            "The customer's id: the company's own on a website channel (Weiyu.identify), the "
            "Telegram chat id or WeChat OpenID on a messaging channel; empty for anonymous "
            "visitors. One visitor (contact) per id and channel."
        ),
    )
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    created_at = models.DateTimeField(_("first seen"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen"), auto_now=True)
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("The IANA time zone of the visitor's browser (e.g. Asia/Shanghai)."),
    )
    erased_at = models.DateTimeField(
        _("personal data erased at"), null=True, blank=True, editable=False
    )
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="merged_from",
        verbose_name=_("merged into"),
        help_text=_(
            "The contact this one was merged into: its conversations, notes, tags and "
            "attributes are there now (kefu.services.contacts)."
        ),
    )

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"],
                condition=~Q(external_id=""),
                name="kefu_visitor_external_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def member_key(self) -> str:
        """The visitor's key in conversations (``v:<id>``)."""
        return f"v:{self.pk}"


class AgentState(models.Model):
    """An agent's service state (KF-3).

    ``status`` is the status the agent chose last (kept while they are away from the inbox, so
    opening it again restores it; online for an agent who never chose); ``connected`` says whether an inbox socket of theirs is open
    (set on the first one, cleared by :func:`kefu.services.agents.offline_scan` once the last one
    has been gone for the grace period). The agent is *available* — assigned new conversations —
    only while both hold: ``status`` online and ``connected``; :attr:`shown_status` is what
    colleagues and supervisors see (offline while not connected).

    ``open_count`` is the number of open customer (visitor) sessions assigned to the agent —
    never team chats — kept under a row lock by the routing service; it never exceeds
    ``max_concurrent``.
    """

    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        BUSY = "busy", _("Busy")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_state",
        verbose_name=_("agent"),
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=Status.choices,
        default=Status.ONLINE,
        help_text=_("The status the agent chose; it applies while an inbox of theirs is open."),
    )
    connected = models.BooleanField(
        _("inbox open"),
        default=False,
        editable=False,
        help_text=_("An inbox of the agent is connected (or was, less than the grace period ago)."),
    )
    max_concurrent = models.PositiveSmallIntegerField(_("concurrent chat cap"), default=5)
    open_count = models.PositiveSmallIntegerField(
        _("open conversations"), default=0, editable=False
    )
    status_changed_at = models.DateTimeField(_("status changed at"), auto_now_add=True)
    last_assigned_at = models.DateTimeField(
        _("last assigned at"), null=True, blank=True, editable=False
    )
    skills = models.ManyToManyField(
        Skill, blank=True, related_name="agents", verbose_name=_("skills")
    )

    class Meta:
        verbose_name = _("agent service state")
        verbose_name_plural = _("agent service states")

    def __str__(self) -> str:
        return f"{self.user} ({self.get_status_display()})"

    @property
    def shown_status(self) -> str:
        """The status others see: the chosen one while an inbox is connected, else offline."""
        return self.status if self.connected else self.Status.OFFLINE

    @property
    def available(self) -> bool:
        """Whether new conversations may be assigned to the agent (online and connected)."""
        return self.connected and self.status == self.Status.ONLINE


class Label(models.Model):
    """A coloured label the tenant defines for conversations (KF-13: "billing", "bug", "VIP").
    Agents set and unset labels in the inbox, one conversation or many at once; label rules
    (:class:`LabelRule`) set them automatically; the inbox views, the API and the statistics
    filter and count by them."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    color = models.CharField(
        _("colour"),
        max_length=7,
        default="#6e7781",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Use a hex colour like #1f6feb."))],
        help_text=_("Hex colour, e.g. #1f6feb."),
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("label")
        verbose_name_plural = _("labels")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Session(models.Model):
    """One visitor conversation with the service: ``queued`` → ``open`` → ``closed``, or, on a
    robot channel, ``robot`` first (→ ``queued`` on hand-over).

    ``queued_at`` orders the waiting queue; ``first_response_at`` is the first agent message.
    ``robot_misses``: questions in a row the robot could not answer.
    """

    class Status(models.TextChoices):
        ROBOT = "robot", _("With the robot")
        QUEUED = "queued", _("Queued")
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    conversation = models.OneToOneField(
        Conversation,
        on_delete=models.CASCADE,
        related_name="kefu_session",
        verbose_name=_("conversation"),
    )
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="sessions", verbose_name=_("visitor")
    )
    #: e-mail: the thread (the hash of its first Message-ID); a contact may have one live
    #: session per thread. Empty for every other kind: one live session per visitor.
    thread_key = models.CharField(
        _("thread"), max_length=64, blank=True, default="", db_default="", editable=False
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="sessions", verbose_name=_("channel")
    )
    workgroup = models.ForeignKey(
        Workgroup, on_delete=models.PROTECT, related_name="sessions", verbose_name=_("workgroup")
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="kefu_sessions",
        verbose_name=_("agent"),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    first_response_at = models.DateTimeField(_("first response at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.CharField(_("closed by"), max_length=16, blank=True)
    skill = models.ForeignKey(
        Skill,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("skill asked for"),
    )
    overflowed_at = models.DateTimeField(_("overflowed at"), null=True, blank=True)
    last_visitor_at = models.DateTimeField(_("visitor last wrote"), null=True, blank=True)
    last_agent_at = models.DateTimeField(_("agent last wrote"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("agent reminded at"), null=True, blank=True)
    reassigned_from = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("re-assigned from"),
    )
    csat_score = models.PositiveSmallIntegerField(
        _("satisfaction"), null=True, blank=True, help_text=_("1-5 stars, from the visitor.")
    )
    csat_comment = models.CharField(_("satisfaction comment"), max_length=1000, blank=True)
    csat_at = models.DateTimeField(_("rated at"), null=True, blank=True)
    transcript_sent_at = models.DateTimeField(_("transcript e-mailed at"), null=True, blank=True)
    robot_misses = models.PositiveSmallIntegerField(_("robot misses"), default=0, editable=False)
    handed_over_at = models.DateTimeField(_("handed over at"), null=True, blank=True)
    handover_reason = models.CharField(_("hand-over reason"), max_length=16, blank=True)
    labels = models.ManyToManyField(
        Label, blank=True, related_name="sessions", verbose_name=_("labels")
    )
    snoozed_at = models.DateTimeField(
        _("snoozed at"),
        null=True,
        blank=True,
        help_text=_("Set while the conversation is snoozed (kefu.services.snooze)."),
    )
    snoozed_until = models.DateTimeField(
        _("snoozed until"),
        null=True,
        blank=True,
        help_text=_("When a snoozed conversation comes back; empty: when the customer replies."),
    )
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("snoozed by"),
    )
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="merged_from",
        verbose_name=_("merged into"),
        help_text=_("The conversation of the same customer this one was merged into."),
    )
    anonymised_at = models.DateTimeField(_("anonymised at"), null=True, blank=True, editable=False)
    attributes = models.JSONField(
        _("attributes"),
        default=dict,
        blank=True,
        help_text=_("Custom conversation attributes (Customer service → Custom attributes)."),
    )

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        indexes = [
            models.Index(fields=["workgroup", "status", "queued_at"], name="kefu_session_queue"),
            models.Index(fields=["visitor", "status"], name="kefu_session_visitor"),
            # the beat's wake-up scan reads only snoozed sessions with a time
            models.Index(
                fields=["snoozed_until"],
                condition=Q(snoozed_until__isnull=False),
                name="kefu_session_snoozed",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["visitor", "thread_key"],
                condition=~Q(status="closed"),
                name="kefu_session_one_live_per_thread",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.visitor} · {self.get_status_display()}"


class CannedResponse(models.Model):
    """A ready answer an agent inserts by typing ``/shortcut`` in the inbox (KF-9). Shared by the
    whole team (``owner`` empty, kept by admins in the back office) or personal to one agent; a
    shared one with ``workgroups`` is offered only to those workgroups' people
    (:func:`kefu.canned.visible_to`)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="canned_responses",
        verbose_name=_("owner"),
        help_text=_("Empty: shared with every agent."),
    )
    shortcut = models.SlugField(
        _("shortcut"), max_length=32, allow_unicode=True, help_text=_("Typed after / in the inbox.")
    )
    category = models.CharField(_("category"), max_length=64, blank=True)
    title = models.CharField(_("title"), max_length=100)
    content = models.TextField(_("text"), max_length=5000)
    workgroups = models.ManyToManyField(
        Workgroup,
        blank=True,
        related_name="canned_responses",
        verbose_name=_("restricted to workgroups"),
        help_text=_(
            "A shared response listed here is offered only to these workgroups' people. "
            "None chosen: to everyone."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("canned response")
        verbose_name_plural = _("canned responses")
        ordering = ["category", "shortcut"]
        constraints = [
            models.UniqueConstraint(
                fields=["shortcut"],
                condition=models.Q(owner__isnull=True),
                name="kefu_canned_shared_shortcut",
            ),
            models.UniqueConstraint(
                fields=["owner", "shortcut"],
                condition=models.Q(owner__isnull=False),
                name="kefu_canned_personal_shortcut",
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut} {self.title}"


class SensitiveWord(models.Model):
    """A word visitors and agents may not use in customer conversations (KF-10): ``mask`` stores
    the message with the word starred out, ``block`` refuses it with an error the sender sees."""

    class Action(models.TextChoices):
        MASK = "mask", _("Mask with *")
        BLOCK = "block", _("Refuse the message")

    word = models.CharField(_("word"), max_length=64, unique=True)
    action = models.CharField(
        _("action"), max_length=8, choices=Action.choices, default=Action.MASK
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("sensitive word")
        verbose_name_plural = _("sensitive words")
        ordering = ["word"]

    def __str__(self) -> str:
        return self.word


class BlockedVisitor(models.Model):
    """A block on a visitor, or on an IP address / network (CIDR), until ``expires_at`` (empty:
    for good). Blocked visitors cannot start a chat or send (KF-11)."""

    visitor = models.ForeignKey(
        Visitor,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="blocks",
        verbose_name=_("visitor"),
    )
    network = models.CharField(
        _("IP address or network"),
        max_length=64,
        blank=True,
        help_text=_("e.g. 203.0.113.7 or 203.0.113.0/24"),
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    expires_at = models.DateTimeField(_("until"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("blocked by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("blocked visitor")
        verbose_name_plural = _("blocked visitors")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(visitor__isnull=False) | ~models.Q(network=""),
                name="kefu_block_has_target",
            )
        ]

    def __str__(self) -> str:
        return str(self.visitor or self.network)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.network and parse_network(self.network) is None:
            raise ValidationError(
                {"network": _("Enter an IP address or a network like 10.0.0.0/8.")}
            )
        if not self.network and not self.visitor_id:
            raise ValidationError(_("Choose a visitor or give an IP address or network."))


class Transfer(models.Model):
    """An agent hands a conversation to a colleague, who accepts or declines (KF-8). A transfer
    to a workgroup puts the conversation back in that workgroup's queue at once. Pending
    transfers expire after ``TRANSFER_TTL_S`` (:mod:`kefu.services.transfers`)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for an answer")
        ACCEPTED = "accepted", _("Accepted")
        DECLINED = "declined", _("Declined")
        CANCELLED = "cancelled", _("Cancelled")
        EXPIRED = "expired", _("Expired")

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="transfers", verbose_name=_("session")
    )
    from_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("from"),
    )
    to_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("to agent"),
    )
    to_workgroup = models.ForeignKey(
        Workgroup,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("to workgroup"),
    )
    note = models.CharField(_("note"), max_length=500, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    responded_at = models.DateTimeField(_("answered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("transfer")
        verbose_name_plural = _("transfers")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["session"],
                condition=Q(status="pending"),
                name="kefu_transfer_one_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.from_agent} → {self.to_agent or self.to_workgroup}"


class AutoReply(models.Model):
    """A keyword auto-reply (KF-12): a visitor message containing (or equal to) ``keyword`` gets
    ``reply`` at once, from the channel's robot name. Empty ``channel``: every channel."""

    class Match(models.TextChoices):
        CONTAINS = "contains", _("contains")
        EQUALS = "equals", _("equals")

    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="auto_replies",
        verbose_name=_("channel"),
    )
    keyword = models.CharField(_("keyword"), max_length=100)
    match = models.CharField(
        _("match"), max_length=16, choices=Match.choices, default=Match.CONTAINS
    )
    reply = models.TextField(_("reply"), max_length=2000)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("keyword auto-reply")
        verbose_name_plural = _("keyword auto-replies")
        ordering = ["keyword"]

    def __str__(self) -> str:
        return self.keyword


class VisitorPageView(models.Model):
    """A page of the tenant's website a visitor opened with the widget on it (the trail the
    visitor panel shows). Recorded when the widget starts on a page, at most one row per page
    and minute."""

    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="page_views", verbose_name=_("visitor")
    )
    url = models.CharField(_("page"), max_length=2000)
    title = models.CharField(_("title"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("seen at"), auto_now_add=True)

    class Meta:
        verbose_name = _("page view")
        verbose_name_plural = _("page views")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["visitor", "-created_at"], name="kefu_pageview_visitor")]

    def __str__(self) -> str:
        return self.url


class VisitorNote(models.Model):
    """A note agents keep about a visitor (never shown to the visitor)."""

    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="notes", verbose_name=_("visitor")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("author"),
    )
    text = models.TextField(_("note"), max_length=2000)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("visitor note")
        verbose_name_plural = _("visitor notes")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text[:60]


class DailyStat(models.Model):
    """Customer-service figures of one local day (``settings.TIME_ZONE``), workgroup and agent
    (KF-14), written by the Celery roll-up (:mod:`kefu.stats`) from the sessions, messages and
    transfers. Times are kept as sums (seconds) and counts, so any range or grouping averages
    correctly. A session counts on the day it started, for its workgroup and its last agent
    (none: it never reached one)."""

    day = models.DateField(_("day"))
    workgroup = models.ForeignKey(
        Workgroup, on_delete=models.CASCADE, related_name="+", verbose_name=_("workgroup")
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("agent"),
    )
    conversations = models.PositiveIntegerField(_("conversations"), default=0)
    visitor_messages = models.PositiveIntegerField(_("visitor messages"), default=0)
    agent_messages = models.PositiveIntegerField(_("agent messages"), default=0)
    first_response_count = models.PositiveIntegerField(default=0)
    first_response_total_s = models.FloatField(default=0)
    response_count = models.PositiveIntegerField(default=0)
    response_total_s = models.FloatField(default=0)
    resolution_count = models.PositiveIntegerField(default=0)
    resolution_total_s = models.FloatField(default=0)
    queue_wait_count = models.PositiveIntegerField(default=0)
    queue_wait_total_s = models.FloatField(default=0)
    abandoned = models.PositiveIntegerField(_("abandoned in the queue"), default=0)
    transfers = models.PositiveIntegerField(_("transfers"), default=0)
    csat_count = models.PositiveIntegerField(default=0)
    csat_total = models.PositiveIntegerField(default=0)
    csat_1 = models.PositiveIntegerField(default=0)
    csat_2 = models.PositiveIntegerField(default=0)
    csat_3 = models.PositiveIntegerField(default=0)
    csat_4 = models.PositiveIntegerField(default=0)
    csat_5 = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(_("computed at"), auto_now=True)

    class Meta:
        verbose_name = _("daily statistics")
        verbose_name_plural = _("daily statistics")
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "workgroup", "agent"],
                name="kefu_dailystat_unique",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.workgroup_id} {self.agent_id}"


class LabelRule(models.Model):
    """Adds a label to a visitor conversation by itself (KF-12, KF-13): when a visitor's message
    contains ``keyword`` (case-insensitive; empty: any message) in a conversation of ``channel``
    (empty: every channel), ``label`` is added. Tried on every text the visitor writes, after it
    is stored (:mod:`kefu.services.labels`); a label already there stays as it is."""

    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("channel"),
        help_text=_("Empty: every channel."),
    )
    keyword = models.CharField(
        _("message contains"),
        max_length=100,
        blank=True,
        help_text=_("Empty: any message."),
    )
    label = models.ForeignKey(
        Label, on_delete=models.CASCADE, related_name="rules", verbose_name=_("add label")
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("label rule")
        verbose_name_plural = _("label rules")
        ordering = ["label__name", "pk"]

    def __str__(self) -> str:
        return f"{self.keyword or '*'} → {self.label}"


class SavedView(models.Model):
    """A view of the inbox's conversation list that someone saved: a combination of filters
    (``{"view", "workgroup", "label", "channel", "sort"}``, see :mod:`kefu.inbox_views`) under a
    name. ``owner`` empty: shared by an administrator with every agent."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="saved_views",
        verbose_name=_("owner"),
        help_text=_("Empty: shared with every agent."),
    )
    name = models.CharField(_("name"), max_length=60)
    filters = models.JSONField(_("filters"), default=dict)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("saved view")
        verbose_name_plural = _("saved views")
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class MailSecurity(models.TextChoices):
    """How an e-mail connection is protected: TLS from the first byte (IMAPS 993, SMTPS 465),
    STARTTLS (IMAP 143, submission 587), or none (a server on the same host only)."""

    TLS = "tls", _("TLS (993 / 465)")
    STARTTLS = "starttls", _("STARTTLS (143 / 587)")
    NONE = "none", _("None (unencrypted)")


class ChannelAccount(models.Model):
    """A messaging channel's account at its vendor (a :class:`Channel` of kind ``telegram``,
    ``wechat_mp`` or ``api``) and its health (docs/channels.md). For the API channel the tenant's
    own system is the vendor: ``verify_token`` is the inbound key, ``secret`` the key that signs
    the callbacks, ``api_base_url`` the callback URL.

    Secrets are encrypted at rest (:class:`weiyu.fields.EncryptedTextField`). ``api_base_url``
    is the vendor's API (empty: the public one, ``https://api.telegram.org`` or
    ``https://api.weixin.qq.com``); a tenant-chosen value is reached only through
    :mod:`weiyu.outbound`.
    """

    channel = models.OneToOneField(
        Channel, on_delete=models.CASCADE, related_name="account", verbose_name=_("channel")
    )
    app_id = models.CharField(
        _("app id"),
        max_length=64,
        blank=True,
        help_text=_("WeChat: the AppID (公众号 AppID). Telegram: the bot's user name."),
    )
    secret = EncryptedTextField(
        _("secret"),
        blank=True,
        help_text=_("Telegram: the bot token from @BotFather. WeChat: the AppSecret."),
    )
    verify_token = EncryptedTextField(
        _("verification token"),
        blank=True,
        help_text=_(
            "Telegram: the secret_token the webhook is registered with (sent back in "
            "X-Telegram-Bot-Api-Secret-Token). WeChat: the Token of the server configuration."
        ),
    )
    aes_key = EncryptedTextField(
        _("EncodingAESKey"),
        blank=True,
        help_text=_("WeChat safe mode (安全模式): the 43-character EncodingAESKey. Empty: plain."),
    )
    api_base_url = models.URLField(
        _("API base URL"),
        blank=True,
        help_text=_("Empty: the vendor's public API."),
    )
    access_token = EncryptedTextField(_("access token"), blank=True, editable=False)
    # ---- e-mail (kefu.channels.email) ----
    email_address = models.EmailField(
        _("support address"),
        blank=True,
        db_index=True,
        help_text=_("E-mail: the address customers write to; replies are sent from it."),
    )
    email_name = models.CharField(
        _("sender name"), max_length=100, blank=True, help_text=_("E-mail: the From name.")
    )
    imap_host = models.CharField(_("IMAP host"), max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(_("IMAP port"), default=993)
    imap_tls = models.CharField(
        _("IMAP security"), max_length=8, choices=MailSecurity.choices, default=MailSecurity.TLS
    )
    imap_user = models.CharField(_("IMAP user"), max_length=255, blank=True)
    imap_password = EncryptedTextField(_("IMAP password"), blank=True)
    imap_folder = models.CharField(_("IMAP folder"), max_length=255, default="INBOX")
    smtp_host = models.CharField(_("SMTP host"), max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(_("SMTP port"), default=465)
    smtp_tls = models.CharField(
        _("SMTP security"), max_length=8, choices=MailSecurity.choices, default=MailSecurity.TLS
    )
    smtp_user = models.CharField(_("SMTP user"), max_length=255, blank=True)
    smtp_password = EncryptedTextField(_("SMTP password"), blank=True)
    imap_uidvalidity = models.BigIntegerField(_("IMAP UIDVALIDITY"), default=0, editable=False)
    imap_last_uid = models.BigIntegerField(_("last IMAP UID fetched"), default=0, editable=False)
    access_token_expires_at = models.DateTimeField(
        _("access token expires at"), null=True, blank=True, editable=False
    )
    poll_offset = models.BigIntegerField(
        _("long-polling offset"), default=0, editable=False, help_text=_("Telegram getUpdates.")
    )
    last_inbound_at = models.DateTimeField(_("last inbound"), null=True, blank=True, editable=False)
    last_error = models.CharField(_("last error"), max_length=500, blank=True, editable=False)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("channel account")
        verbose_name_plural = _("channel accounts")

    def __str__(self) -> str:
        return f"{self.channel} ({self.channel.get_kind_display()})"


class ChannelEvent(models.Model):
    """One inbound callback or update from a vendor, stored before it is handled so that a
    vendor's retry of the same event is recognised (``external_id`` unique per channel: the
    Telegram ``update_id``, the WeChat ``MsgId`` or ``FromUserName:CreateTime:Event``) and
    nothing accepted is lost when handling fails (it is retried)."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="events", verbose_name=_("channel")
    )
    external_id = models.CharField(_("id at the vendor"), max_length=128)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    handled_at = models.DateTimeField(_("handled at"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    #: the API channel's request behind the event (:func:`org.apikeys.request_fingerprint`), so
    #: that its ``Idempotency-Key`` sent again with another body is refused; empty otherwise
    fingerprint = models.CharField(_("request fingerprint"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("inbound event")
        verbose_name_plural = _("inbound events")
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"], name="kefu_channelevent_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.external_id}"


class EmailReference(models.Model):
    """A Message-ID of an e-mail channel's thread: every mail received and every reply sent, so
    that a mail whose ``In-Reply-To``/``References`` name one joins its conversation
    (kefu.channels.email). ``subject``: the mail's subject (replies answer the latest)."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="+", verbose_name=_("channel")
    )
    message_id = models.CharField(_("Message-ID"), max_length=255)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="+", verbose_name=_("conversation")
    )
    thread_key = models.CharField(_("thread"), max_length=64)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    inbound = models.BooleanField(_("received"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("e-mail reference")
        verbose_name_plural = _("e-mail references")
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "message_id"], name="kefu_emailreference_unique"
            )
        ]
        indexes = [models.Index(fields=["conversation", "id"], name="kefu_emailref_conv")]

    def __str__(self) -> str:
        return self.message_id


class Delivery(models.Model):
    """An agent's or the robot's message on its way to a messaging channel (one row per
    message; sent by a Celery task with retries, docs/channels.md). Its state is mirrored in the
    message's ``meta["delivery"]`` for the inbox."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Not delivered")

    message = models.OneToOneField(
        "im.Message", on_delete=models.CASCADE, related_name="delivery", verbose_name=_("message")
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("channel")
    )
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="+", verbose_name=_("visitor")
    )
    status = models.CharField(
        _("status"), max_length=8, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.CharField(_("error"), max_length=500, blank=True)
    external_id = models.CharField(_("id at the vendor"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["channel", "status", "failed_at"], name="kefu_delivery_failed")
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.status}"


class ScheduledMessage(models.Model):
    """An agent's reply written now and sent at ``send_at`` (issue 17, "Scheduled messages").

    ``pending`` → ``sent`` (the message is ``message``) by the beat
    (:func:`kefu.services.scheduled.scheduled_due_send`), or ``cancelled`` by its author, or
    ``failed`` (``error`` says why: the conversation closed, the author left it). The send
    claims the row with ``SELECT … FOR UPDATE SKIP LOCKED`` and moves it to ``sent`` in the
    transaction that writes the message, whose ``client_msg_id`` is ``scheduled-<id>``: a worker
    killed part-way leaves the row ``pending`` and nothing written, so it is sent exactly once.
    ``timezone``: the zone the time was chosen in (the customer's when known), for display.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="scheduled_messages",
        verbose_name=_("conversation"),
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="scheduled_messages",
        verbose_name=_("author"),
    )
    content = models.TextField(_("text"), max_length=5000)
    send_at = models.DateTimeField(_("send at"))
    timezone = models.CharField(_("time zone"), max_length=64, blank=True)
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING
    )
    message = models.ForeignKey(
        "im.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("message sent"),
    )
    error = models.CharField(_("error"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("scheduled message")
        verbose_name_plural = _("scheduled messages")
        ordering = ["send_at", "pk"]
        indexes = [
            models.Index(
                fields=["send_at"],
                condition=Q(state="pending"),
                name="kefu_scheduled_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.content[:40]} @ {self.send_at:%Y-%m-%d %H:%M}"


class ExportJob(models.Model):
    """A conversation list exported by a worker (issue 17, "Export"): the conversations matching
    ``filters`` as CSV or JSON, written by :func:`kefu.exports.export_job_run` with its progress
    in ``done``/``total``; downloaded by its requester only (``content``, at most
    ``kefu.exports.MAX_CONVERSATIONS`` conversations)."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSON = "json", "JSON"

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kefu_exports",
        verbose_name=_("requested by"),
    )
    format = models.CharField(_("format"), max_length=8, choices=Format.choices)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(_("conversations"), default=0)
    done = models.PositiveIntegerField(_("exported"), default=0)
    content = models.BinaryField(_("file"), null=True, blank=True, editable=False)
    error = models.CharField(_("error"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("conversation export")
        verbose_name_plural = _("conversation exports")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.format} ({self.get_state_display()})"


class RetentionPolicy(models.Model):
    """How long the tenant keeps closed conversations (one row; Customer service → Data
    retention). ``days`` 0 keeps them forever; otherwise conversations closed more than
    ``days`` days ago are anonymised (messages redacted, files deleted, statistics kept) or
    deleted, once a day by Celery beat (kefu.privacy.retention_apply; ``manage.py retention
    --dry-run`` shows what would go)."""

    class Action(models.TextChoices):
        ANONYMISE = "anonymise", _("Anonymise (keep statistics)")
        DELETE = "delete", _("Delete")

    days = models.PositiveIntegerField(
        _("keep closed conversations for (days)"),
        default=0,
        help_text=_("0 keeps them forever."),
    )
    action = models.CharField(
        _("then"), max_length=16, choices=Action.choices, default=Action.ANONYMISE
    )

    class Meta:
        verbose_name = _("data retention")
        verbose_name_plural = _("data retention")

    def __str__(self) -> str:
        return str(_("Data retention"))

    @classmethod
    def current(cls) -> "RetentionPolicy":
        """The tenant's row (created, keeping everything, on first use)."""
        row = cls.objects.order_by("pk").first()
        return row if row is not None else cls.objects.create()
