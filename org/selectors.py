"""Read queries of the organisation: the department tree and the staff directory."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, Q, QuerySet

from org.models import Department, DepartmentMember, User


def department_tree() -> list[dict[str, Any]]:
    """Every department as a nested tree, three queries whatever the size:
    ``[{"id", "name", "parent_id", "member_count", "head": {"id", "name"} | None,
    "children": [...]}]``; ``member_count`` counts active people of the department itself."""
    nodes = list(
        Department.objects.order_by("path").annotate(
            member_count=Count("memberships", filter=Q(memberships__user__is_active=True))
        )
    )
    heads: dict[int, dict[str, Any]] = {}
    for member in DepartmentMember.objects.filter(
        is_head=True, user__is_active=True
    ).select_related("user"):
        heads.setdefault(member.department_id, {"id": member.user_id, "name": member.user.name})
    by_path: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    steplen = Department.steplen
    for node in nodes:
        parent = by_path.get(node.path[:-steplen]) if node.depth > 1 else None
        item = {
            "id": node.pk,
            "name": node.name,
            "parent_id": parent["id"] if parent else None,
            "member_count": node.member_count,
            "head": heads.get(node.pk),
            "children": [],
        }
        by_path[node.path] = item
        (parent["children"] if parent else roots).append(item)
    return roots


def directory_list(
    *,
    query: str | None = None,
    department: Department | None = None,
    include_descendants: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[User], int]:
    """Active people of the tenant, by name, filtered by a case-insensitive substring of their
    display name, user name, first/last name or job title (Chinese names by substring too), and
    by department (with its sub-departments unless told otherwise). Returns ``(page, total)``."""
    users: QuerySet[User] = User.objects.filter(is_active=True)
    if query:
        users = users.filter(
            Q(display_name__icontains=query)
            | Q(username__icontains=query)
            | Q(first_name__icontains=query)
            | Q(last_name__icontains=query)
            | Q(title__icontains=query)
        )
    if department is not None:
        if include_descendants:
            path = Department.objects.values_list("path", flat=True).get(pk=department.pk)
            scope = Department.objects.filter(path__startswith=path).values("pk")
            users = users.filter(departments__department__in=scope).distinct()
        else:
            users = users.filter(departments__department=department).distinct()
    total = users.count()
    page = list(users.order_by("display_name", "username")[offset : offset + limit])
    return page, total


def departments_of(*, user_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """``{user id: [{"id", "name"}]}`` (primary department first), one query."""
    result: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = (
        DepartmentMember.objects.filter(user_id__in=user_ids)
        .select_related("department")
        .order_by("-is_primary", "department__name")
    )
    for row in rows:
        result[row.user_id].append({"id": row.department_id, "name": row.department.name})
    return result


def directory_payload(user: User, departments: list[dict[str, Any]]) -> dict[str, Any]:
    """A person as the directory shows them."""
    return {
        "id": user.pk,
        "key": user.member_key,
        "name": user.name,
        "username": user.username,
        "title": user.title,
        "role": user.role,
        "departments": departments,
    }
