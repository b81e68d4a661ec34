"""REST endpoints for tickets (docs/api.md §6). Thin: parse, call a service or selector, respond.

Staff endpoints use the session cookie (CSRF on unsafe methods). The widget endpoints
(``/api/v1/widget/tickets…``) take the visitor's token instead, as ``POST /api/v1/widget/session``
returned it: in the ``X-Visitor-Token`` header (or the JSON body of a POST); file downloads also
take ``?token=`` (kefu.widget_auth).
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im.api_files import serve_attachment
from kefu.models import Visitor, Workgroup
from kefu.services.visitors import visitor_from_token
from kefu.widget_auth import download_visitor, request_token
from org import limits
from org.models import User
from tickets import reports, selectors
from tickets.models import Category, Comment, Priority, Ticket
from tickets.services import comments, notifications
from tickets.services import tickets as ticket_services
from weiyu import ratelimit
from weiyu import reports as report_params
from weiyu.errors import ServiceError
from weiyu.schema import FILE, JSON_OR_CSV


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ServiceError("invalid", _("A JSON object is expected."))
    return request.data


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
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


def _detail(ticket: Ticket, request: Request, code: int = 200) -> Response:
    ticket = selectors._base().get(pk=ticket.pk)
    return Response(selectors.ticket_detail(ticket, include_internal=True), status=code)


class TicketListApi(APIView):
    """``GET /api/v1/tickets?view=&status=&priority=&q=&limit=&offset=`` → ``{"tickets":
    [ticket], "count"}``; ``view`` one of ``all`` (default), ``mine``, ``unassigned``, ``open``,
    ``pending``, ``solved``, ``at_risk``, ``breached``, ``watching``.

    ``POST /api/v1/tickets`` ``{"subject", "body", "priority"?, "assignee_id"?, "workgroup_id"?,
    "category_id"?, "tags"?, "due_at"?, "requester_user_id"?, "requester_email"?,
    "conversation_id"?}`` → 201 {ticket with comments}."""

    def get(self, request: Request) -> Response:
        view = request.query_params.get("view") or "all"
        if view not in selectors.VIEWS:
            raise ServiceError(
                "invalid",
                _("view must be one of: %(values)s.") % {"values": ", ".join(selectors.VIEWS)},
                field="view",
            )
        status_ = request.query_params.get("status") or None
        if status_ is not None and status_ not in Ticket.Status.values:
            raise ServiceError("invalid", _("Unknown status."), field="status")
        priority = request.query_params.get("priority") or None
        if priority is not None and priority not in Priority.values:
            raise ServiceError("invalid", _("Unknown priority."), field="priority")
        tickets, total = selectors.ticket_list(
            user=request.user,
            view=view,
            status=status_,
            priority=priority,
            q=(request.query_params.get("q") or "")[:200] or None,
            limit=_int(request, "limit", 50, 1, 200),
            offset=_int(request, "offset", 0, 0, 10_000_000),
        )
        return Response({"tickets": [selectors.ticket_payload(t) for t in tickets], "count": total})

    def post(self, request: Request) -> Response:
        body = _body(request)
        source = Ticket.Source.CONVERSATION if body.get("conversation_id") else Ticket.Source.API
        if request.headers.get("X-Weiyu-Client") == "inbox" and source == Ticket.Source.API:
            source = Ticket.Source.INBOX
        ticket = ticket_services.ticket_create(
            subject=body.get("subject"),
            body=body.get("body"),
            source=source,
            creator=request.user,
            requester_user_id=body.get("requester_user_id"),
            requester_email=body.get("requester_email", ""),
            priority=body.get("priority", Priority.NORMAL),
            assignee_id=body.get("assignee_id"),
            workgroup_id=body.get("workgroup_id"),
            category_id=body.get("category_id"),
            tags=body.get("tags"),
            due_at=body.get("due_at"),
            conversation_id=body.get("conversation_id"),
        )
        return _detail(ticket, request, status.HTTP_201_CREATED)


class TicketDetailApi(APIView):
    """``GET /api/v1/tickets/<id>`` → {ticket with ``comments`` and ``watchers``}.
    ``PATCH`` with any of ``subject``, ``status``, ``priority``, ``assignee_id``,
    ``workgroup_id``, ``category_id``, ``tags``, ``due_at`` → the same. 404 unless visible;
    409 ``conflict`` for a status change the rules do not allow (docs/api.md §6)."""

    def get(self, request: Request, pk: int) -> Response:
        return _detail(selectors.ticket_get(ticket_id=pk, user=request.user), request)

    def patch(self, request: Request, pk: int) -> Response:
        ticket = ticket_services.ticket_update(
            ticket_id=pk, actor=request.user, changes=_body(request)
        )
        return _detail(ticket, request)


class TicketCommentApi(APIView):
    """``POST /api/v1/tickets/<id>/comments`` ``{"body", "public"? (default true: a reply the
    requester sees; false: an internal note), "mentions"? [user ids], "attachment_ids"? [files
    uploaded with ``POST /api/v1/tickets/<id>/attachments``]}`` → 201 {comment}."""

    def post(self, request: Request, pk: int) -> Response:
        body = _body(request)
        comment = comments.comment_add(
            ticket_id=pk,
            user=request.user,
            body=body.get("body"),
            public=body.get("public", True),
            mentions=body.get("mentions"),
            attachment_ids=body.get("attachment_ids"),
        )
        return Response(selectors.comment_payload(comment), status=status.HTTP_201_CREATED)


class TicketAttachmentUploadApi(APIView):
    """``POST /api/v1/tickets/<id>/attachments`` (multipart: ``file``, ``kind``? ``file`` |
    ``image``) → 201 {attachment}; then name it in ``attachment_ids`` of a comment. Same checks
    as chat files: type by content, the tenant's size limits and blocked types (400
    ``invalid``, 413 ``too_large``)."""

    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request, pk: int) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ServiceError("invalid", _("Choose a file."), field="file")
        attachment = comments.attachment_add(
            ticket_id=pk, upload=upload, kind=request.data.get("kind") or "file", user=request.user
        )
        return Response(selectors.attachment_payload(attachment), status=status.HTTP_201_CREATED)


class TicketAttachmentApi(APIView):
    """``GET /api/v1/tickets/attachments/<id>`` (``?thumb=1`` for an image's thumbnail): a
    comment's file, to staff who can see the ticket (404 otherwise)."""

    @extend_schema(responses=FILE)
    def get(self, request: Request, pk: int) -> Any:
        attachment = selectors.comment_attachment_get(attachment_id=pk, user=request.user)
        return serve_attachment(attachment, thumbnail=bool(request.query_params.get("thumb")))


class TicketWatchApi(APIView):
    """``POST /api/v1/tickets/<id>/watch`` ``{"watching": true|false}`` → {ticket detail}."""

    def post(self, request: Request, pk: int) -> Response:
        ticket = ticket_services.ticket_watch(
            ticket_id=pk, user=request.user, watching=_body(request).get("watching")
        )
        return _detail(ticket, request)


class TicketMergeApi(APIView):
    """``POST /api/v1/tickets/<id>/merge`` ``{"into_id": 12}`` → {the target ticket}."""

    def post(self, request: Request, pk: int) -> Response:
        target = ticket_services.ticket_merge(
            source_id=pk, target_id=_body(request).get("into_id"), actor=request.user
        )
        return _detail(target, request)


class MessageSplitApi(APIView):
    """``POST /api/v1/tickets/from-message`` ``{"message_id", "subject"?}`` → 201 {ticket with
    comments}: a message of a customer conversation split off into a new ticket
    (``tickets.services.tickets.ticket_from_message``). 404 for a message of a conversation the
    caller is not (or no longer) in, 400 ``invalid`` for a note, system line or recalled one."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        ticket = ticket_services.ticket_from_message(
            message_id=body.get("message_id"), actor=request.user, subject=body.get("subject")
        )
        return _detail(ticket, request, status.HTTP_201_CREATED)


class CommentSplitApi(APIView):
    """``POST /api/v1/tickets/comments/<id>/split`` ``{"subject"?}`` → 201 {new ticket}."""

    def post(self, request: Request, pk: int) -> Response:
        ticket = ticket_services.ticket_split(
            comment_id=pk, actor=request.user, subject=_body(request).get("subject")
        )
        return _detail(ticket, request, status.HTTP_201_CREATED)


class TicketBulkApi(APIView):
    """``POST /api/v1/tickets/bulk`` ``{"ticket_ids": [..≤200], "changes": {as PATCH}}`` →
    ``{"updated": [ids], "failed": [{"id", "code", "detail"}]}``."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        changes = body.get("changes")
        if not isinstance(changes, dict):
            raise ServiceError("invalid", _("changes must be an object."), field="changes")
        return Response(
            ticket_services.tickets_bulk_update(
                ticket_ids=body.get("ticket_ids"), actor=request.user, changes=changes
            )
        )


class TicketMetaApi(APIView):
    """``GET /api/v1/tickets/meta`` → ``{"statuses": [{"value", "label"}], "priorities",
    "categories": [{"id", "name"}], "workgroups", "agents": [{"id", "name"}], "views"}`` — what
    the inbox's forms offer, in the user's language."""

    def get(self, request: Request) -> Response:
        def choices(c: Any) -> list[dict[str, str]]:
            return [{"value": v, "label": str(label)} for v, label in c.choices]

        return Response(
            {
                "statuses": choices(Ticket.Status),
                "priorities": choices(Priority),
                "categories": list(Category.objects.values("id", "name")),
                "workgroups": list(Workgroup.objects.order_by("name").values("id", "name")),
                "agents": [
                    {"id": u.pk, "name": u.name}
                    for u in User.objects.filter(
                        is_active=True, role__in=("agent", "admin")
                    ).order_by("display_name", "username")
                ],
                "views": list(selectors.VIEWS),
            }
        )


class TicketReportApi(APIView):
    """``GET /api/v1/tickets/reports?start=YYYY-MM-DD&end=YYYY-MM-DD`` (local dates, default the
    last 30 days, at most 367) → the report of :func:`tickets.reports.build` (``daily``,
    ``agents``, ``workgroups``, ``sla``, ``first_response``, ``resolution``); with
    ``&export=csv&part=<one of those>`` → that part as CSV. Agents, administrators and
    auditors see every ticket, a supervisor the tickets of the workgroups they supervise
    (:func:`tickets.selectors.report_scope`); 403 ``forbidden`` otherwise."""

    @extend_schema(responses=JSON_OR_CSV)
    def get(self, request: Request) -> Any:
        scope = selectors.report_scope(request.user)
        try:
            start, end = report_params.date_range(request.query_params)
            report = reports.build(start=start, end=end, workgroup_ids=scope)
        except ValueError:
            raise report_params.range_error(field="start") from None
        part = report_params.csv_part(
            request.query_params, reports.CSV_COLUMNS, unknown=_("Unknown report part.")
        )
        if part is not None:
            reports.export_record(user=request.user, part=part, start=start, end=end)
            return report_params.csv_response(
                reports.csv_rows(report, part), f"tickets-{part}-{start}-{end}.csv", bom=False
            )
        return Response(report)


class NotificationListApi(APIView):
    """``GET /api/v1/tickets/notifications?unread=1&limit=`` → ``{"notifications":
    [notification], "unread": n}``, newest first. ``POST …/notifications/read`` ``{"ids"?}`` →
    ``{"marked": n}`` (all unread when ``ids`` is absent)."""

    def get(self, request: Request) -> Response:
        rows, unread = selectors.notification_list_for_user(
            user=request.user,
            unread_only=request.query_params.get("unread") in ("1", "true"),
            limit=_int(request, "limit", 50, 1, 200),
        )
        return Response(
            {
                "notifications": [selectors.notification_payload(n) for n in rows],
                "unread": unread,
            }
        )


class NotificationReadApi(APIView):
    def post(self, request: Request) -> Response:
        marked = notifications.notifications_mark_read(
            user=request.user, ids=_body(request).get("ids")
        )
        return Response({"marked": marked})


# --- the widget: the requesting visitor ---------------------------------------------------------


WIDGET_FILES = "/api/v1/widget/tickets/attachments/"


def _visitor_payload(ticket: Ticket) -> dict[str, Any]:
    data = selectors.ticket_payload(ticket)
    visible = ("id", "number", "subject", "status", "created_at", "updated_at", "solved_at")
    out = {k: data[k] for k in visible}
    comments = (
        ticket.comments.filter(public=True)
        .select_related("author_user", "author_visitor")
        .prefetch_related("attachments")
    )
    out["comments"] = [
        {
            **selectors.comment_payload(c, files_base=WIDGET_FILES),
            "mine": c.author_visitor_id == ticket.requester_visitor_id,
        }
        for c in comments
    ]
    return out


def _ticket_limit(request: Request, visitor: Visitor) -> None:
    """Count a ticket or comment of an anonymous visitor, or raise ``RateLimitedError``."""
    ratelimit.check(
        limits.ticket_create(
            limits.effective(), visitor_id=visitor.pk, ip=request.META.get("REMOTE_ADDR", "")
        )
    )


class WidgetTicketsApi(APIView):
    """``GET /api/v1/widget/tickets`` (``X-Visitor-Token`` header) → ``{"tickets": [{"id", "number", "subject",
    "status", "created_at", "updated_at", "solved_at", "comments": [comment + "mine"]}]}`` (public
    replies only). ``POST`` ``{"token", "body", "subject"?, "name"?, "email"?}`` → 201 {that
    ticket}: leave a message (KF-4), which becomes a ticket of the channel's workgroup.
    401 ``invalid_token``; 429 ``rate_limited`` (tickets and comments per visitor or per address
    and hour: ``org.limits.ticket_create``; ``Retry-After``)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        visitor = visitor_from_token(request_token(request))
        return Response(
            {
                "tickets": [
                    _visitor_payload(t) for t in selectors.visitor_tickets(visitor_id=visitor.pk)
                ]
            }
        )

    def post(self, request: Request) -> Response:
        body = _body(request)
        visitor = visitor_from_token(request_token(request))
        _ticket_limit(request, visitor)
        ticket = ticket_services.ticket_leave_message(
            visitor=visitor,
            body=body.get("body"),
            subject=body.get("subject"),
            name=body.get("name"),
            email=body.get("email"),
        )
        return Response(_visitor_payload(ticket), status=status.HTTP_201_CREATED)


class WidgetTicketCommentApi(APIView):
    """``POST /api/v1/widget/tickets/<id>/comments`` ``{"token", "body", "attachment_ids"?}`` →
    201 {ticket}: the requester answers; a pending or solved ticket opens again. 429
    ``rate_limited`` as a new ticket (the same hourly count)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request, pk: int) -> Response:
        body = _body(request)
        visitor = visitor_from_token(request_token(request))
        _ticket_limit(request, visitor)
        comment: Comment = comments.comment_add(
            ticket_id=pk,
            visitor=visitor,
            body=body.get("body"),
            attachment_ids=body.get("attachment_ids"),
        )
        ticket = selectors._base().get(pk=comment.ticket_id)
        return Response(_visitor_payload(ticket), status=status.HTTP_201_CREATED)


