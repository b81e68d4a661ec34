"""The two websocket endpoints: ``/ws/agent/`` (agents and staff) and ``/ws/visitor/``."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from types import SimpleNamespace
from typing import Any, ClassVar
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string
from django.utils.translation import get_supported_language_variant
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import parse_accept_lang_header

from im.consumers import MemberConsumer, _int_field
from im.senders import Sender
from kefu import csat, presence, selectors, senders, widget_auth
from kefu.robot import feedback as robot_feedback
from kefu.robot import handover as robot_handover
from kefu.services import agents as kefu_agents
from kefu.services import messages as kefu_messages
from kefu.services import sessions, visitors
from org import limits, twofactor
from weiyu import ratelimit
from weiyu.clientaddr import client_ip
from weiyu.errors import ServiceError


def session_key_from_scope(scope: dict[str, Any]) -> str | None:
    """The Django session key in the handshake's ``Cookie`` header, or None."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except CookieError:
                return None
            morsel = cookie.get(settings.SESSION_COOKIE_NAME)
            return morsel.value if morsel else None
    return None


def session_member(session_key: str | None) -> tuple[Any, bool]:
    """The user signed in by that session in the current schema (``AnonymousUser`` when there
    is none) and whether the session may use the inbox: False when the tenant requires two factors of the user and the session gave none
    (``org.twofactor.session_allowed``). Call it inside the tenant (:meth:`MemberConsumer.db`)."""
    if not session_key:
        return AnonymousUser(), False
    store = import_string(settings.SESSION_ENGINE + ".SessionStore")(session_key)
    user = get_user(SimpleNamespace(session=store))
    allowed = user.is_authenticated and twofactor.session_allowed(store, user)
    return user, allowed


