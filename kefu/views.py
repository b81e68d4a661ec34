"""Pages and the widget API served on a tenant's domain."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import cache_control
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from im.api_files import serve_attachment
from im.models import Attachment, MessagingSettings
from im.serializers import attachment_payload
from kbase import llm
from kefu import exports, hours, monitor, selectors, senders, transcripts, widget_auth
from kefu.models import Channel
from kefu.robot import persona as robot_persona
from kefu.services import blocking, routing
from kefu.services import files as visitor_files
from kefu.services import visitors as kefu_visitors
from org import alerts, apikeys, limits, push
from org.account_views import SECURITY_PATH, TwoFactorLoginView
from org.models import ApiKey, PushSubscription
from tenants import branding, quotas
from weiyu import ratelimit
from weiyu.errors import ServiceError
from weiyu.schema import FILE


def _language_from(value: str) -> str:
    return "en" if value.lower().startswith("en") else "zh-hans"


@require_GET
def demo_site(request: HttpRequest) -> HttpResponse:
    """``GET /`` (``?channel=<public key>``): the tenant's home page — its name, links to the
    help center, the agent inbox and the back office — carrying the widget of that channel, or
    of the tenant's first active channel, with its snippet; without any active channel, the
    same page without a widget. The page links to the tenant's other channels, so each service
    mode can be tried (it is also the channel's preview page, :func:`kefu.embed.preview_url`)."""
    channels = list(Channel.objects.filter(is_active=True, kind=Channel.Kind.WIDGET).order_by("id"))
    wanted = request.GET.get("channel", "")
    channel = next(
        (c for c in channels if c.public_key == wanted), channels[0] if channels else None
    )
    return render(
        request,
        "kefu/demo_site.html",
        {
            "tenant_name": request.tenant.name,
            "channel_key": channel.public_key if channel else "",
            "channel": channel,
            "channels": channels if len(channels) > 1 else [],
            "widget_src": "/widget.js",
        },
    )


@cache
def _widget_source() -> bytes:
    return (Path(settings.BASE_DIR) / "static" / "widget" / "widget.js").read_bytes()


@cache
def _push_worker_source() -> bytes:
    return (Path(settings.BASE_DIR) / "static" / "inbox" / "push_sw.js").read_bytes()


@require_GET
@cache_control(no_cache=True)
def push_worker_js(request: HttpRequest) -> HttpResponse:
    """``GET /inbox/push-sw.js``: the inbox's service worker, which shows web push alerts and
    opens the inbox on a click (docs/inbox.md, "Alerts when away"). Served here, not under
    ``/static/``, so that its scope may be ``/inbox/``; revalidated on every update check."""
    source = _push_worker_source() if not settings.DEBUG else _push_worker_source.__wrapped__()
    return HttpResponse(source, content_type="text/javascript; charset=utf-8")


@require_GET
@cache_control(public=True, max_age=300)
def widget_js(request: HttpRequest) -> HttpResponse:
    """``GET /widget.js``: the loader embedded by the one-line snippet (docs/protocol.md)."""
    source = _widget_source() if not settings.DEBUG else _widget_source.__wrapped__()
    return HttpResponse(source, content_type="text/javascript; charset=utf-8")


@require_GET
@xframe_options_exempt
@csp_update({"frame-ancestors": ["*"]})
def widget_frame(request: HttpRequest) -> HttpResponse:
    """``GET /widget/frame/?channel=…&lang=…&page_url=…&referrer=…``: the chat UI in the iframe.

    Framable by any site (the widget lives on the tenant's own website): no ``X-Frame-Options``,
    and its Content-Security-Policy lets any page frame it.
    """
    try:
        channel = selectors.channel_get_active(public_key=request.GET.get("channel"))
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    language = _language_from(request.GET.get("lang", ""))
    limits = MessagingSettings.current()
    brand = branding.brand_get(tenant_id=request.tenant.pk)
    translation.activate(language)
    request.LANGUAGE_CODE = language
    config = {
        "channel": channel.public_key,
        "session_url": "/api/v1/widget/session",
        "tickets_url": "/api/v1/widget/tickets",
        "profile_url": "/api/v1/widget/profile",
        "identify_url": "/api/v1/widget/identify",
        "transcript_url": "/api/v1/widget/transcript",
        "ws_path": "/ws/visitor/",
        "files_url": reverse("kefu:widget-files"),
        "max_file_bytes": limits.max_file_bytes,
        "max_image_bytes": limits.max_image_bytes,
        "page_url": request.GET.get("page_url", "")[:2000],
        "page_title": request.GET.get("page_title", "")[:200],
        "referrer": request.GET.get("referrer", "")[:2000],
        "language": request.GET.get("lang", "")[:16],
        # the channel's own colour, else the tenant's brand (tenants.branding)
        "color": branding.widget_color(channel_color=channel.color, brand=brand),
        "accent_color": brand.accent_color,
    }
    return render(
        request,
        "kefu/widget_frame.html",
        {"lang": language, "config": config, "channel": channel, "brand": brand},
    )


class WidgetSessionApi(APIView):
    """``POST /api/v1/widget/session``: create or resume a visitor (docs/protocol.md §1).

    Body ``{"channel", "token"?, "page_url"?, "page_title"?, "referrer"?, "language"?}`` (the
    page goes on the visitor's trail); response
    ``{"token", "visitor", "channel", "ws_path", "agents_online", "open", "opens_at", "robot",
    "departments"}`` (``agents_online``: the channel's workgroup is within its work hours and an
    agent of it is online with an inbox open, and the tenant takes conversations — not suspended,
    its plan's conversations of the month not used up; when not, the widget offers to leave a
    message; ``open``/``opens_at``:
    the work hours; ``robot``: ``{"name", "greeting", "handover"}`` on robot channels, else
    null).
    Errors: 400 ``invalid``, 404 ``not_found``, 429 ``rate_limited`` (sessions per address, or
    the tenant's, per minute: ``org.limits.session_start``; ``Retry-After``).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        ratelimit.check(
            limits.session_start(limits.effective(), ip=request.META.get("REMOTE_ADDR", ""))
        )
        data = request.data
        if not isinstance(data, dict):
            raise ServiceError("invalid", _("The body must be a JSON object."))
        channel = selectors.channel_get_active(public_key=data.get("channel"))
        visitor, token = kefu_visitors.visitor_start(
            channel=channel,
            token=data.get("token"),
            ip_address=request.META.get("REMOTE_ADDR"),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            page_url=data.get("page_url", ""),
            referrer=data.get("referrer", ""),
            language=data.get("language", ""),
            zone=data.get("timezone", ""),
        )
        if blocking.is_blocked(visitor_id=visitor.pk, ip=request.META.get("REMOTE_ADDR")):
            raise ServiceError("forbidden", _("You cannot chat here."))
        kefu_visitors.page_view_record(
            visitor=visitor, url=data.get("page_url", ""), title=data.get("page_title", "")
        )
        return Response(_session_answer(request, channel, visitor, token))


def _session_answer(request: Request, channel: Any, visitor: Any, token: str) -> dict[str, Any]:
    """The answer of ``POST /api/v1/widget/session`` (and of ``identify``) for ``visitor``."""
    is_open, opens_at = hours.workgroup_hours(calendar_id=channel.workgroup.calendar_id)
    # a suspended tenant, or one whose plan takes no more conversations this month: nobody
    # answers, the widget offers the leave-a-message form (tenants.middleware, quotas)
    accepting = request.tenant.is_active and quotas.remaining("conversations") != 0
    return {
        "token": token,
        "visitor": transcripts.visitor_payload(visitor),
        "prechat": channel.prechat,
        "channel": {
            "key": channel.public_key,
            "name": channel.name,
            "title": channel.title or channel.name,
            "welcome_text": channel.welcome_text,
            "color": branding.widget_color(
                channel_color=channel.color, brand=branding.brand_get(tenant_id=request.tenant.pk)
            ),
            "mode": channel.mode,
        },
        "robot": robot_persona.widget_info(channel, senders.robot_language(visitor))
        if accepting
        else None,
        "departments": routing.departments(channel),
        "ws_path": "/ws/visitor/",
        "files_token": widget_auth.files_token(visitor),
        "agents_online": accepting
        and is_open
        and selectors.workgroup_has_online_agent(workgroup_id=channel.workgroup_id),
        "open": is_open,
        "opens_at": opens_at.isoformat() if opens_at and not is_open else None,
    }


class WidgetIdentifyApi(APIView):
    """``POST /api/v1/widget/identify`` ``{"token", "identity": {"id", "name"?, "email"?,
    "phone"?, "attributes"?}, "hmac"?}`` (``Weiyu.identify`` on the host page; docs/protocol.md,
    "Known customers") → the answer of ``/api/v1/widget/session`` for the contact this browser
    now is: with a valid ``hmac`` (hex HMAC-SHA256 of ``id`` under the channel's identity
    secret) the channel's one contact of that customer, with its token and history. Errors:
    401 ``invalid_token``; 403 ``forbidden`` (``field`` = ``hmac``: the HMAC does not verify, or
    the channel requires one); 400 ``invalid`` with ``field``; 429 as the session."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        ratelimit.check(
            limits.session_start(limits.effective(), ip=request.META.get("REMOTE_ADDR", ""))
        )
        data = request.data
        if not isinstance(data, dict):
            raise ServiceError("invalid", _("The body must be a JSON object."))
        visitor = kefu_visitors.visitor_from_token(widget_auth.request_token(request))
        contact, token = kefu_visitors.visitor_identify(
            visitor=visitor, identity=data.get("identity"), hmac_hex=data.get("hmac")
        )
        if blocking.is_blocked(visitor_id=contact.pk, ip=request.META.get("REMOTE_ADDR")):
            raise ServiceError("forbidden", _("You cannot chat here."))
        return Response(_session_answer(request, contact.channel, contact, token))


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """``GET /inbox/``: the agent inbox (sign-in required)."""
    user = request.user
    limits = MessagingSettings.current()
    config = {
        "ws_path": "/ws/agent/",
        "recall_window_s": limits.recall_window_s,
        "max_file_bytes": limits.max_file_bytes,
        "max_image_bytes": limits.max_image_bytes,
        "user": {
            "id": user.pk,
            "key": user.member_key,
            "name": user.name,
            "is_agent": user.is_agent,
            "is_admin": user.is_admin,
            "language": user.language,
        },
        "logout_url": "/inbox/logout/",
        "security_url": SECURITY_PATH,
        "admin_url": "/admin/" if user.is_staff else None,
        "ai_drafts": llm.configured(),
        "monitor_url": "/inbox/monitor/" if monitor.is_supervisor(user) else None,
        "tokens_url": "/inbox/tokens/" if user.is_agent or user.is_superuser else None,
        "alerts_url": "/inbox/alerts/",
    }
    return render(request, "kefu/inbox.html", {"config": config})


