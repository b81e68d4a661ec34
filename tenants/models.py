"""Tenant and Domain: the only shared (public-schema) tables with data of their own."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin


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