def _browser_language(scope: dict[str, Any]) -> str:
    """The first of ``settings.LANGUAGES`` the handshake's Accept-Language asks for (as Django's
    LocaleMiddleware picks for pages), else ``settings.LANGUAGE_CODE``."""
    headers = dict(scope.get("headers") or [])
    header = headers.get(b"accept-language", b"").decode("latin-1")[:500]
    for code, _q in parse_accept_lang_header(header):
        if code == "*":
            break
        try:
            return get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class AgentConsumer(MemberConsumer):
    """An agent's (or staff member's) inbox socket, authenticated by the session cookie.

    The session is read after the handshake is accepted, in the tenant's schema (not by a
    middleware before it): in a reconnect storm the lookup waits behind every other socket's
    database work, and daphne drops a handshake still unaccepted after 5 s (docs/benchmarks.md,
    "Connections").

    A *watching* socket (``/ws/agent/?watch=1``: the Kanban board) receives the same events but
    does not count as an open inbox: the agent is not marked connected (available for new
    conversations) because of it.
    """

    handlers: ClassVar[dict[str, str]] = {
        **MemberConsumer.handlers,
        "conversation.close": "on_conversation_close",
        "agent.status": "on_agent_status",
    }

    async def authenticate(self) -> Sender:
        session_key = session_key_from_scope(self.scope)
        user, allowed = await self.db(session_member, session_key)
        if user is None or not user.is_authenticated or not user.is_active:
            raise ServiceError("unauthorized", _("Please sign in."))
        if not allowed:
            raise ServiceError(
                "two_factor_required",
                _("Turn on two-factor sign-in first (your account's security page)."),
            )
        self.session_fingerprint = twofactor.session_fingerprint(session_key)
        self.user = user
        self.language = user.language or _browser_language(self.scope)
        return senders.agent_sender(user)

    #: the frames an auditor may send: they read, never write (docs/security.md "Roles")
    READ_FRAMES: ClassVar[frozenset[str]] = frozenset(
        {"ping", "sync", "history.fetch", "receipts.fetch"}
    )

    async def admit(self, frame_type: str) -> None:
        """An auditor's socket only reads: any frame but :data:`READ_FRAMES` is refused with an
        ``error`` frame ``read_only``, nothing done."""
        if self.user.is_auditor and frame_type not in self.READ_FRAMES:
            raise ServiceError("read_only", _("Auditors can read but not change anything."))

    @property
    def watching(self) -> bool:
        """Opened by a page that only watches (``?watch=1``): no presence."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return query.get("watch") == ["1"]

    async def hello_extra(self) -> dict[str, Any]:
        if self.watching:
            return {}
        # recorded before the agent is marked connected, so the grace scan never sees them
        # connected without this socket; everyone's, so that no alert is pushed or mailed to
        # someone with an inbox open (org.alerts)
        await self._seen()
        if not self.user.is_agent:
            return {}
        state = await self.db(kefu_agents.agent_connected, user_id=self.user.pk)
        return {"agent": selectors.agent_state_payload(state)}

    def conversation_list(self) -> list[dict[str, Any]]:
        return selectors.member_conversation_list(member_key=self.sender.key)

    async def _seen(self) -> bool:
        return await sync_to_async(presence.socket_seen, thread_sensitive=False)(
            schema=self.tenant.schema_name, user_id=self.user.pk, channel_name=self.channel_name
        )

    async def on_ping(self, data: dict[str, Any], ref: str | None) -> None:
        await super().on_ping(data, ref)
        if self.watching:
            return
        if await self._seen() and self.user.is_agent:
            # the record had lost this socket (the agent was found gone meanwhile): back
            await self.db(kefu_agents.agent_connected, user_id=self.user.pk)

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        user = getattr(self, "user", None)
        if user is not None and not self.watching:
            await sync_to_async(presence.socket_closed, thread_sensitive=False)(
                schema=self.tenant.schema_name, user_id=user.pk, channel_name=self.channel_name
            )

    async def on_conversation_close(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        await self.db(
            sessions.conversation_close_by_member,
            conversation_id=conversation_id,
            sender=self.sender,
            ip=client_ip(self.scope) or None,
        )

    async def on_agent_status(self, data: dict[str, Any], ref: str | None) -> None:
        await self.db(kefu_agents.agent_status_set, user=self.user, status=data.get("status"))


def _visitor_and_limits(token: object) -> tuple[Any, limits.Effective]:
    return visitors.visitor_from_token(token), limits.effective()


class VisitorConsumer(MemberConsumer):
    """A visitor's widget socket, authenticated by the signed token of its ``weiyu.token.…``
    subprotocol (or ``?token=``, :mod:`kefu.widget_auth`); its frames are rate-limited
    (:meth:`admit`)."""

    handlers: ClassVar[dict[str, str]] = {
        **MemberConsumer.handlers,
        "conversation.close": "on_conversation_close",
        "robot.handover": "on_robot_handover",
        "robot.feedback": "on_robot_feedback",
        "csat.submit": "on_csat_submit",
    }

    async def authenticate(self) -> Sender:
        self.ip = client_ip(self.scope)
        known = limits.cached(self.tenant.schema_name)
        if known is not None:  # refused before any database work
            await ratelimit.acheck(limits.socket_connect(known, ip=self.ip))
        token = widget_auth.socket_token(self.scope)
        self.visitor, self.limits = await self.db(_visitor_and_limits, token)
        if known is None:
            await ratelimit.acheck(limits.socket_connect(self.limits, ip=self.ip))
        self.language = "en" if self.visitor.language.lower().startswith("en") else "zh-hans"
        return senders.visitor_sender(self.visitor)

    def conversation_list(self) -> list[dict[str, Any]]:
        return selectors.member_conversation_list(member_key=self.sender.key, closed_limit=20)

    def accept_subprotocol(self) -> str | None:
        return widget_auth.accepted_subprotocol(self.scope)

    async def hello_extra(self) -> dict[str, Any]:
        """A fresh files token for the widget's downloads (``?ft=``, kefu.widget_auth)."""
        return {"files_token": widget_auth.files_token(self.visitor, self.tenant.schema_name)}

    async def admit(self, frame_type: str) -> None:
        """Rate limits, one Redis call per frame and before any database work: ``message.send``
        counts against the visitor's, its address's and the tenant's messages per minute, every
        other frame but ``ping`` against the visitor's frames per minute (the tenant's values
        when the socket opened, ``org.limits``). Refused: an ``error`` frame ``rate_limited``
        with ``retry_after`` (s), in the visitor's language; the message is not stored."""
        if frame_type == "message.send":
            await ratelimit.acheck(
                limits.message_send(self.limits, visitor_id=self.visitor.pk, ip=self.ip),
                language=self.language,
            )
        elif frame_type != "ping":
            await ratelimit.acheck(
                limits.socket_frame(self.limits, visitor_id=self.visitor.pk),
                language=self.language,
            )

    def send_message(self, data: dict[str, Any]) -> tuple[Any, bool]:
        return kefu_messages.visitor_message_send(
            visitor=self.visitor,
            conversation_id=data.get("conversation_id"),
            content=data.get("content"),
            client_msg_id=data.get("client_msg_id"),
            department_id=data.get("workgroup_id"),
            msg_type=data.get("msg_type", "text"),
            attachment_id=data.get("attachment_id"),
        )

    async def on_conversation_close(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        await self.db(
            sessions.conversation_close_by_member,
            conversation_id=conversation_id,
            sender=self.sender,
        )

    async def on_robot_handover(self, data: dict[str, Any], ref: str | None) -> None:
        result = await self.db(
            robot_handover.handover_by_visitor,
            visitor=self.visitor,
            conversation_id=data.get("conversation_id"),
        )
        await self.send_json({"type": "robot.handover.result", "ref": ref, "result": result})

    async def on_robot_feedback(self, data: dict[str, Any], ref: str | None) -> None:
        result = await self.db(
            robot_feedback.feedback,
            visitor=self.visitor,
            message_id=data.get("message_id"),
            helpful=data.get("helpful"),
        )
        await self.send_json({"type": "robot.feedback.result", "ref": ref, **result})

    async def on_csat_submit(self, data: dict[str, Any], ref: str | None) -> None:
        session = await self.db(
            csat.csat_submit,
            visitor=self.visitor,
            conversation_id=data.get("conversation_id"),
            score=data.get("score"),
            comment=data.get("comment", ""),
        )
        await self.send_json(
            {
                "type": "csat.result",
                "ref": ref,
                "conversation_id": session.conversation_id,
                "score": session.csat_score,
            }
        )