class WidgetAttachmentUploadApi(APIView):
    """``POST /api/v1/widget/tickets/<id>/attachments`` (multipart: ``token``, ``file``,
    ``kind``?) → 201 {attachment} on one's own ticket; then name it in ``attachment_ids``. 429
    ``rate_limited``: the widget's upload limits (``org.limits.upload``) count these too."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request, pk: int) -> Response:
        visitor = visitor_from_token(request_token(request))
        upload = request.FILES.get("file")
        if upload is None:
            raise ServiceError("invalid", _("Choose a file."), field="file")
        who = f"{visitor.pk}.{int(visitor.created_at.timestamp())}"
        counted = limits.upload(
            limits.effective(),
            visitor_id=who,
            ip=request.META.get("REMOTE_ADDR", ""),
            size=upload.size or 0,
        )
        at = ratelimit.check(counted)
        try:
            attachment = comments.attachment_add(
                ticket_id=pk,
                upload=upload,
                kind=request.data.get("kind") or "file",
                visitor=visitor,
            )
        except ServiceError:
            ratelimit.give_back(counted, at=at)
            raise
        return Response(
            selectors.attachment_payload(attachment, base=WIDGET_FILES),
            status=status.HTTP_201_CREATED,
        )


class WidgetAttachmentApi(APIView):
    """``GET /api/v1/widget/tickets/attachments/<id>?ft=<files token>`` (or ``?token=``;
    ``&thumb=1``): a file of a public
    comment on one's own ticket (404 otherwise)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(responses=FILE)
    def get(self, request: Request, pk: int) -> Any:
        visitor = download_visitor(request)
        attachment = selectors.comment_attachment_get(attachment_id=pk, visitor=visitor)
        return serve_attachment(attachment, thumbnail=bool(request.query_params.get("thumb")))


