"""Organisation changes (ORG-1): the department tree and its members. Every write is here, so the
back office and the API obey the same rules."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import get_public_schema_name

from org.models import Department, DepartmentMember, User
from org.signals import user_deactivated
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

NAME_MAX = 100


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("invalid", _("A department needs a name."), field="name")
    if len(value.strip()) > NAME_MAX:
        raise ServiceError(
            "invalid",
            _("The name is longer than %(n)d characters.") % {"n": NAME_MAX},
            field="name",
        )
    return value.strip()


def department_name(value: object) -> str:
    """``value`` as a department name (trimmed). Raises ``ServiceError("invalid")`` for an
    empty one or one over ``NAME_MAX`` characters."""
    return _name(value)


def department_create(*, name: object, parent: Department | None = None) -> Department:
    """A department at the root (``parent`` None) or under ``parent``."""
    clean = _name(name)
    with transaction.atomic():
        if parent is None:
            return Department.objects.add_root({"name": clean})
        return Department.objects.add_child(Department.objects.get(pk=parent.pk), {"name": clean})


def department_move(*, department: Department, parent: Department | None) -> Department:
    """Move a department (with its sub-departments) under ``parent``, or to the root.
    Raises ``ServiceError("invalid")`` for a move under itself or one of its descendants."""
    department = Department.objects.get(pk=department.pk)
    if parent is not None:
        parent = Department.objects.get(pk=parent.pk)
        if parent.pk == department.pk or parent.is_descendant_of(department):
            raise ServiceError(
                "invalid", _("A department cannot move under itself."), field="parent"
            )
    with transaction.atomic():
        if parent is None:
            Department.objects.move(department, Department.get_first_root_node(), "sorted-sibling")
        else:
            Department.objects.move(department, parent, "sorted-child")
    return Department.objects.get(pk=department.pk)


def department_delete(*, department: Department) -> None:
    """Delete an empty department. Raises ``ServiceError("conflict")`` while it has
    sub-departments or members."""
    department = Department.objects.get(pk=department.pk)
    if Department.objects.get_children_count(department) or department.memberships.exists():
        raise ServiceError("conflict", _("Move or remove its sub-departments and members first."))
    department.delete()


def department_member_add(
    *, department: Department, user: User, is_head: bool = False
) -> DepartmentMember:
    """Put ``user`` in ``department`` (a person may be in several); idempotent."""
    try:
        with transaction.atomic():
            member, _created = DepartmentMember.objects.get_or_create(
                department=department,
                user=user,
                defaults={
                    "is_head": is_head,
                    "is_primary": not DepartmentMember.objects.filter(user=user).exists(),
                },
            )
    except IntegrityError:
        member = DepartmentMember.objects.get(department=department, user=user)
    if is_head and not member.is_head:
        member.is_head = True
        member.save(update_fields=["is_head"])
    return member


def department_member_remove(*, department: Department, user: User) -> None:
    """Take ``user`` out of ``department``."""
    DepartmentMember.objects.filter(department=department, user=user).delete()


def user_password_set(*, user: User, password: str) -> User:
    """Give ``user`` a new password (hashed by the configured hasher). Sessions signed in with
    the old one end at their next request (Django's session hash changes with the password)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    return user


def user_language_set(*, user: User, language: object) -> User:
    """Remember the language ``user`` reads the inbox in: ``""`` (auto: the browser's
    Accept-Language) or one of ``settings.LANGUAGES`` (``"zh-hans"``, ``"en"``). Applied to their
    pages and API answers by :class:`org.middleware.UserLanguageMiddleware` from their next
    request. Raises ``ServiceError("invalid")`` for anything else."""
    codes = [code for code, _name in settings.LANGUAGES]
    if not isinstance(language, str) or language not in ("", *codes):
        raise ServiceError(
            "invalid",
            _("language must be one of: %(choices)s (empty for the browser's).")
            % {"choices": ", ".join(codes)},
            field="language",
        )
    user.language = language
    user.save(update_fields=["language"])
    return user


def user_deactivate(*, user: User) -> User:
    """Disable ``user``: they can no longer sign in (open sockets are closed with code 4401 after
    an ``account.disabled`` frame) and get no new work; their memberships stay, so enabling them
    again restores everything. Live work goes to others through
    :data:`org.signals.user_deactivated` (``deleted=False``). Idempotent: the receivers only
    act on live work, so disabling a disabled user again changes nothing."""
    return _deactivate(user, deleted=False)


def user_delete(*, user: User) -> User:
    """Delete ``user`` keeping history, the way Zendesk and Chatwoot do: the account disappears
    (inactive, password unusable, username freed as ``<username>.deleted<id>`` for reuse, out of
    every department; receivers of :data:`org.signals.user_deactivated` with ``deleted=True``
    remove them from workgroups and unassign their open tickets), while the conversations,
    messages, tickets, notes and statistics they took part in stay, under their display name.

    The row is kept because every record of the past points at it; ``deleted_at`` marks it.
    Idempotent: deleting a deleted user changes nothing."""
    return _deactivate(user, deleted=True)


def _deactivate(user: User, *, deleted: bool) -> User:
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.deleted_at is not None:
            return user
        user.is_active = False
        fields = ["is_active"]
        if deleted:
            if not user.display_name:
                user.display_name = user.name[:64]
            suffix = f".deleted{user.pk}"
            user.username = user.username[: 150 - len(suffix)] + suffix
            user.set_unusable_password()
            user.deleted_at = timezone.now()
            fields += ["display_name", "username", "password", "deleted_at"]
            DepartmentMember.objects.filter(user=user).delete()
        user.save(update_fields=fields)
        if connection.schema_name != get_public_schema_name():  # platform admins hold no work
            user_deactivated.send(sender=User, user=user, deleted=deleted)
        publish_event_on_commit({"type": "account.disabled", "deleted": deleted}, [user.member_key])
    return user
