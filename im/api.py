"""REST endpoints for conversations and groups (docs/api.md §2). Thin: parse, call a service or
selector, respond with the shared serializers. Session-cookie auth (CSRF on unsafe methods)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im import selectors
from im.hooks import payload_parts_add
from im.serializers import group_member_payload
from im.services import conversations, groups
from weiyu.errors import ServiceError
from weiyu.schema import NO_CONTENT


def _body(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise ServiceError("invalid", _("A JSON object is expected."))
    return data


def _conversation(request: Request, conversation_id: int) -> Response:
    """The conversation as the caller sees it, whole: with the parts other apps add to its kind
    (a customer conversation's ``session``, im.hooks.payload_part_register)."""
    member_key = request.user.member_key
    payload = selectors.conversation_payload_for_member(
        conversation_id=conversation_id, member_key=member_key
    )
    payload_parts_add([payload], member_key=member_key)
    return Response(payload)


class DirectConversationOpenApi(APIView):
    """``POST /api/v1/im/conversations/direct`` ``{"user_id": 7}`` → 200 {conversation}: the 1:1
    chat with that person, created on first use. 400 ``invalid`` for oneself or an unknown user."""

    def post(self, request: Request) -> Response:
        conversation = groups.direct_get_or_create(
            user=request.user, other_user_id=_body(request).get("user_id")
        )
        return _conversation(request, conversation.pk)


class ConversationDetailApi(APIView):
    """``GET /api/v1/im/conversations/<id>`` → {conversation}; 404 unless a member."""

    def get(self, request: Request, pk: int) -> Response:
        return _conversation(request, pk)


class ConversationSettingsApi(APIView):
    """``PATCH /api/v1/im/conversations/<id>/settings`` with any of ``pinned``,
    ``notifications_off``, ``archived`` (booleans) → {conversation}. The caller's own view only."""

    def patch(self, request: Request, pk: int) -> Response:
        body = _body(request)
        conversations.member_settings_update(
            conversation_id=pk,
            member_key=request.user.member_key,
            pinned=body.get("pinned"),
            notifications_off=body.get("notifications_off"),
            archived=body.get("archived"),
        )
        return _conversation(request, pk)


class GroupCreateApi(APIView):
    """``POST /api/v1/im/groups`` ``{"title", "member_ids", "category"?, "announcement"?,
    "avatar_id"?}`` → 201 {conversation}. 409 ``conflict`` over the group size limit."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        conversation = groups.group_create(
            creator=request.user,
            title=body.get("title"),
            member_ids=body.get("member_ids"),
            category=body.get("category"),
            announcement=body.get("announcement"),
            avatar_id=body.get("avatar_id"),
        )
        response = _conversation(request, conversation.pk)
        response.status_code = status.HTTP_201_CREATED
        return response


class GroupDetailApi(APIView):
    """``PATCH /api/v1/im/groups/<id>`` (owner, admins) → {conversation};
    ``DELETE`` dissolves the group (owner) → 204."""

    def patch(self, request: Request, pk: int) -> Response:
        groups.group_update(actor=request.user, conversation_id=pk, changes=_body(request))
        return _conversation(request, pk)

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        groups.group_dissolve(actor=request.user, conversation_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupMembersApi(APIView):
    """``GET /api/v1/im/groups/<id>/members`` → ``{"members": [...], "count"}``;
    ``POST`` ``{"user_ids": [...]}`` invites (owner, admins) → ``{"members": [added...]}``."""

    def get(self, request: Request, pk: int) -> Response:
        members = groups.group_members_list(actor=request.user, conversation_id=pk)
        return Response(
            {"members": [group_member_payload(p) for p in members], "count": len(members)}
        )

    def post(self, request: Request, pk: int) -> Response:
        added = groups.group_members_add(
            actor=request.user, conversation_id=pk, user_ids=_body(request).get("user_ids")
        )
        return Response({"members": [group_member_payload(p) for p in added]})


class GroupMemberApi(APIView):
    """``PATCH /api/v1/im/groups/<id>/members/<user_id>`` ``{"role"?, "muted_minutes"?}`` →
    {group member}; ``DELETE`` removes the member (or leaves, for oneself) → 204."""

    def patch(self, request: Request, pk: int, user_id: int) -> Response:
        body = _body(request)
        member = groups.group_member_update(
            actor=request.user,
            conversation_id=pk,
            user_id=user_id,
            role=body.get("role"),
            muted_minutes=body.get("muted_minutes"),
        )
        return Response(group_member_payload(member))

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int, user_id: int) -> Response:
        groups.group_member_remove(actor=request.user, conversation_id=pk, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupOwnerApi(APIView):
    """``POST /api/v1/im/groups/<id>/owner`` ``{"user_id"}`` (owner) → {conversation}."""

    def post(self, request: Request, pk: int) -> Response:
        groups.group_owner_transfer(
            actor=request.user, conversation_id=pk, user_id=_body(request).get("user_id")
        )
        return _conversation(request, pk)


urlpatterns = [
    path("conversations/direct", DirectConversationOpenApi.as_view(), name="direct-open"),
    path("conversations/<int:pk>", ConversationDetailApi.as_view(), name="conversation-detail"),
    path(
        "conversations/<int:pk>/settings",
        ConversationSettingsApi.as_view(),
        name="conversation-settings",
    ),
    path("groups", GroupCreateApi.as_view(), name="group-create"),
    path("groups/<int:pk>", GroupDetailApi.as_view(), name="group-detail"),
    path("groups/<int:pk>/members", GroupMembersApi.as_view(), name="group-members"),
    path("groups/<int:pk>/members/<int:user_id>", GroupMemberApi.as_view(), name="group-member"),
    path("groups/<int:pk>/owner", GroupOwnerApi.as_view(), name="group-owner"),
]