urlpatterns = [
    path("tickets", TicketListApi.as_view(), name="ticket-list"),
    path("tickets/meta", TicketMetaApi.as_view(), name="ticket-meta"),
    path("tickets/reports", TicketReportApi.as_view(), name="ticket-reports"),
    path("tickets/bulk", TicketBulkApi.as_view(), name="ticket-bulk"),
    path("tickets/notifications", NotificationListApi.as_view(), name="notification-list"),
    path("tickets/notifications/read", NotificationReadApi.as_view(), name="notification-read"),
    path("tickets/comments/<int:pk>/split", CommentSplitApi.as_view(), name="comment-split"),
    path("tickets/from-message", MessageSplitApi.as_view(), name="ticket-from-message"),
    path("tickets/<int:pk>", TicketDetailApi.as_view(), name="ticket-detail"),
    path("tickets/<int:pk>/comments", TicketCommentApi.as_view(), name="ticket-comments"),
    path("tickets/<int:pk>/merge", TicketMergeApi.as_view(), name="ticket-merge"),
    path("tickets/<int:pk>/watch", TicketWatchApi.as_view(), name="ticket-watch"),
    path(
        "tickets/<int:pk>/attachments",
        TicketAttachmentUploadApi.as_view(),
        name="ticket-attachment-upload",
    ),
    path("tickets/attachments/<int:pk>", TicketAttachmentApi.as_view(), name="ticket-attachment"),
    path(
        "widget/tickets/<int:pk>/attachments",
        WidgetAttachmentUploadApi.as_view(),
        name="widget-ticket-attachment-upload",
    ),
    path(
        "widget/tickets/attachments/<int:pk>",
        WidgetAttachmentApi.as_view(),
        name="widget-ticket-attachment",
    ),
    path("widget/tickets", WidgetTicketsApi.as_view(), name="widget-tickets"),
    path(
        "widget/tickets/<int:pk>/comments",
        WidgetTicketCommentApi.as_view(),
        name="widget-ticket-comments",
    ),
]
