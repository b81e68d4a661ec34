"""Per-tenant users. The model exists in every schema: in ``public`` it holds platform admins."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _
from treebeard.mp_tree import MP_Node


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
    deleted_at = models.DateTimeField(
        _("deleted at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the user was deleted: the account is gone, what they did stays."),
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
