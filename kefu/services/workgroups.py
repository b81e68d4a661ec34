"""Workgroup settings an administrator changes through the API (the back office edits all of
them: Customer service → Workgroups)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from kefu import supervision
from kefu.models import Workgroup
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError

#: the settings :func:`workgroup_settings_update` changes, each a boolean
EDITABLE = ("requeue_on_leave", "allow_pick")


def _require_admin(user: User) -> None:
    if not (user.is_superuser or user.role == User.Role.ADMIN):
        raise ServiceError("forbidden", _("Only administrators can change workgroups."))


def workgroup_settings_payload(workgroup: Workgroup) -> dict[str, Any]:
    """``{"id", "name", "strategy", "allow_pick", "requeue_on_leave", "lead_id",
    "department_id", "supervisor_ids", "restricted_knowledge_base_ids"}`` — the department whose
    heads supervise it (or null), the supervisors granted ``kefu.supervise_workgroup`` (besides
    the lead and the department heads) and the knowledge bases restricted to it
    (docs/security.md "Roles"; set in the back office)."""
    return {
        "id": workgroup.pk,
        "name": workgroup.name,
        "strategy": workgroup.strategy,
        "allow_pick": workgroup.allow_pick,
        "requeue_on_leave": workgroup.requeue_on_leave,
        "lead_id": workgroup.lead_id,
        "department_id": workgroup.department_id,
        "supervisor_ids": [u.pk for u in supervision.workgroup_supervisors(workgroup)],
        "restricted_knowledge_base_ids": sorted(
            workgroup.knowledge_bases.values_list("pk", flat=True)
        ),
    }


def _get(workgroup_id: object, *, lock: bool = False) -> Workgroup:
    pk = parsing.positive_int(workgroup_id, "workgroup_id")
    rows = Workgroup.objects.select_for_update() if lock else Workgroup.objects.all()
    workgroup = rows.filter(pk=pk).first()
    if workgroup is None:
        raise ServiceError("not_found", _("No such workgroup."), field="workgroup_id")
    return workgroup


def workgroup_settings_get(*, user: User, workgroup_id: object) -> dict[str, Any]:
    """One workgroup's settings (:func:`workgroup_settings_payload`). Raises ``ServiceError``:
    ``forbidden`` (not an administrator nor an auditor), ``invalid``, ``not_found``."""
    if not user.is_auditor:
        _require_admin(user)
    return workgroup_settings_payload(_get(workgroup_id))


def workgroup_settings_update(
    *, user: User, workgroup_id: object, changes: object
) -> dict[str, Any]:
    """Change settings of :data:`EDITABLE` (``{"requeue_on_leave"?: bool, "allow_pick"?:
    bool}``); returns the workgroup's settings. ``requeue_on_leave`` applies from the next time
    an agent is found gone. Raises ``ServiceError``: ``forbidden`` (not an administrator),
    ``invalid`` (not an object, an unknown setting, a value that is not true or false),
    ``not_found``."""
    _require_admin(user)
    if not isinstance(changes, dict) or not changes:
        raise ServiceError(
            "invalid", _("Change one of: %(fields)s.") % {"fields": ", ".join(EDITABLE)}
        )
    for name, value in changes.items():
        if name not in EDITABLE:
            raise ServiceError(
                "invalid", _("Change one of: %(fields)s.") % {"fields": ", ".join(EDITABLE)}
            )
        if not isinstance(value, bool):
            raise ServiceError(
                "invalid", _("%(field)s must be true or false.") % {"field": name}, field=name
            )
    with transaction.atomic():
        workgroup = _get(workgroup_id, lock=True)
        for name, value in changes.items():
            setattr(workgroup, name, value)
        workgroup.save(update_fields=list(changes))
    return workgroup_settings_payload(workgroup)
