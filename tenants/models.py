"""Tenant and Domain: the only shared (public-schema) tables with data of their own."""

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

from weiyu.fields import EncryptedTextField


class Tenant(TenantMixin):
    """A company using Weiyu. ``schema_name`` is its PostgreSQL schema (``[a-z][a-z0-9_]{0,62}``)."""

    name = models.CharField(_("name"), max_length=100)
    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("Suspended tenants cannot be reached.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    plan = models.ForeignKey(
        "tenants.Plan",
        verbose_name=_("plan"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tenants",
        help_text=_("Empty: no limits (tenants made before plans existed, the platform's own)."),
    )
    trial_ends_at = models.DateTimeField(
        _("trial ends at"),
        null=True,
        blank=True,
        help_text=_("When set, the tenant is suspended at this time (beat, tenants.tasks)."),
    )
    suspended_reason = models.CharField(
        _("suspension reason"),
        max_length=20,
        blank=True,
        choices=[
            ("platform", _("by the platform")),
            ("trial_ended", _("trial ended")),
            ("deletion", _("deletion scheduled")),
        ],
    )
    delete_after = models.DateTimeField(
        _("deleted after"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Deletion is scheduled: the tenant is suspended and, after this time, exported one "
            "last time and deleted with its schema and files (tenants.lifecycle)."
        ),
    )

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"


class Domain(DomainMixin):
    """A host name that resolves to a tenant, e.g. ``acme.localhost`` or ``support.acme.com``."""

    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")


class Plan(models.Model):
    """What a tenant may use (TEN-3): defined in the platform admin, one per tenant
    (``Tenant.plan``). A limit left empty is unlimited. Usage is counted per calendar month
    (UTC) for conversations and AI answers, and in total for seats, widget channels and storage
    (:mod:`tenants.quotas`)."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=100)
    seats = models.PositiveIntegerField(
        _("seats"), null=True, blank=True, help_text=_("Active users who can sign in.")
    )
    widget_channels = models.PositiveIntegerField(_("widget channels"), null=True, blank=True)
    conversations_per_month = models.PositiveIntegerField(
        _("conversations per month"),
        null=True,
        blank=True,
        help_text=_("New visitor conversations per calendar month (UTC)."),
    )
    storage_bytes = models.PositiveBigIntegerField(
        _("storage (bytes)"), null=True, blank=True, help_text=_("Uploaded files, in bytes.")
    )
    ai_answers_per_month = models.PositiveIntegerField(
        _("AI answers per month"), null=True, blank=True
    )
    feature_ai = models.BooleanField(
        _("AI answers"),
        default=True,
        help_text=_(
            "Off: the robot answers from the knowledge base only, without a language model."
        ),
    )
    trial_days = models.PositiveIntegerField(
        _("trial days"),
        null=True,
        blank=True,
        help_text=_("A trial plan: tenants on it are suspended this many days after sign-up."),
    )

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Usage(models.Model):
    """A tenant's metered usage in one calendar month (UTC), written by the roll-up
    (:func:`tenants.quotas.usage_rollup`) from the Redis counters the services increment.
    ``storage_bytes`` is the total of its files at the last roll-up."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage")
    month = models.DateField(_("month"), help_text=_("The first day of the month."))
    conversations = models.PositiveIntegerField(_("conversations"), default=0)
    ai_answers = models.PositiveIntegerField(_("AI answers"), default=0)
    storage_bytes = models.PositiveBigIntegerField(_("storage (bytes)"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("usage")
        verbose_name_plural = _("usage")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="tenants_usage_one_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.month:%Y-%m}"


class Signup(models.Model):
    """A company's sign-up on the public site (TEN-4), waiting for its e-mail to be verified,
    then linked to the tenant made for it. The password is stored only as a hash."""

    company = models.CharField(_("company name"), max_length=100)
    subdomain = models.CharField(_("subdomain"), max_length=40)
    email = models.EmailField(_("e-mail"))
    password_hash = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=16, default="en")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="signups"
    )

    class Meta:
        verbose_name = _("sign-up")
        verbose_name_plural = _("sign-ups")

    def __str__(self) -> str:
        return f"{self.company} <{self.email}>"


