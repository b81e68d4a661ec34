"""REST endpoints of the organisation (docs/api.md §5): the department tree and the directory
that the inbox uses to start chats. Session-cookie auth, signed-in people of the tenant."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from org import alerts, apikeys, directory, push, selectors, services
from org.middleware import own_settings
from org.models import ApiKey, Department, DepartmentMember, PushSubscription, User
from weiyu.errors import ServiceError
from weiyu.schema import NO_CONTENT


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


@own_settings
class MyLanguageApi(APIView):
    """``PUT /api/v1/org/me/language`` ``{"language": "" | "zh-hans" | "en"}`` → ``{"language"}``:
    the language the signed-in person reads the inbox and automatic lines in (``""``: their
    browser's). 400 ``invalid`` for another value; 403 when not signed in."""

    def put(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        user = services.user_language_set(user=request.user, language=data.get("language"))
        return Response({"language": user.language})


def _alerts_answer(user: User) -> dict[str, Any]:
    return {
        **alerts.preferences_payload(alerts.preferences_for(user)),
        "vapid_public_key": push.vapid_public_key(),
        "subscriptions": PushSubscription.objects.filter(user=user).count(),
    }


@own_settings
class MyAlertsApi(APIView):
    """The signed-in person's alerts when away (docs/inbox.md, "Alerts when away").

    ``GET /api/v1/org/me/alerts`` → ``{"push": {"assignment", "transfer", "mention", "sla":
    bool}, "digest_after_minutes": 0-1440 (0: no e-mail), "quiet_when_inbox_open": bool,
    "vapid_public_key": "<base64url>", "subscriptions": <browsers with push on>}``.
    ``PUT`` with any of the first three fields changes them and answers the same. 400
    ``invalid`` (with ``field``) for anything else; 403 when not signed in."""

    def get(self, request: Request) -> Response:
        return Response(_alerts_answer(request.user))

    def put(self, request: Request) -> Response:
        alerts.preferences_set(user=request.user, data=request.data)
        return Response(_alerts_answer(request.user))


@own_settings
class MyPushSubscriptionsApi(APIView):
    """This browser's web push subscription.

    ``POST /api/v1/org/me/push-subscriptions`` with the Push API's ``{"endpoint": "https://…",
    "keys": {"p256dh", "auth"}}`` → 201 ``{"id", "created_at"}``: kept for this signed-in
    session (it ends with it). ``DELETE`` with ``{"endpoint"}`` → 204. 400 ``invalid`` (bad
    keys, an endpoint that is not a public ``https`` address), 409 ``conflict`` (too many
    browsers), 401/403 without a browser session."""

    def post(self, request: Request) -> Response:
        row = push.subscription_save(request=request._request, user=request.user, data=request.data)
        return Response({"id": row.pk, "created_at": row.created_at}, status=201)

    def delete(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        push.subscription_delete(user=request.user, endpoint=data.get("endpoint"))
        return Response(status=204)


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

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        _session_only(request)
        key = ApiKey.objects.filter(pk=pk, user=request.user, kind=ApiKey.Kind.PERSONAL).first()
        if key is None:
            raise ServiceError("not_found", _("No such token."))
        apikeys.api_key_revoke(key=key)
        return Response(status=204)


# --- directory sync for HR systems (org.directory; docs/api.md, "People and departments")


def _directory_admin(request: Request) -> None:
    if not getattr(request.user, "is_admin", False):
        raise ServiceError("forbidden", _("Only administrators sync the directory."))


def person_payload(user: User) -> dict[str, Any]:
    """``{"id", "external_id", "username", "email", "name", "title", "phone", "role",
    "active", "departments": [{"id", "external_id", "name", "primary"}]}``."""
    members = DepartmentMember.objects.filter(user=user).select_related("department")
    return {
        "id": user.pk,
        "external_id": user.external_id,
        "username": user.username,
        "email": user.email,
        "name": user.display_name,
        "title": user.title,
        "phone": user.phone,
        "role": user.role,
        "active": user.is_active,
        "departments": [
            {
                "id": m.department_id,
                "external_id": m.department.external_id,
                "name": m.department.name,
                "primary": m.is_primary,
            }
            for m in members.order_by("-is_primary", "department__name")
        ],
    }


class PersonUpsertApi(APIView):
    """``PUT /api/v1/org/people/<external_id>`` ``{"username"?, "email"?, "name"?, "title"?,
    "phone"?, "role"? ("admin" | "agent" | "staff"), "active"? (bool), "departments"? (list of
    department external ids; the first is primary)}`` → ``201`` (created) or ``200`` with the
    person (:func:`person_payload`) and ``"outcome"``: ``created`` / ``updated`` /
    ``unchanged``. Idempotent: the same body again is ``unchanged``. A key left out keeps its
    value. Administrators (a system key with ``org:write``, or signed in); ``403`` for others.
    ``400 invalid`` with ``field``; ``409 conflict`` for a username another person has.

    ``GET`` → ``200`` the person; ``404`` for an unknown id.
    ``DELETE`` → ``204``: removed upstream, so disabled here (history kept; idempotent)."""

    def get(self, request: Request, external_id: str) -> Response:
        _directory_admin(request)
        user = User.objects.filter(external_id=external_id).first()
        if user is None:
            raise ServiceError("not_found", _("No person has this external id."))
        return Response(person_payload(user))

    def put(self, request: Request, external_id: str) -> Response:
        _directory_admin(request)
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            raise ServiceError("invalid", _("The body is a JSON object."))
        departments = None
        if "departments" in data:
            ids = data["departments"]
            if not isinstance(ids, list) or any(not isinstance(i, str) for i in ids):
                raise ServiceError(
                    "invalid", _("departments is a list of external ids."), field="departments"
                )
            found = {d.external_id: d for d in Department.objects.filter(external_id__in=ids)}
            missing = [i for i in ids if i not in found]
            if missing:
                raise ServiceError(
                    "invalid",
                    _("Unknown departments: %(ids)s") % {"ids": ", ".join(missing[:10])},
                    field="departments",
                )
            departments = [found[i] for i in dict.fromkeys(ids)]
        user, outcome = directory.person_upsert(
            external_id=external_id, data=data, departments=departments
        )
        status = 201 if outcome == "created" else 200
        return Response({**person_payload(user), "outcome": outcome}, status=status)

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, external_id: str) -> Response:
        _directory_admin(request)
        directory.person_disable(external_id=external_id)
        return Response(status=204)


class DepartmentUpsertApi(APIView):
    """``PUT /api/v1/org/departments/<external_id>`` ``{"name", "parent"? (the parent's
    external id, or null for the root)}`` → ``201``/``200`` ``{"id", "external_id", "name",
    "parent", "outcome"}``: create, rename or move (idempotent). Administrators only (``403``);
    ``400 invalid`` with ``field`` (an unknown parent, a move under itself)."""

    def put(self, request: Request, external_id: str) -> Response:
        _directory_admin(request)
        data = request.data if isinstance(request.data, dict) else {}
        department, outcome = directory.department_upsert(
            external_id=external_id, name=data.get("name"), parent_external_id=data.get("parent")
        )
        parent = Department.objects.get_parent(department)
        return Response(
            {
                "id": department.pk,
                "external_id": department.external_id,
                "name": department.name,
                "parent": parent.external_id if parent else None,
                "outcome": outcome,
            },
            status=201 if outcome == "created" else 200,
        )
