"""Per-tenant people and organisation: users, the department tree, and business calendars.

The models exist in every schema: in ``public`` the user table holds platform admins (the other
tables stay empty there). A :class:`BusinessCalendar` (time zone, weekly hours, holidays) is the
organisation's opening hours; tickets count SLA targets in one and workgroups open by one.
"""

from zoneinfo import ZoneInfo, available_timezones

from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from treebeard.mp_tree import MP_Node

from org import business_hours


class User(AbstractUser):
    """A person who signs in: a tenant admin, an agent, or a staff member.

    ``role`` decides what the inbox offers; Django's ``is_staff``/``is_superuser`` still decide
    admin access. ``display_name`` is what visitors and colleagues see (falls back to the username).
    """

    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        AGENT = "agent", _("Agent")
        STAFF = "staff", _("Staff member")

    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.STAFF)
    display_name = models.CharField(_("display name"), max_length=64, blank=True)
    title = models.CharField(_("job title"), max_length=64, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    language = models.CharField(
        _("language"),
        max_length=16,
        blank=True,
        choices=settings.LANGUAGES,
        help_text=_(
            "The language of the inbox and of automatic lines for this person; empty: the "
            "browser's (Accept-Language)."
        ),
    )
    deleted_at = models.DateTimeField(
        _("deleted at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the user was deleted: the account is gone, what they did stays."),
    )
    sessions_epoch = models.PositiveIntegerField(
        _("sign-out generation"),
        default=0,
        editable=False,
        help_text=_('Raised by "log out everywhere": every session signed in before it ends.'),
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        """The name shown to others."""
        return self.display_name or self.get_full_name() or self.username

    @property
    def member_key(self) -> str:
        """The user's key in conversations (``u:<id>``), see ``im.models.Participant``."""
        return f"u:{self.pk}"

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        """Django's session check (an HMAC over the password hash), also over
        ``sessions_epoch`` once "log out everywhere" raised it: a session stored with an older
        hash is ended on its next request (``org.twofactor.end_other_sessions``). At 0 it is
        Django's own, so existing sessions survive the upgrade."""
        if not self.sessions_epoch:
            return super()._get_session_auth_hash(secret=secret)
        key_salt = "org.models.User.get_session_auth_hash"
        return salted_hmac(
            key_salt, f"{self.password}:{self.sessions_epoch}", secret=secret, algorithm="sha256"
        ).hexdigest()

    @property
    def is_admin(self) -> bool:
        """Whether the user administers the tenant (the admin role, or back-office access)."""
        return self.role == self.Role.ADMIN or self.is_staff or self.is_superuser

    @property
    def is_agent(self) -> bool:
        """Whether the user serves visitors (agents and admins do)."""
        return self.role in (self.Role.AGENT, self.Role.ADMIN)


class Department(MP_Node):
    """A department in the organisation tree (ORG-1), any depth (treebeard materialised path).

    People belong through :class:`DepartmentMember`, possibly to several departments.
    """

    name = models.CharField(_("name"), max_length=100)
    node_order_by = ["name"]

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")

    def __str__(self) -> str:
        return self.name


class DepartmentMember(models.Model):
    """A person's membership of a department; ``is_head`` marks the department head."""

    department = models.ForeignKey(
        Department,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("department"),
    )
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="departments", verbose_name=_("user")
    )
    is_head = models.BooleanField(_("department head"), default=False)
    is_primary = models.BooleanField(_("primary department"), default=True)

    class Meta:
        verbose_name = _("department member")
        verbose_name_plural = _("department members")
        constraints = [
            models.UniqueConstraint(
                fields=["department", "user"], name="org_department_member_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.department}"


def validate_zone(value: str) -> None:
    """Raise ``ValidationError`` unless ``value`` is an IANA time zone name (``Asia/Shanghai``)."""
    if value not in available_timezones():
        raise ValidationError(_("Unknown time zone: %(zone)s"), params={"zone": value})


class BusinessCalendar(models.Model):
    """Opening hours in one time zone, with holidays (:class:`Holiday`), for SLA targets
    and workgroups' work hours."""

    name = models.CharField(_("name"), max_length=100)
    timezone = models.CharField(
        _("time zone"), max_length=64, default="Asia/Shanghai", validators=[validate_zone]
    )

    class Meta:
        verbose_name = _("business calendar")
        verbose_name_plural = _("business calendars")

    def __str__(self) -> str:
        return f"{self.name} ({self.timezone})"

    def as_calendar(self) -> business_hours.Calendar:
        """The pure :class:`org.business_hours.Calendar`. Raises ``ValueError`` when the
        calendar has no hours at all."""
        week: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for row in self.hours.all():
            week[row.weekday].append((row.start_minute, row.end_minute))
        return business_hours.Calendar(
            ZoneInfo(self.timezone),
            tuple(tuple(sorted(day)) for day in week),
            frozenset(self.holidays.values_list("date", flat=True)),
        )


class BusinessHours(models.Model):
    """One opening interval of a weekday, local wall-clock time."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, _("Monday")
        TUESDAY = 1, _("Tuesday")
        WEDNESDAY = 2, _("Wednesday")
        THURSDAY = 3, _("Thursday")
        FRIDAY = 4, _("Friday")
        SATURDAY = 5, _("Saturday")
        SUNDAY = 6, _("Sunday")

    calendar = models.ForeignKey(
        BusinessCalendar, on_delete=models.CASCADE, related_name="hours", verbose_name=_("calendar")
    )
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    opens = models.TimeField(_("opens"))
    closes = models.TimeField(
        _("closes"), help_text=_("00:00 means midnight at the end of the day.")
    )

    class Meta:
        verbose_name = _("business hours")
        verbose_name_plural = _("business hours")
        ordering = ["weekday", "opens"]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"

    @property
    def start_minute(self) -> int:
        return self.opens.hour * 60 + self.opens.minute

    @property
    def end_minute(self) -> int:
        minute = self.closes.hour * 60 + self.closes.minute
        return minute or 1440

    def clean(self) -> None:
        if self.end_minute <= self.start_minute:
            raise ValidationError(_("Closing time must be after opening time."))


class Holiday(models.Model):
    """A local date on which a calendar has no business hours."""

    calendar = models.ForeignKey(
        BusinessCalendar,
        on_delete=models.CASCADE,
        related_name="holidays",
        verbose_name=_("calendar"),
    )
    date = models.DateField(_("date"))
    name = models.CharField(_("name"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("holiday")
        verbose_name_plural = _("holidays")
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="org_holiday_unique")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class VisitorLimits(models.Model):
    """The tenant's rate limits on anonymous visitors (the widget, "leave a message", the help
    center): one row, edited by the tenant admin. An empty field takes the platform default
    (``settings.WEIYU_VISITOR_LIMITS``, from the environment); 0 turns that limit off.
    Effective values: :func:`org.limits.effective` (docs/security.md, "Rate limits")."""

    sessions_per_ip_minute = models.PositiveIntegerField(
        _("chat sessions per address per minute"), null=True, blank=True
    )
    connects_per_ip_minute = models.PositiveIntegerField(
        _("widget connections per address per minute"), null=True, blank=True
    )
    frames_per_visitor_minute = models.PositiveIntegerField(
        _("socket frames per visitor per minute"), null=True, blank=True
    )
    messages_per_visitor_minute = models.PositiveIntegerField(
        _("messages per visitor per minute"), null=True, blank=True
    )
    messages_per_ip_minute = models.PositiveIntegerField(
        _("messages per address per minute"), null=True, blank=True
    )
    uploads_per_visitor_hour = models.PositiveIntegerField(
        _("files per visitor per hour"), null=True, blank=True
    )
    upload_mb_per_visitor_hour = models.PositiveIntegerField(
        _("file megabytes per visitor per hour"), null=True, blank=True
    )
    uploads_per_ip_hour = models.PositiveIntegerField(
        _("files per address per hour"), null=True, blank=True
    )
    upload_mb_per_ip_hour = models.PositiveIntegerField(
        _("file megabytes per address per hour"), null=True, blank=True
    )
    tickets_per_visitor_hour = models.PositiveIntegerField(
        _("left messages (tickets) per visitor per hour"), null=True, blank=True
    )
    tickets_per_ip_hour = models.PositiveIntegerField(
        _("left messages (tickets) per address per hour"), null=True, blank=True
    )
    transcripts_per_visitor_day = models.PositiveIntegerField(
        _("transcript e-mails per visitor per day"), null=True, blank=True
    )
    transcripts_per_address_day = models.PositiveIntegerField(
        _("transcript e-mails per e-mail address per day"), null=True, blank=True
    )
    searches_per_ip_minute = models.PositiveIntegerField(
        _("help center searches per address per minute"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("visitor rate limits")
        verbose_name_plural = _("visitor rate limits")

    def __str__(self) -> str:
        return str(_("Visitor rate limits"))

    @classmethod
    def current(cls) -> "VisitorLimits":
        """The tenant's row (created empty, i.e. with the platform defaults, on first use)."""
        row = cls.objects.order_by("pk").first()
        return row if row is not None else cls.objects.create()


class ApiKey(models.Model):
    """A credential for the REST API (docs/api.md, "Authentication"): ``Authorization: Bearer
    wy_<prefix>_<secret>``.

    ``kind`` ``system``: created by a tenant administrator in the back office for another system;
    it acts as that administrator, narrowed to its ``scopes``. ``personal``: an agent's own token
    (``POST /api/v1/org/tokens``), acting as the agent with their permissions, narrowed to its
    ``scopes``. Either stops working when its person is deactivated or deleted.

    The secret (32 random bytes, URL-safe base64) is shown once and never stored: ``secret_hash``
    is HMAC-SHA256 of the whole token keyed with ``SECRET_KEY`` (:func:`org.apikeys.token_hash`).
    The token carries full entropy, so a slow password hash adds nothing; the key makes a leaked
    table useless without the settings. ``prefix`` (10 hex characters, shown) finds the row.

    ``scopes``: a list of ``"<family>:read"`` / ``"<family>:write"`` (``org.apikeys.FAMILIES``);
    ``write`` includes ``read``. ``allowed_ips``: addresses or CIDRs, comma- or line-separated;
    empty allows any. ``rate_per_minute``: requests per clock minute (0: no limit).
    ``last_used_at`` is written at most once a minute.
    """

    class Kind(models.TextChoices):
        SYSTEM = "system", _("System key")
        PERSONAL = "personal", _("Personal token")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    user = models.ForeignKey(
        User,
        on_delete=models.CASCADE,
        related_name="api_keys",
        verbose_name=_("acts as"),
        editable=False,
    )
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    allowed_ips = models.TextField(
        _("allowed addresses"),
        blank=True,
        help_text=_("Addresses or networks (CIDR), one per line; empty: any address."),
    )
    rate_per_minute = models.PositiveIntegerField(
        _("requests per minute"), default=600, help_text=_("0: no limit.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (wy_{self.prefix}_…)"


class SecuritySettings(models.Model):
    """The tenant's sign-in rules: one row, edited by the tenant admin (Organisation → Security
    settings). ``two_factor_required`` says who must sign in with a second factor; a user it
    covers who has none is sent to enrolment and can use nothing else (org.twofactor).
    ``password_min_length`` (characters) and ``password_character_classes`` (1 to 4 kinds mixed)
    are the password policy, applied whenever a password is set (org.passwords)."""

    class TwoFactorRequired(models.TextChoices):
        NOBODY = "nobody", _("Nobody")
        ADMINS = "admins", _("Administrators only")
        EVERYONE = "everyone", _("Everyone")

    two_factor_required = models.CharField(
        _("require two-factor sign-in for"),
        max_length=16,
        choices=TwoFactorRequired.choices,
        default=TwoFactorRequired.NOBODY,
        help_text=_(
            "Administrators: the admin role and everyone with back-office access. Applies at "
            "each person's next page or connection."
        ),
    )

    password_min_length = models.PositiveSmallIntegerField(
        _("minimum password length"),
        default=8,
        validators=[MinValueValidator(8), MaxValueValidator(128)],
        help_text=_("Characters, 8 to 128. Applies when a password is set or changed."),
    )
    password_character_classes = models.PositiveSmallIntegerField(
        _("character kinds required"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(4)],
        help_text=_(
            "How many of these a password must mix: lower-case letters, upper-case letters, "
            "digits, other characters (1 to 4)."
        ),
    )

    class Meta:
        verbose_name = _("security settings")
        verbose_name_plural = _("security settings")

    def __str__(self) -> str:
        return str(_("Security settings"))

    @classmethod
    def current(cls) -> "SecuritySettings":
        """The tenant's row (created with nobody required on first use)."""
        row = cls.objects.order_by("pk").first()
        return row if row is not None else cls.objects.create()


class UserSession(models.Model):
    """A signed-in session of a user (browser, address, when), listed on the account's security
    page where each can be ended (org.sessions). Created at sign-in, deleted at sign-out or when
    ended; ``last_seen_at`` is refreshed at most every ``org.sessions.TOUCH_S`` seconds. The
    session itself is Django's (``django_session``); ``session_key`` points at it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signed_in_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(_("signed in at"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last active"), auto_now_add=True)
    ip = models.GenericIPAddressField(_("address"), null=True, blank=True)
    user_agent = models.CharField(_("browser"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("signed-in session")
        verbose_name_plural = _("signed-in sessions")
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.ip or '?'}"


#: the events of the audit log that are not plain model changes (written by org.audit), with
#: their labels in the back office
AUDIT_EVENTS = {
    "sign_in": _("Signed in"),
    "sign_in_failed": _("Sign-in failed"),
    "locked_out": _("Locked out"),
    "sign_out": _("Signed out"),
    "password_set": _("Password set"),
    "password_reset_requested": _("Password reset requested"),
    "two_factor_on": _("Two-factor sign-in turned on"),
    "sessions_ended": _("Logged out everywhere else"),
    "session_ended": _("Session ended"),
    "transfer": _("Conversation transferred"),
    "close": _("Conversation closed"),
    "block": _("Visitor blocked"),
    "export": _("Exported"),
    "erase": _("Personal data erased"),
    "retention": _("Retention applied"),
    "merge": _("Contacts merged"),
}


class AuditEntry(LogEntry):
    """An entry of the tenant's audit log (django-auditlog's ``LogEntry``, shown under
    Organisation): a model change with its before/after, or an event of :mod:`org.audit`
    (``additional_data["event"]``, one of :data:`AUDIT_EVENTS`). Append-only: written by
    signals and services, never edited."""

    class Meta:
        proxy = True
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ("-timestamp",)

    def __str__(self) -> str:
        return f"{self.label}: {self.object_repr}"

    @property
    def label(self) -> str:
        """What happened, for people: the event's label, or created / changed / deleted."""
        event = (self.additional_data or {}).get("event")
        if event in AUDIT_EVENTS:
            return str(AUDIT_EVENTS[event])
        return str(ACTION_LABELS.get(self.action, self.get_action_display()))


#: the labels of model changes in the log
ACTION_LABELS = {
    LogEntry.Action.CREATE: _("Created"),
    LogEntry.Action.UPDATE: _("Changed"),
    LogEntry.Action.DELETE: _("Deleted"),
}
