"""REST endpoints of the organisation (docs/api.md §5): the department tree and the directory
that the inbox uses to start chats. Session-cookie auth, signed-in people of the tenant."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from org import selectors, services
from org.models import Department
from weiyu.errors import ServiceError


def _number(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ServiceError(
            "invalid",
            _("%(field)s must be between %(low)d and %(high)d.")
            % {"field": name, "low": low, "high": high},
            field=name,
        )
    return int(raw)


class MyLanguageApi(APIView):
    """``PUT /api/v1/org/me/language`` ``{"language": "" | "zh-hans" | "en"}`` → ``{"language"}``:
    the language the signed-in person reads the inbox and automatic lines in (``""``: their
    browser's). 400 ``invalid`` for another value; 403 when not signed in."""

    def put(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        user = services.user_language_set(user=request.user, language=data.get("language"))
        return Response({"language": user.language})


class DepartmentTreeApi(APIView):
    """``GET /api/v1/org/departments`` → ``{"departments": [{"id", "name", "parent_id",
    "member_count", "head": {"id", "name"} | null, "children": [...]}]}``."""

    def get(self, request: Request) -> Response:
        return Response({"departments": selectors.department_tree()})


class DirectoryListApi(APIView):
    """``GET /api/v1/org/directory?q=&department=&limit=&offset=`` (limit 1-200, default 50) →
    ``{"users": [{"id", "key", "name", "username", "title", "role", "departments": [{"id",
    "name"}]}], "count": total}``. 400 ``invalid`` for a bad department or limit."""

    def get(self, request: Request) -> Response:
        department = None
        raw = request.query_params.get("department")
        if raw not in (None, ""):
            department = Department.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
            if department is None:
                raise ServiceError("invalid", _("No such department."), field="department")
        query = (request.query_params.get("q") or "").strip()[:100]
        users, total = selectors.directory_list(
            query=query or None,
            department=department,
            limit=_number(request, "limit", 50, 1, 200),
            offset=_number(request, "offset", 0, 0, 1_000_000),
        )
        departments = selectors.departments_of(user_ids=[u.pk for u in users])
        return Response(
            {
                "users": [selectors.directory_payload(u, departments.get(u.pk, [])) for u in users],
                "count": total,
            }
        )
