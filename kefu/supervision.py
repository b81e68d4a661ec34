"""Who supervises which workgroups, and what that lets them see (docs/security.md "Roles").

A workgroup's supervisors are its ``lead``, the people given the object permission
``kefu.supervise_workgroup`` on it with django-guardian (Customer service → Workgroups →
"supervisors") and, when the workgroup belongs to a department (``Workgroup.department``), the
heads of that department and of every department above it in the tree. A supervisor sees the conversations, tickets, statistics and live monitor of the
workgroups they supervise and nothing of the others; administrators and auditors see every
workgroup. Knowledge bases restricted to workgroups (``Workgroup.knowledge_bases``) are visible
to those workgroups' people: agents, supervisors and lead.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, get_objects_for_user, get_users_with_perms, remove_perm

from kbase import access as kb_access
from kefu.models import Workgroup
from org.models import DepartmentMember, User
from weiyu.errors import ServiceError

PERMISSION = "kefu.supervise_workgroup"


def sees_every_workgroup(user: User) -> bool:
    """Administrators (role or superuser) and auditors."""
    return bool(user.is_active and (user.is_admin or user.is_auditor))


def supervised_workgroup_ids(user: User) -> set[int] | None:
    """The ids of the workgroups ``user`` supervises (led, headed through a department, or granted
    ``kefu.supervise_workgroup``); None for someone who sees every workgroup
    (:func:`sees_every_workgroup`). Three queries; an empty set for anyone else."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if sees_every_workgroup(user):
        return None
    granted = get_objects_for_user(
        user, PERMISSION, klass=Workgroup, with_superuser=False, accept_global_perms=False
    )
    return set(granted.values_list("pk", flat=True)) | set(
        Workgroup.objects.filter(Q(lead=user) | _headed_departments(user)).values_list(
            "pk", flat=True
        )
    )


def _headed_departments(user: User) -> Q:
    """Workgroups whose department is one ``user`` heads or lies below one (treebeard's
    materialised path: a descendant's ``path`` starts with its ancestor's)."""
    paths = DepartmentMember.objects.filter(user=user, is_head=True).values_list(
        "department__path", flat=True
    )
    matches = Q(pk__in=[])
    for path in paths:
        matches |= Q(department__path__startswith=path)
    return matches


def is_supervising(user: User) -> bool:
    """Whether ``user`` may open the monitor and the statistics: an administrator, an auditor,
    or the supervisor of at least one workgroup."""
    scope = supervised_workgroup_ids(user)
    return scope is None or bool(scope)


def workgroup_supervisors(workgroup: Workgroup) -> list[User]:
    """The people granted ``kefu.supervise_workgroup`` on ``workgroup`` (not its lead)."""
    users = get_users_with_perms(
        workgroup, only_with_perms_in=["supervise_workgroup"], with_superusers=False
    )
    return list(users.order_by("username"))


@transaction.atomic
def workgroup_supervisors_set(*, workgroup: Workgroup, users: Iterable[User]) -> None:
    """Make ``users`` the supervisors of ``workgroup`` (object permissions granted and
    withdrawn; each grant is a row of the audit log). Only supervisors and agents can be
    supervisors (administrators and auditors see everything anyway). Raises ``ServiceError``
    ``invalid`` for anyone else or a deactivated account."""
    wanted = {u.pk: u for u in users}
    for user in wanted.values():
        if not user.is_active or user.role not in (User.Role.SUPERVISOR, User.Role.AGENT):
            raise ServiceError(
                "invalid",
                _("%(name)s cannot supervise: only active supervisors and agents can.")
                % {"name": user.name},
                field="supervisors",
            )
    current = {u.pk: u for u in workgroup_supervisors(workgroup)}
    for pk, user in current.items():
        if pk not in wanted:
            remove_perm(PERMISSION, user, workgroup)
    for pk, user in wanted.items():
        if pk not in current:
            assign_perm(PERMISSION, user, workgroup)


def workgroup_people_filter(user: User) -> Q:
    """A ``Workgroup`` filter: the workgroups ``user`` belongs to as agent or lead, or
    supervises by permission (for restrictions to workgroups)."""
    granted = get_objects_for_user(
        user, PERMISSION, klass=Workgroup, with_superuser=False, accept_global_perms=False
    ).values("pk")
    return Q(agents=user) | Q(lead=user) | Q(pk__in=granted)


def hidden_knowledge_base_ids(user: User) -> set[int]:
    """The knowledge bases restricted to workgroups none of which ``user`` belongs to
    (nothing for administrators and auditors). Registered with :mod:`kbase.access`."""
    if not user.is_authenticated:
        return set()
    if sees_every_workgroup(user):
        return set()
    restricted = set(
        Workgroup.knowledge_bases.through.objects.values_list("knowledgebase_id", flat=True)
    )
    if not restricted:
        return set()
    mine = set(
        Workgroup.knowledge_bases.through.objects.filter(
            workgroup__in=Workgroup.objects.filter(workgroup_people_filter(user))
        ).values_list("knowledgebase_id", flat=True)
    )
    return restricted - mine


def channel_hidden_knowledge_base_ids(*, workgroup_id: int | None) -> set[int]:
    """The knowledge bases the robot of a channel routed to ``workgroup_id`` may not answer
    from: those restricted to workgroups, unless that workgroup is one of them."""
    rows = Workgroup.knowledge_bases.through.objects.values_list("knowledgebase_id", "workgroup_id")
    restricted: dict[int, set[int]] = {}
    for kb_id, wg_id in rows:
        restricted.setdefault(kb_id, set()).add(wg_id)
    return {kb for kb, groups in restricted.items() if workgroup_id not in groups}


def register() -> None:
    """Tell the knowledge base which knowledge bases a person may not see (from
    ``KefuConfig.ready``)."""
    kb_access.hidden_register(hidden_knowledge_base_ids)
