"""REST endpoints of the organisation (docs/api.md §5): the department tree and the directory
that the inbox uses to start chats. Session-cookie auth, signed-in people of the tenant."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from org import apikeys, selectors, services
from org.models import ApiKey, Department
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


def _session_only(request: Request) -> None:
    if isinstance(request.auth, ApiKey):
        raise ServiceError("forbidden", _("Tokens are managed while signed in, not with a key."))


class TokenListApi(APIView):
    """``GET /api/v1/org/tokens`` → ``{"tokens": [api key]}``: the caller's personal tokens,
    newest first (``org.apikeys.api_key_payload``; never a secret).

    ``POST /api/v1/org/tokens`` ``{"name" (1-100), "scopes"? (list of "<family>:read|write",
    default every scope), "expires_at"? (ISO 8601 with a zone), "allowed_ips"? (list of
    addresses/CIDRs), "rate_per_minute"? (0-1,000,000, default 600)}`` → ``201 {…api key,
    "token": "wy_<prefix>_<secret>"}``: the only time the token is shown. Agents and
    administrators, signed in with the session (``403`` with a key or for other staff);
    ``400 invalid`` with ``field``."""

    def get(self, request: Request) -> Response:
        _session_only(request)
        keys = ApiKey.objects.filter(user=request.user, kind=ApiKey.Kind.PERSONAL)
        return Response({"tokens": [apikeys.api_key_payload(k) for k in keys]})

    def post(self, request: Request) -> Response:
        _session_only(request)
        data = request.data if isinstance(request.data, dict) else {}
        expires_at = data.get("expires_at")
        if expires_at is not None:
            parsed = parse_datetime(expires_at) if isinstance(expires_at, str) else None
            if parsed is None:
                raise ServiceError(
                    "invalid", _("expires_at is an ISO 8601 time."), field="expires_at"
                )
            expires_at = parsed
        allowed = data.get("allowed_ips", [])
        if not isinstance(allowed, list) or any(not isinstance(a, str) for a in allowed):
            raise ServiceError(
                "invalid", _("allowed_ips is a list of addresses."), field="allowed_ips"
            )
        key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.PERSONAL,
            user=request.user,
            name=data.get("name"),
            scopes=data.get("scopes", list(apikeys.ALL_SCOPES)),
            expires_at=expires_at,
            allowed_ips=",".join(allowed),
            rate_per_minute=data.get("rate_per_minute", 600),
        )
        return Response({**apikeys.api_key_payload(key), "token": token}, status=201)


class TokenDetailApi(APIView):
    """``DELETE /api/v1/org/tokens/<id>`` → ``204``: revoke one of the caller's personal tokens
    (``404`` for anyone else's; ``403`` with a key)."""

    def delete(self, request: Request, pk: int) -> Response:
        _session_only(request)
        key = ApiKey.objects.filter(pk=pk, user=request.user, kind=ApiKey.Kind.PERSONAL).first()
        if key is None:
            raise ServiceError("not_found", _("No such token."))
        apikeys.api_key_revoke(key=key)
        return Response(status=204)