class TenantArchive(models.Model):
    """A whole tenant written to one ``.tar.gz`` (rows and files, :func:`tenants.backup.
    tenant_backup`) in the platform's storage under ``_platform/archives/``: an export asked for
    in the platform admin, or the final one written before a deletion. Kept after the tenant is
    gone (it names the schema, not the row); restore it with ``manage.py tenant_restore``."""

    class Reason(models.TextChoices):
        EXPORT = "export", _("export")
        FINAL = "final", _("final export before deletion")

    schema_name = models.CharField(_("schema"), max_length=63, db_index=True)
    tenant_name = models.CharField(_("tenant name"), max_length=100)
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices)
    path = models.CharField(_("file"), max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(_("size (bytes)"), default=0)
    rows = models.PositiveIntegerField(_("rows"), default=0)
    files = models.PositiveIntegerField(_("files"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("tenant archive")
        verbose_name_plural = _("tenant archives")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.schema_name} {self.created_at:%Y-%m-%d %H:%M} ({self.reason})"


#: a colour the tenant picks: ``#rrggbb``
hex_colour = RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Use a hex colour like #1f6feb."))


class MailSettings(models.Model):
    """A tenant's own SMTP server and sender (:mod:`tenants.mail`). Used for every e-mail the
    tenant's product sends only once ``verified_at`` is set — a test mail went through exactly
    these settings; any change of server, account or sender clears it (``version`` counts the
    changes, so a test queued before a change cannot verify the new values). Until then the
    platform's server and sender are used. The password is encrypted at rest."""

    class Security(models.TextChoices):
        STARTTLS = "starttls", _("STARTTLS (usually port 587)")
        SSL = "ssl", _("SSL/TLS from the start (usually port 465)")
        NONE = "none", _("none (plain text, usually port 25)")

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="mail_settings")
    host = models.CharField(_("SMTP server"), max_length=253)
    port = models.PositiveIntegerField(
        _("port"), default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    security = models.CharField(
        _("encryption"), max_length=10, choices=Security.choices, default=Security.STARTTLS
    )
    username = models.CharField(_("user name"), max_length=254, blank=True)
    password = EncryptedTextField(_("password"), blank=True)
    from_name = models.CharField(_("sender name"), max_length=100, blank=True)
    from_address = models.EmailField(_("sender address"))
    version = models.PositiveIntegerField(default=1, editable=False)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True, editable=False)
    tested_at = models.DateTimeField(_("last test at"), null=True, blank=True, editable=False)
    last_error = models.TextField(_("last test error"), blank=True, editable=False)

    class Meta:
        verbose_name = _("mail settings")
        verbose_name_plural = _("mail settings")

    def __str__(self) -> str:
        return f"{self.from_address} via {self.host}:{self.port}"


class Branding(models.Model):
    """A tenant's logo and colours, shown by the widget (launcher, header), the help center's
    header and its HTML e-mails (:mod:`tenants.branding`). Empty fields keep Weiyu's look.
    ``logo_path`` is the file in the default storage, under ``<schema>/branding/``."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="branding")
    logo_path = models.CharField(_("logo"), max_length=255, blank=True, editable=False)
    logo_type = models.CharField(max_length=20, blank=True, editable=False)
    primary_color = models.CharField(
        _("primary colour"),
        max_length=7,
        blank=True,
        validators=[hex_colour],
        help_text=_("The widget's launcher and header, the help center's header, e-mail headers."),
    )
    accent_color = models.CharField(
        _("accent colour"),
        max_length=7,
        blank=True,
        validators=[hex_colour],
        help_text=_("Links and buttons."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("branding")
        verbose_name_plural = _("branding")

    def __str__(self) -> str:
        return str(_("Branding"))


class CustomDomain(models.Model):
    """A host name a tenant wants its widget, help center and back office on
    (:mod:`tenants.domains`). It routes to the tenant only once verified: the tenant created the
    TXT record ``_weiyu-verify.<host>`` holding ``token``; then a :class:`Domain` row is made
    (``domain``). Several tenants may claim the same host while unverified; the first to prove
    it gets it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="custom_domains")
    host = models.CharField(_("host name"), max_length=253)
    token = models.CharField(_("verification token"), max_length=64, editable=False)
    created_at = models.DateTimeField(_("added at"), auto_now_add=True)
    checked_at = models.DateTimeField(_("last checked at"), null=True, blank=True)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    last_error = models.CharField(_("last check"), max_length=500, blank=True)
    domain = models.OneToOneField(
        Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="custom"
    )

    class Meta:
        verbose_name = _("custom domain")
        verbose_name_plural = _("custom domains")
        ordering = ["host"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "host"], name="tenants_customdomain_once")
        ]

    def __str__(self) -> str:
        return self.host

    @property
    def record_name(self) -> str:
        """The TXT record's name to create: ``_weiyu-verify.<host>``."""
        return f"_weiyu-verify.{self.host}"