class InboxLoginView(TwoFactorLoginView):
    """``/inbox/login/``: sign in (Django auth; then ``/inbox/login/code/`` when the user has
    two-factor sign-in on, org.account_views)."""

    template_name = "kefu/inbox_login.html"
    redirect_authenticated_user = True


class InboxLogoutView(auth_views.LogoutView):
    """``POST /inbox/logout/``: sign out, back to the sign-in page."""

    next_page = "kefu:inbox-login"


@login_required
def monitor_page(request: HttpRequest) -> HttpResponse:
    """``GET /inbox/monitor/``: the supervisors' live monitor (403 for others)."""
    if not monitor.is_supervisor(request.user):
        raise PermissionDenied
    return render(request, "kefu/monitor.html", {"config": {"api": "/api/v1/kefu/monitor"}})


@login_required
def monitor_transcript(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """``GET /inbox/monitor/conversations/<id>/``: a customer conversation, read-only, for
    supervisors (403 for others, 404 for an unknown conversation)."""
    try:
        data = monitor.transcript(user=request.user, conversation_id=conversation_id)
    except ServiceError as exc:
        if exc.code == "forbidden":
            raise PermissionDenied from exc
        raise Http404(exc.message) from exc
    return render(request, "kefu/monitor_transcript.html", {"t": data})


#: the boards of ``/inbox/kanban/``: ``?board=`` value → its heading
KANBAN_BOARDS = ("tickets", "status", "labels")


@login_required
def kanban_page(request: HttpRequest) -> HttpResponse:
    """``GET /inbox/kanban/?board=tickets|status|labels``: a Kanban board (docs/inbox.md,
    "Kanban"). ``tickets`` (the default): the tickets, one column per status, moved through the
    tickets API. ``status``: the customer conversations the agent's list shows, in Open,
    Snoozed and Closed (moves snooze, unsnooze or close them); ``labels``: the live ones in one
    column per label and one without (moves swap the label). Conversation boards follow the
    push events of a watching socket (``/ws/agent/?watch=1``), so they stay live without making
    the agent available. Agents only (403); an unknown board is the tickets'."""
    if not (request.user.is_agent or request.user.is_superuser):
        raise PermissionDenied
    board = request.GET.get("board")
    if board not in KANBAN_BOARDS:
        board = "tickets"
    config = {"user": {"id": request.user.pk}, "board": board, "ws_path": "/ws/agent/?watch=1"}
    return render(request, "kefu/kanban.html", {"config": config, "board": board})


@login_required
def conversation_print(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """``GET /inbox/conversations/<id>/print/``: the printable transcript of a customer
    conversation (print CSS; the browser's "Save as PDF" makes the PDF). Agents in it and
    supervisors; 404 for anyone else (``kefu.exports.conversation_export``)."""
    try:
        data = exports.conversation_export(user=request.user, conversation_id=conversation_id)
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    return render(request, "kefu/transcript_print.html", {"t": data})


class WidgetProfileApi(APIView):
    """``POST /api/v1/widget/profile`` ``{"token", "name"?, "email"?, "phone"?}`` → 200
    ``{"visitor": {"id", "key", "name", "email", "phone", "profile_done"}}``: the pre-chat form
    (every field of the channel's ``prechat`` is required). 400 ``invalid`` with the field,
    401 ``invalid_token``."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise ServiceError("invalid", _("The body must be a JSON object."))
        visitor = kefu_visitors.visitor_from_token(widget_auth.request_token(request))
        visitor = transcripts.profile_update(
            visitor=visitor, name=data.get("name"), email=data.get("email"), phone=data.get("phone")
        )
        return Response({"visitor": transcripts.visitor_payload(visitor)})


class WidgetTranscriptApi(APIView):
    """``POST /api/v1/widget/transcript`` ``{"token", "conversation_id", "email"?}`` → 202
    ``{"email"}``: the conversation's transcript is e-mailed (by a worker) to ``email``, or to
    the address the visitor gave. 400 ``invalid`` (no or bad address), 404 not the visitor's,
    409 ``conflict`` asked again within 5 minutes, 401 ``invalid_token``, 429 ``rate_limited``
    (e-mails per visitor or per address per day: ``org.limits.transcript_email``)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise ServiceError("invalid", _("The body must be a JSON object."))
        visitor = kefu_visitors.visitor_from_token(widget_auth.request_token(request))
        address = transcripts.transcript_request(
            visitor=visitor, conversation_id=data.get("conversation_id"), email=data.get("email")
        )
        return Response({"email": address}, status=202)


class WidgetFileUploadApi(APIView):
    """``POST /api/v1/widget/files`` (multipart): ``token``, ``file``, ``kind`` (``image`` |
    ``voice`` | ``video`` | ``file``), ``conversation_id``? (omit before the first message) →
    201 {attachment} (``im.serializers.attachment_payload`` with ``url``/``thumbnail_url`` of
    :class:`WidgetFileApi`); then send it with ``message.send`` (``msg_type`` = ``kind``,
    ``attachment_id``). The size limits, type checks and storage of staff uploads apply
    (``kefu.services.files``).

    Errors: 400 ``invalid``, 401 ``invalid_token``, 403 ``forbidden`` (blocked), 404
    ``not_found``, 409 ``conversation_closed``, 413 ``too_large``, 429 ``rate_limited`` (files
    or bytes per visitor or per address and hour; ``Retry-After`` header and ``retry_after`` in
    seconds).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request) -> Response:
        visitor = kefu_visitors.visitor_from_token(widget_auth.request_token(request))
        upload = request.FILES.get("file")
        if upload is None:
            raise ServiceError("invalid", _("Choose a file."), field="file")
        attachment = visitor_files.visitor_attachment_upload(
            visitor=visitor,
            upload=upload,
            kind=request.data.get("kind") or "file",
            conversation_id=request.data.get("conversation_id"),
            ip=request.META.get("REMOTE_ADDR", ""),
        )
        return Response(widget_attachment_payload(attachment), status=201)


class WidgetFileApi(APIView):
    """``GET /api/v1/widget/files/<id>?ft=<files token>`` (or ``?token=``; ``&thumb=1`` for an
    image's thumbnail): a file
    of a conversation the visitor is in, that it sent or received in a public message (never an
    internal note's). Served like staff downloads (``nosniff``, sandboxing CSP; a download
    unless image, audio or video). 401 ``invalid_token`` without a valid token, 404 otherwise.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(responses=FILE)
    def get(self, request: Request, pk: int) -> HttpResponse:
        visitor = widget_auth.download_visitor(request)
        attachment = visitor_files.visitor_attachment_get(visitor=visitor, attachment_id=pk)
        return serve_attachment(attachment, thumbnail=bool(request.query_params.get("thumb")))


def widget_attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """``attachment_payload`` with the widget's URLs (without a token, which the widget
    appends: ``?ft=<files token>``)."""
    data = attachment_payload(attachment)
    url = reverse("kefu:widget-file", args=[attachment.pk])
    data["url"] = url
    data["thumbnail_url"] = f"{url}?thumb=1" if attachment.thumbnail else None
    return data


@login_required
def tokens_page(request: HttpRequest) -> HttpResponse:
    """``/inbox/tokens/``: an agent's personal API tokens (docs/api.md §0), without JavaScript.

    GET lists them; POST ``action=create`` with ``name``, ``scopes`` (repeated), ``days``
    (optional: expires after that many days, 1-3650) and ``allowed_ips`` makes one and shows its
    token on the answer, once (``no-store``); POST ``action=revoke`` with ``id`` revokes one of
    the caller's. 403 for staff who are not agents; form errors are shown on the page (400)."""
    user = request.user
    if not (user.is_agent or user.is_superuser):
        raise PermissionDenied
    created, error, status = None, None, 200
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "create":
                created = _token_create(request)
            elif action == "revoke":
                key = ApiKey.objects.filter(
                    pk=_int(request.POST.get("id")), user=user, kind=ApiKey.Kind.PERSONAL
                ).first()
                if key is None:
                    raise ServiceError("not_found", _("No such token."))
                apikeys.api_key_revoke(key=key)
        except ServiceError as exc:
            error, status = exc.message, exc.http_status
    keys = ApiKey.objects.filter(user=user, kind=ApiKey.Kind.PERSONAL)
    scopes = [
        (f"{family}:{access}", label, access_label)
        for family, label in apikeys.FAMILIES.items()
        for access, access_label in apikeys.ACCESS.items()
    ]
    response = render(
        request,
        "kefu/tokens.html",
        {"keys": keys, "created": created, "error": error, "scopes": scopes},
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


#: the push kinds of the alerts page's form, with their labels
_ALERT_KINDS = {
    "assignment": gettext_lazy("A conversation or ticket is assigned to me"),
    "transfer": gettext_lazy("A colleague asks me to take over a conversation"),
    "mention": gettext_lazy("Someone @mentions me (team chat, internal notes, tickets)"),
    "sla": gettext_lazy("A ticket of mine is about to breach, or breached, its SLA"),
}


@login_required
def alerts_page(request: HttpRequest) -> HttpResponse:
    """``/inbox/alerts/``: the signed-in person's alerts when away (docs/inbox.md).

    GET shows the preferences (:class:`org.models.AlertPreferences`) and the "Enable
    notifications" control of this browser (static/inbox/alerts.js subscribes with the Push API
    and posts to ``/api/v1/org/me/push-subscriptions``). POST (the form) saves ``push``
    (repeated: the kinds on), ``digest_after_minutes`` (0-1440) and ``quiet_when_inbox_open``;
    a bad value is shown on the page (400)."""
    user = request.user
    error, status, saved = None, 200, False
    if request.method == "POST":
        minutes = (request.POST.get("digest_after_minutes") or "").strip()
        data = {
            "push": {kind: kind in request.POST.getlist("push") for kind in alerts.KINDS},
            "digest_after_minutes": int(minutes) if minutes.isdigit() else -1,
            "quiet_when_inbox_open": request.POST.get("quiet_when_inbox_open") == "on",
        }
        try:
            alerts.preferences_set(user=user, data=data)
            saved = True
        except ServiceError as exc:
            error, status = exc.message, exc.http_status
    prefs = alerts.preferences_for(user)
    payload = alerts.preferences_payload(prefs)
    config = {
        "vapid_public_key": push.vapid_public_key(),
        "subscriptions_url": "/api/v1/org/me/push-subscriptions",
        "worker_url": "/inbox/push-sw.js",
        "scope": "/inbox/",
        # this person's subscribed browsers: the page says "on" only for one of them (a
        # browser whose session ended keeps its subscription, but gets nothing any more)
        "endpoints": list(
            PushSubscription.objects.filter(user=user).values_list("endpoint", flat=True)
        ),
    }
    kinds = [(kind, label, payload["push"][kind]) for kind, label in _ALERT_KINDS.items()]
    response = render(
        request,
        "kefu/alerts.html",
        {
            "config": config,
            "prefs": prefs,
            "kinds": kinds,
            "browsers": PushSubscription.objects.filter(user=user).count(),
            "error": error,
            "saved": saved,
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def _token_create(request: HttpRequest) -> dict[str, Any]:
    days = (request.POST.get("days") or "").strip()
    expires_at = None
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 3650:
            raise ServiceError("invalid", _("Expires after 1 to 3650 days."), field="days")
        expires_at = timezone.now() + timedelta(days=int(days))
    key, token = apikeys.api_key_create(
        kind=ApiKey.Kind.PERSONAL,
        user=request.user,
        name=request.POST.get("name", ""),
        scopes=request.POST.getlist("scopes"),
        expires_at=expires_at,
        allowed_ips=request.POST.get("allowed_ips", ""),
    )
    return {"key": key, "token": token}
