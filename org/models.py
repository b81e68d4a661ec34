"""Per-tenant people and organisation: users, the department tree, and business calendars.

The models exist in every schema: in ``public`` the user table holds platform admins (the other
tables stay empty there). A :class:`BusinessCalendar` (time zone, weekly hours, holidays) is the
organisation's opening hours; tickets count SLA targets in one and workgroups open by one.
"""

from zoneinfo import ZoneInfo, available_timezones

from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice
from treebeard.mp_tree import MP_Node

from org import business_hours
from weiyu.fields import EncryptedTextField


class User(AbstractUser):
    """A person who signs in: a tenant admin, a supervisor, an agent, an auditor or a staff
    member (docs/security.md "Roles").

    ``role`` decides what the inbox offers and, for supervisors and auditors, what the back office
    shows (``org.backends.RolePermissionBackend``); Django's ``is_staff`` still decides whether the
    back office opens at all, and custom roles (:class:`Role`, Django groups underneath) add
    the model permissions they hold. ``display_name`` is what visitors and colleagues see (falls
    back to the username).
    """

    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        SUPERVISOR = "supervisor", _("Supervisor")
        AGENT = "agent", _("Agent")
        AUDITOR = "auditor", _("Auditor")
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
    external_id = models.CharField(
        _("external id"),
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text=_(
            "The person's id in the HR system or directory the organisation is synced from "
            "(import, PUT /api/v1/org/people/<external id>); empty for people added here."
        ),
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
        """Whether the user administers the tenant: the admin role or a superuser. Back-office
        access alone (``is_staff``, e.g. an auditor or a custom role) is not administration."""
        return self.role == self.Role.ADMIN or self.is_superuser

    @property
    def is_auditor(self) -> bool:
        """Whether the user only reads: every write is refused to an auditor, whatever else
        the account says (``org.middleware.AuditorReadOnlyMiddleware``, ``org.permissions``)."""
        return self.role == self.Role.AUDITOR

    @property
    def is_supervisor(self) -> bool:
        """Whether the user has the supervisor role (the workgroups supervised are
        ``kefu.supervision.supervised_workgroup_ids``)."""
        return self.role == self.Role.SUPERVISOR

    @property
    def is_agent(self) -> bool:
        """Whether the user serves visitors (agents and admins do)."""
        return self.role in (self.Role.AGENT, self.Role.ADMIN)


class Role(Group):
    """A custom role defined by the tenant's administrators: a name and a set of Django
    permissions (a Django group underneath, so ``User.groups`` are a person's custom roles and
    ``user.has_perm`` counts them). It grants exactly those permissions, in the back office for
    people with back-office access; docs/security.md "Roles"."""

    class Meta:
        proxy = True
        verbose_name = _("custom role")
        verbose_name_plural = _("custom roles")


class Department(MP_Node):
    """A department in the organisation tree (ORG-1), any depth (treebeard materialised path).

    People belong through :class:`DepartmentMember`, possibly to several departments.
    """

    name = models.CharField(_("name"), max_length=100)
    external_id = models.CharField(
        _("external id"),
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text=_("The department's id in the HR system it is synced from; empty otherwise."),
    )
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


class SingleSignOn(models.Model):
    """The tenant's single sign-on through an OpenID Connect provider (Keycloak, Azure AD,
    Google, Feishu, DingTalk…): one row, edited by the tenant admin (Organisation → Single
    sign-on). Flow and rules: :mod:`org.sso`; docs/security.md, "Single sign-on".

    ``issuer``: the provider's issuer URL; its discovery document is
    ``<issuer>/.well-known/openid-configuration``, fetched through the SSRF-guarded client.
    ``client_secret`` is encrypted at rest (:mod:`weiyu.fields`). ``allowed_domains``: e-mail
    domains (comma- or line-separated) whose people may sign in; empty allows any. People are
    matched by e-mail; one without an account gets one with ``default_role`` when
    ``create_users`` is on. ``password_sign_in_off``: the tenant's password forms are refused
    (the platform's break-glass: ``manage.py sso_password_sign_in <schema> on``)."""

    enabled = models.BooleanField(_("enabled"), default=False)
    provider_name = models.CharField(
        _("provider name"),
        max_length=60,
        default="SSO",
        help_text=_('Shown on the sign-in button: "Sign in with <provider name>".'),
    )
    issuer = models.URLField(
        _("issuer URL"),
        max_length=300,
        blank=True,
        help_text=_(
            "The provider's issuer, e.g. https://keycloak.example.com/realms/acme; its "
            "discovery document is read from <issuer>/.well-known/openid-configuration."
        ),
    )
    client_id = models.CharField(_("client id"), max_length=200, blank=True)
    client_secret = EncryptedTextField(_("client secret"), blank=True)
    scopes = models.CharField(
        _("scopes"),
        max_length=200,
        default="openid email profile",
        help_text=_("Space-separated; openid and email are always asked for."),
    )
    default_role = models.CharField(
        _("role of new people"),
        max_length=16,
        choices=User.Role.choices,
        default=User.Role.STAFF,
    )
    create_users = models.BooleanField(
        _("create accounts on first sign-in"),
        default=True,
        help_text=_("Off: only people who already have an account with that e-mail may sign in."),
    )
    allowed_domains = models.TextField(
        _("allowed e-mail domains"),
        blank=True,
        help_text=_("Comma- or line-separated, e.g. example.com; empty: any domain."),
    )
    password_sign_in_off = models.BooleanField(
        _("password sign-in off"),
        default=False,
        help_text=_(
            "Everyone signs in through the provider; the password forms of the inbox and the "
            "back office are refused."
        ),
    )

    class Meta:
        verbose_name = _("single sign-on")
        verbose_name_plural = _("single sign-on")

    def __str__(self) -> str:
        return str(_("Single sign-on"))

    @classmethod
    def current(cls) -> "SingleSignOn":
        """The tenant's row (created off on first use)."""
        row = cls.objects.order_by("pk").first()
        return row if row is not None else cls.objects.create()

    @property
    def domains(self) -> list[str]:
        """``allowed_domains`` as lower-case names, without a leading ``@``."""
        parts = self.allowed_domains.replace(",", " ").split()
        return [p.lstrip("@").lower() for p in parts if p.lstrip("@")]


class LdapDirectory(models.Model):
    """The tenant's LDAP / Active Directory server that people and departments are synced from
    (:mod:`org.ldap_sync`; docs/operations.md, "Directory sync"): one row, edited by the tenant
    admin (Organisation → LDAP directory).

    ``server_url``: ``ldap://host[:port]`` (389; with ``start_tls`` upgraded to TLS) or
    ``ldaps://host[:port]`` (636); the host obeys the outgoing-request rules of
    :mod:`weiyu.outbound`. ``bind_password`` is encrypted at rest (:mod:`weiyu.fields`).
    ``ca_certificate``: PEM of a private CA the server's certificate is checked against
    (empty: the system's CAs). People are the entries under ``people_base_dn`` matching
    ``people_filter``; departments (optional) the entries below ``departments_base_dn``
    matching ``departments_filter``, nested as in the tree. ``attr_*``: the attribute names
    read. With ``enabled``, a sync runs every ``interval_minutes``; ``last_report`` is the
    last :meth:`org.directory.Report.as_dict` (with ``at``, ISO time)."""

    enabled = models.BooleanField(
        _("sync on a schedule"),
        default=False,
        help_text=_('Off: the directory is synced only with "Sync now".'),
    )
    server_url = models.CharField(
        _("server URL"),
        max_length=300,
        help_text=_("ldap://dc1.example.com or ldaps://dc1.example.com:636"),
    )
    start_tls = models.BooleanField(
        _("StartTLS"), default=True, help_text=_("Upgrade an ldap:// connection to TLS.")
    )
    ca_certificate = models.TextField(
        _("CA certificate"),
        blank=True,
        help_text=_("PEM of the CA that signed the server's certificate; empty: public CAs."),
    )
    bind_dn = models.CharField(
        _("bind DN"),
        max_length=300,
        blank=True,
        help_text=_("e.g. CN=weiyu-sync,OU=Service,DC=example,DC=com; empty: anonymous."),
    )
    bind_password = EncryptedTextField(_("bind password"), blank=True)
    people_base_dn = models.CharField(
        _("people base DN"), max_length=300, help_text=_("e.g. OU=Staff,DC=example,DC=com")
    )
    people_filter = models.CharField(
        _("people filter"),
        max_length=500,
        default="(objectClass=inetOrgPerson)",
        help_text=_(
            "Active Directory: (&(objectCategory=person)(objectClass=user)"
            "(!(userAccountControl:1.2.840.113556.1.4.803:=2))) leaves disabled accounts out."
        ),
    )
    departments_base_dn = models.CharField(
        _("departments base DN"),
        max_length=300,
        blank=True,
        help_text=_(
            "The entries below it are departments, nested as in the tree; a person belongs to "
            "the nearest one above their entry. Empty: no departments from the tree."
        ),
    )
    departments_filter = models.CharField(
        _("departments filter"), max_length=500, default="(objectClass=organizationalUnit)"
    )
    attr_external_id = models.CharField(
        _("external id attribute"),
        max_length=64,
        default="entryUUID",
        help_text=_("A stable id: entryUUID (OpenLDAP), objectGUID (Active Directory)."),
    )
    attr_username = models.CharField(
        _("username attribute"),
        max_length=64,
        default="uid",
        help_text=_("uid (OpenLDAP), sAMAccountName (Active Directory)."),
    )
    attr_name = models.CharField(
        _("name attribute"), max_length=64, default="cn", help_text=_("cn or displayName.")
    )
    attr_email = models.CharField(_("e-mail attribute"), max_length=64, default="mail")
    attr_title = models.CharField(_("job title attribute"), max_length=64, default="title")
    attr_phone = models.CharField(
        _("phone attribute"), max_length=64, default="telephoneNumber", blank=True
    )
    attr_department = models.CharField(
        _("department attribute"),
        max_length=64,
        blank=True,
        help_text=_(
            "A person's attribute holding a department path such as Sales/East (e.g. "
            "department), used when no department entry is above them. Empty: not read."
        ),
    )
    attr_department_name = models.CharField(
        _("department name attribute"), max_length=64, default="ou"
    )
    interval_minutes = models.PositiveIntegerField(
        _("interval (minutes)"),
        default=60,
        validators=[MinValueValidator(15), MaxValueValidator(7 * 24 * 60)],
    )
    page_size = models.PositiveIntegerField(
        _("page size"),
        default=500,
        validators=[MinValueValidator(1), MaxValueValidator(5000)],
        help_text=_("Entries per page of the search (Active Directory sends at most 1000)."),
    )
    last_sync_at = models.DateTimeField(_("last sync"), null=True, blank=True, editable=False)
    last_report = models.JSONField(_("last report"), default=dict, blank=True, editable=False)

    class Meta:
        verbose_name = _("LDAP directory")
        verbose_name_plural = _("LDAP directory")

    def __str__(self) -> str:
        return str(_("LDAP directory"))


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
    "security_key_added": _("Security key added"),
    "security_key_removed": _("Security key removed"),
    "sessions_ended": _("Logged out everywhere else"),
    "sso_account_created": _("Account created by single sign-on"),
    "sso_refused": _("Single sign-on refused"),
    "directory_import": _("Directory imported"),
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


class TOTPSecret(models.Model):
    """The key of an authenticator app (a django-otp ``TOTPDevice``), encrypted at rest
    (:class:`weiyu.fields.EncryptedTextField`, a Fernet token in the column). The device's own
    ``key`` column is left empty: a database dump holds no usable TOTP secret. ``key`` is the
    secret in hex (20 random bytes), as django-otp keeps it."""

    device = models.OneToOneField(
        TOTPDevice, on_delete=models.CASCADE, primary_key=True, related_name="sealed_key"
    )
    key = EncryptedTextField(_("key"))

    class Meta:
        verbose_name = _("authenticator key")
        verbose_name_plural = _("authenticator keys")

    def __str__(self) -> str:
        return f"key of device {self.device_id}"


class SealedTOTPDevice(TOTPDevice):
    """A ``TOTPDevice`` whose key is read from its :class:`TOTPSecret` (same table, a proxy):
    what :mod:`org.twofactor` uses to verify codes and draw the QR code. A device made
    elsewhere with a plain key (none is, the back office cannot add one) still works."""

    class Meta:
        proxy = True
        verbose_name = _("TOTP device")

    @property
    def bin_key(self) -> bytes:
        """The secret as bytes (20), decrypted from :class:`TOTPSecret`."""
        try:
            return bytes.fromhex(self.sealed_key.key)
        except TOTPSecret.DoesNotExist:
            return bytes.fromhex(self.key)


class SecurityKey(Device):
    """A WebAuthn credential (a security key or a passkey) a user signs in with as a second
    factor (:mod:`org.webauthn`, docs/security.md). A django-otp ``Device``: ``user``, ``name``
    (the user's label, at most 64 characters) and ``confirmed`` (always True: a row is made only
    after a verified registration).

    ``credential_id`` is the credential's id (base64url, unique in the schema); ``public_key``
    its COSE public key (bytes); ``sign_count`` the authenticator's signature counter at the
    last use (a response whose counter does not go up is refused, a cloned key); ``rp_id`` the
    host it was registered on (the tenant's domain, or the platform's): it is offered only there;
    ``transports`` what the browser reported (``["usb", "internal", …]``), a hint for the next
    sign-in; ``aaguid`` the authenticator model's id."""

    credential_id = models.CharField(_("credential id"), max_length=1400, unique=True)
    public_key = models.BinaryField(_("public key"))
    sign_count = models.PositiveBigIntegerField(_("signature counter"), default=0)
    rp_id = models.CharField(_("domain"), max_length=253)
    transports = models.JSONField(_("transports"), default=list, blank=True)
    aaguid = models.CharField(_("authenticator model"), max_length=36, blank=True)
    created_at = models.DateTimeField(_("added at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta(Device.Meta):
        verbose_name = _("security key")
        verbose_name_plural = _("security keys")
        ordering = ["created_at", "id"]


class AlertPreferences(models.Model):
    """How a person is alerted while no inbox tab of theirs is open (docs/inbox.md, "Alerts
    when away"): a web push per kind of event, and an e-mail digest of messages left unread.

    Missing row = the defaults below (:func:`org.alerts.preferences_for`)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="alert_preferences",
        verbose_name=_("user"),
    )
    push_assignment = models.BooleanField(
        _("push: assigned to me"),
        default=True,
        help_text=_("A conversation or ticket was assigned to you."),
    )
    push_transfer = models.BooleanField(
        _("push: transfers"),
        default=True,
        help_text=_("A colleague asks you to take over a conversation."),
    )
    push_mention = models.BooleanField(
        _("push: @mentions"),
        default=True,
        help_text=_("You were mentioned in team chat, an internal note or a ticket."),
    )
    push_sla = models.BooleanField(
        _("push: SLA warnings"),
        default=True,
        help_text=_("A ticket of yours is about to breach, or breached, its SLA."),
    )
    digest_after_minutes = models.PositiveSmallIntegerField(
        _("e-mail digest after (minutes)"),
        default=15,
        validators=[MaxValueValidator(1440)],
        help_text=_(
            "Messages unread for this long are sent to you in one e-mail (each message once); "
            "0: no e-mail."
        ),
    )
    quiet_when_inbox_open = models.BooleanField(
        _("quiet while an inbox is open"),
        default=True,
        help_text=_("No push and no e-mail while an inbox tab of yours is connected."),
    )

    class Meta:
        verbose_name = _("alert preferences")
        verbose_name_plural = _("alert preferences")

    def __str__(self) -> str:
        return str(self.user)


class PushSubscription(models.Model):
    """One browser's web push subscription (the ``PushSubscription`` JSON of the Push API) of a
    signed-in session: it ends with the session (sign-out, "log out everywhere", a session ended
    from the security page), and is deleted when the push service answers 404 or 410."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="push_subscriptions",
        verbose_name=_("user"),
    )
    session = models.ForeignKey(
        UserSession,
        on_delete=models.CASCADE,
        related_name="push_subscriptions",
        verbose_name=_("signed-in session"),
    )
    endpoint = models.URLField(_("push service address"), max_length=1000, unique=True)
    p256dh = models.CharField(_("browser public key"), max_length=200)
    auth = models.CharField(_("browser auth secret"), max_length=100)
    user_agent = models.CharField(_("browser"), max_length=300, blank=True)
    language = models.CharField(
        _("language"),
        max_length=16,
        blank=True,
        help_text=_(
            "The browser's language when it subscribed: alerts are written in it unless "
            "the person chose one."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_sent_at = models.DateTimeField(_("last sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("push subscription")
        verbose_name_plural = _("push subscriptions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.endpoint[:60]}"
