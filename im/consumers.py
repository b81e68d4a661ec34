"""The websocket protocol's common part (docs/protocol.md §2): framing, errors, sync, history,
sending, typing and receipts. ``kefu.consumers`` builds the agent and visitor endpoints on it.

Consumers stay thin: parse a frame, call one service or selector in the tenant's schema
(:func:`weiyu.asgi_tenancy.tenant_db`), reply. Events published by services reach the socket
through its member group (``weiyu.realtime.member_group``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from im import selectors
from im.senders import Sender
from im.serializers import member_payload, message_payload
from im.services import messages as im_messages
from im.services import receipts as im_receipts
from tenants import metrics
from weiyu.asgi_tenancy import tenant_db
from weiyu.errors import ServiceError, contains_nul
from weiyu.realtime import member_group

logger = logging.getLogger(__name__)
Handler = Callable[[Any, dict[str, Any]], Awaitable[None]]

#: close code after a channel-layer outage: reconnect and ``sync`` (events may have been lost)
CLOSE_RESYNC = 4503
#: close code of a socket refused by a rate limit (its `error` frame says when to come back)
CLOSE_RATE_LIMITED = 4429
LAYER_RETRY_S = 1.0
LAYER_ERRORS = (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError)


async def _dispatch_many(
    sources: list[Callable[[], Awaitable[dict[str, Any]]]],
    dispatch: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Channels' ``await_many_dispatch``: await the next message of every source at once, hand
    each to ``dispatch`` in turn (one at a time), then wait for that source's next; until a
    source or ``dispatch`` raises (``StopConsumer`` when the socket closed), which is raised
    after the other sources are cancelled.

    Each source is read by one task that lives as long as the loop: it awaits the source, queues
    the message, wakes the loop and waits until that message has been dispatched before reading
    the next (so, as in Channels, a source is never read ahead). Channels starts a new task per
    message instead, and waits on all of them with ``asyncio.wait``: a task, its first step and
    its done callback per message besides the wake-ups, about 4 µs more per dispatch in a
    micro-benchmark, and a socket dispatches three times for each chat message
    (docs/benchmarks.md, "CPU per message" and "Frames"). Messages that are ready together are
    dispatched in the order they came.
    """
    loop = asyncio.get_running_loop()
    # (source index, message, the source's error)
    ready: collections.deque[tuple[int, Any, BaseException | None]] = collections.deque()
    wake: list[asyncio.Future[None] | None] = [None]
    turns: list[asyncio.Future[None] | None] = [None] * len(sources)

    def deliver(index: int, message: Any, error: BaseException | None) -> None:
        ready.append((index, message, error))
        waiter = wake[0]
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(index: int) -> None:
        source = sources[index]
        while True:
            try:
                message = await source()
            except Exception as exc:  # raised by the loop below, in this socket's task
                deliver(index, None, exc)
                return
            turn = turns[index] = loop.create_future()
            deliver(index, message, None)
            await turn

    readers = [loop.create_task(read(index)) for index in range(len(sources))]
    try:
        while True:
            if not ready:
                wake[0] = loop.create_future()
                try:
                    await wake[0]
                finally:
                    wake[0] = None
            index, message, error = ready.popleft()
            if error is not None:
                raise error
            await dispatch(message)
            turn = turns[index]
            if turn is not None and not turn.done():
                turn.set_result(None)
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def _int_field(
    data: dict[str, Any], name: str, *, required: bool = True, minimum: int = 0
) -> int | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ServiceError(
            "invalid", _("%(field)s must be an integer.") % {"field": name}, field=name
        )
    return value


_PAGE = re.compile(r"([1-9][0-9]{0,17})(?::([0-9]{1,18}))?")


def _page_field(data: dict[str, Any]) -> tuple[int, int | None] | None:
    """The ``page`` of a ``sync`` frame (the ``next`` of the previous ``sync.result``):
    ``(conversation id, after seq or None)``, None when absent; ``ServiceError('invalid')``
    when it is not one the server gives."""
    page = data.get("page")
    if page is None:
        return None
    match = _PAGE.fullmatch(page) if isinstance(page, str) else None
    if match is None:
        raise ServiceError("invalid", _("page must be the next of a sync.result."), field="page")
    seq = match.group(2)
    return int(match.group(1)), None if seq is None else int(seq)


class MemberConsumer(AsyncJsonWebsocketConsumer):
    """Base consumer: one socket of one member (``self.sender``) of one tenant."""

    handlers: ClassVar[dict[str, str]] = {
        "ping": "on_ping",
        "sync": "on_sync",
        "history.fetch": "on_history_fetch",
        "message.send": "on_message_send",
        "typing.start": "on_typing",
        "typing.stop": "on_typing",
        "read.update": "on_read_update",
        "message.recall": "on_message_recall",
        "receipts.fetch": "on_receipts_fetch",
    }
    sender: Sender
    language = "zh-hans"

    # --- lifecycle ---------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__`` with a channel-layer receive that survives a Redis
        outage (:meth:`layer_receive`): the socket stays open and sends keep being stored and
        acked, since the database is the record (docs/architecture.md)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        self.layer_down = False
        self.layer_joined = asyncio.Event()
        self.resyncing = False
        #: hash of the session key for sockets signed in by a session (org.twofactor)
        self.session_fingerprint: str | None = None
        with contextlib.suppress(StopConsumer):
            await _dispatch_many([receive, self.layer_receive, self.layer_watch], self.dispatch)

    async def layer_receive(self) -> dict[str, Any]:
        """The next channel-layer message for this socket. While Redis is unreachable, retry
        every second; once it answers again, rejoin the member group and ask the client to
        reconnect (close ``4503``), so that its ``sync`` fetches what was published meanwhile."""
        while True:
            if not self.layer_down:
                try:
                    return await self.channel_layer.receive(self.channel_name)
                except LAYER_ERRORS as exc:
                    self.layer_down = True
                    logger.warning("channel layer unreachable (%s); socket kept open", exc)
            await asyncio.sleep(LAYER_RETRY_S)
            if await self._layer_rejoin():
                return {"type": "weiyu.resync"}

    async def layer_watch(self) -> dict[str, Any]:
        """``weiyu.resync`` once a Redis server holding this socket's group or its process's
        queue was unreachable or lost its keys, and answers again (weiyu.channel_layer.ShardWatch:
        a membership forgotten by a restarted server would otherwise go unnoticed)."""
        await self.layer_joined.wait()
        watch = getattr(self.channel_layer, "shard_watch", None)
        if watch is None or self.group is None:
            await asyncio.Future()  # nothing to watch: wait until the socket closes
        watch = watch()
        await watch.wait_changed(watch.shards(self.group, self.channel_name), self.layer_since)
        return {"type": "weiyu.resync"}

    async def _layer_rejoin(self) -> bool:
        if not self.group:
            return False
        watch = getattr(self.channel_layer, "shard_watch", None)
        if watch is not None and not watch().all_up(watch().shards(self.group, self.channel_name)):
            return False  # the process's queue may still be unreachable: no reconnect loop
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception:
            return False
        self.layer_down = False
        return True

    async def weiyu_resync(self, message: dict[str, Any]) -> None:
        """After a channel-layer outage: the client reconnects and resynchronises."""
        if not self.resyncing:
            self.resyncing = True
            await self.close(code=CLOSE_RESYNC)

    async def connect(self) -> None:
        """Accept, authenticate, join the member's group, send ``hello``.

        The handshake is accepted first, so it completes however long the database takes to
        authenticate: daphne drops a handshake not accepted within 5 s
        (``websocket_handshake_timeout``), which in a reconnect storm failed most clients
        (docs/benchmarks.md, "Connections"). Frames the client sends meanwhile wait until
        ``hello`` has gone (Channels handles one message of a socket at a time). A bad credential
        still gets its ``error`` frame and close code 4401 (docs/protocol.md §2).
        """
        self.tenant = self.scope["tenant"]
        self.group: str | None = None
        await self.accept(self.accept_subprotocol())
        try:
            sender = await self.authenticate()
        except ServiceError as exc:
            await self.send_json({"type": "error", **exc.as_dict()})
            await self.close(code=CLOSE_RATE_LIMITED if exc.code == "rate_limited" else 4401)
            return
        self.sender = sender
        self.counted_as = sender.type
        metrics.socket_opened(sender.type)
        self.group = member_group(self.tenant.schema_name, sender.key)
        watch = getattr(self.channel_layer, "shard_watch", None)
        self.layer_since = watch().snapshot() if watch is not None else ()
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception:  # Redis down: serve the socket from the database, rejoin later
            logger.warning("channel layer unreachable at connect; socket served without it")
            self.layer_down = True
        self.layer_joined.set()
        await self.send_json(
            {
                "type": "hello",
                "member": self.member(),
                "server_time": timezone.now().isoformat(),
                **await self.hello_extra(),
            }
        )

    async def disconnect(self, code: int) -> None:
        if counted_as := getattr(self, "counted_as", None):
            self.counted_as = None
            metrics.socket_closed(counted_as)
        if self.group and not self.layer_down:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except Exception:  # the group entry expires by itself (group_expiry)
                logger.warning("channel layer unreachable at disconnect")

    def accept_subprotocol(self) -> str | None:
        """The subprotocol to answer the handshake with (one the client offered), or None."""
        return None

    async def authenticate(self) -> Sender:
        """Return who this socket is, or raise ``ServiceError('unauthorized'|'invalid_token')``."""
        raise ServiceError("unauthorized", _("Please sign in."))

    async def hello_extra(self) -> dict[str, Any]:
        return {}

    def member(self) -> dict[str, Any]:
        payload = member_payload(self.sender.key, self.sender.name)
        payload["type"] = self.sender.type
        return payload

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in this connection's tenant schema, in the connection's language."""
        language = self.language

        def call() -> Any:
            with translation.override(language):
                return fn(*args, **kwargs)

        return await tenant_db(self.tenant, call)

    # --- framing -----------------------------------------------------------------------------

    @classmethod
    async def encode_json(cls, content: dict[str, Any]) -> str:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        limit = settings.WEIYU_WS_MAX_FRAME_BYTES
        # a character is 1 to 4 bytes of UTF-8: encode only a frame that might be too large
        if len(raw) > limit or (4 * len(raw) > limit and len(raw.encode("utf-8")) > limit):
            await self.send_error(
                ServiceError("frame_too_large", _("The frame is too large.")), None
            )
            return
        try:
            data = json.loads(raw)
            nul = isinstance(data, dict) and contains_nul(data)
        except (ValueError, RecursionError):  # deep nesting is a bad frame, not a broken socket
            data, nul = None, False
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self.send_error(
                ServiceError("bad_frame", _("A frame must be a JSON object with a type.")), None
            )
            return
        if nul:
            await self.send_error(
                ServiceError("bad_frame", _("Text may not contain NUL characters.")), None
            )
            return
        ref = (
            data.get("ref") if isinstance(data.get("ref"), str) and len(data["ref"]) <= 64 else None
        )
        method = self.handlers.get(data["type"])
        if method is None:
            await self.send_error(ServiceError("unknown_type", _("Unknown frame type.")), ref)
            return
        try:
            await self.admit(data["type"])
            await getattr(self, method)(data, ref)
        except ServiceError as exc:
            await self.send_error(exc, ref, data)
        except (OperationalError, InterfaceError, DatabaseError):
            logger.exception("database unavailable while handling %s", data["type"])
            await self.send_error(
                ServiceError(
                    "unavailable", _("The service is temporarily unavailable. Nothing was saved.")
                ),
                ref,
                data,
            )

    async def admit(self, frame_type: str) -> None:
        """Called before each known frame is handled: raise ``ServiceError`` (e.g.
        ``RateLimitedError``) to refuse it with an ``error`` frame, nothing done. Allows all."""

    async def send_error(
        self, exc: ServiceError, ref: str | None, data: dict[str, Any] | None = None
    ) -> None:
        frame: dict[str, Any] = {"type": "error", **exc.as_dict(), "ref": ref}
        if data and isinstance(data.get("client_msg_id"), str):
            frame["client_msg_id"] = data["client_msg_id"]
        await self.send_json(frame)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler of ``message`` (``ValueError`` when there is none), without Channels'
        ``aclose_old_connections()`` before it.

        That call is a hop onto the process's thread-sensitive thread before *every* handler: a
        pushed event (which touches no database) waited behind queued work before reaching its
        socket, and the handshake, each frame and the disconnect each queued once more
        (docs/benchmarks.md, "Connections"). No handler touches the database on the event loop;
        database calls run on :mod:`weiyu.dbthreads`, which looks after its own connections.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' handler without its ``aclose_old_connections()`` after :meth:`disconnect`
        (see :meth:`dispatch`): in a reconnect storm thousands of closing sockets queued one
        by one on the process's thread-sensitive thread (docs/benchmarks.md, "Connections")."""
        await self.disconnect(message["code"])
        raise StopConsumer

    async def weiyu_event(self, message: dict[str, Any]) -> None:
        """A published event for this member (weiyu.realtime): forward it as is. After
        ``account.disabled`` (the user was disabled or deleted) the socket closes with 4401, and
        so after ``session.ended`` ("log out everywhere") unless the socket belongs to the
        session that asked (``keep``, a hash of its session key; not forwarded; those sockets
        take the fingerprint of its new key, ``now``), or, with ``only``, when the socket
        belongs to that one ended session."""
        event = message["event"]
        if event.get("type") == "session.ended":
            # "log out everywhere": every socket of the user but those of the session that asked;
            # one session ended from the security page: only that session's sockets
            only = event.get("only")
            ended = (
                only == self.session_fingerprint
                if only is not None
                else event.get("keep") != self.session_fingerprint
            )
            if ended:
                await self.send_json({"type": "session.ended"})
                await self.close(code=4401)
            elif only is None and event.get("now"):
                # the session that asked had its key changed: its sockets follow it
                self.session_fingerprint = event["now"]
            return
        # the pump hands one message object to every socket of this process that it names:
        # encode the frame once for all of them
        text = message.get("text")
        if text is None:
            text = message["text"] = await self.encode_json(message["event"])
        await self.send(text_data=text)
        if message["event"].get("type") == "account.disabled":
            await self.close(code=4401)

    # --- handlers ----------------------------------------------------------------------------

    async def on_ping(self, data: dict[str, Any], ref: str | None) -> None:
        await self.send_json({"type": "pong", "ref": ref})

    @property
    def sees_internal(self) -> bool:
        """Visitors never receive internal notes."""
        return not selectors.is_visitor_key(self.sender.key)

    def conversation_list(self) -> list[dict[str, Any]]:
        """Conversations for ``sync.result``; endpoints may add their own parts (kefu: session)."""
        participants = selectors.participant_list_for_member(member_key=self.sender.key)
        return selectors.conversation_payloads(
            participants=participants, member_key=self.sender.key
        )

    def _sync_page(
        self, cursors: dict[str, Any], page: tuple[int, int | None] | None
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        """One page of ``sync.result`` (docs/protocol.md §2.2): ``(result, encoded
        conversations, encoded messages)``, the two lists being the result's ``conversations``
        and ``messages`` already encoded as JSON.

        Conversations in id order from ``page`` (``(conversation id, after seq)``: resume inside
        that conversation after that seq — its entry went on the previous page —, or ``(id,
        None)``: start with it), each followed by what the client misses after its cursor (at
        most the newest ``WEIYU_SYNC_MAX_MESSAGES``, older ones via ``history.fetch``), until
        ``WEIYU_SYNC_PAGE_BYTES`` or ``WEIYU_SYNC_PAGE_MESSAGES`` is reached; ``next`` then
        names where the following page starts (None: this is the last). A page always carries
        at least one conversation or message, so paging ends. Queries: the conversation list's
        plus one statement for the page's messages."""
        start_id, start_seq = page if page is not None else (0, None)
        conversations = sorted(
            (c for c in self.conversation_list() if c["id"] >= start_id), key=lambda c: c["id"]
        )
        effective = dict(cursors)
        held = cursors.get(str(start_id))
        if start_seq is not None and isinstance(held, int) and not isinstance(held, bool):
            effective[str(start_id)] = max(held, start_seq)
        limit = settings.WEIYU_SYNC_MAX_MESSAGES
        budget = settings.WEIYU_SYNC_PAGE_BYTES
        most = settings.WEIYU_SYNC_PAGE_MESSAGES
        plan, truncated = selectors.sync_plan(
            conversations=conversations, cursors=effective, limit=limit
        )
        rows = selectors.messages_after_many(
            plan=plan, limit=limit, include_internal=self.sees_internal, total=most + 1
        )
        by_conversation: dict[int, list[Any]] = {}
        for row in rows:
            by_conversation.setdefault(row.conversation_id, []).append(row)
        after = dict(plan)
        listed: list[dict[str, Any]] = []
        listed_text: list[str] = []
        sent: list[dict[str, Any]] = []
        sent_text: list[str] = []
        reached: set[int] = set()
        size = 0
        next_page: str | None = None

        def fits(nbytes: int) -> bool:  # the first item always goes: every page carries one
            return not (listed_text or sent_text) or size + nbytes <= budget

        for conv in conversations:
            cid = conv["id"]
            if not (cid == start_id and start_seq is not None):
                text = json.dumps(conv, ensure_ascii=False, separators=(",", ":"))
                nbytes = len(text.encode()) + 1  # and its comma
                if not fits(nbytes):
                    next_page = str(cid)
                    break
                listed.append(conv)
                listed_text.append(text)
                size += nbytes
            reached.add(cid)
            last = after.get(cid)
            for row in by_conversation.get(cid, ()):
                payload = message_payload(row)
                text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                nbytes = len(text.encode()) + 1
                if len(sent) >= most or not fits(nbytes):
                    next_page = f"{cid}:{last}"
                    break
                sent.append(payload)
                sent_text.append(text)
                size += nbytes
                last = row.seq
            if next_page is not None:
                break
        result = {
            "conversations": listed,
            "messages": sent,
            "truncated": [cid for cid in truncated if cid in reached],
            "next": next_page,
        }
        return result, listed_text, sent_text

    def _sync_result(
        self, cursors: dict[str, Any], page: tuple[int, int | None] | None = None
    ) -> dict[str, Any]:
        """The ``sync.result`` page for ``cursors`` from ``page`` (see :meth:`_sync_page`):
        ``{"conversations", "messages", "truncated", "next"}``."""
        return self._sync_page(cursors, page)[0]

    async def on_sync(self, data: dict[str, Any], ref: str | None) -> None:
        cursors = data.get("cursors") or {}
        if not isinstance(cursors, dict):
            raise ServiceError("invalid", _("cursors must be an object."), field="cursors")
        page = _page_field(data)
        result, conversations, messages = await self.db(self._sync_page, cursors, page)
        # the parts were encoded once, to measure the page: the frame is put together from them
        encode = self.encode_json
        head = f'{{"type":"sync.result","ref":{await encode(ref)},"conversations":['
        tail = f'],"truncated":{await encode(result["truncated"])},"next":{await encode(result["next"])}}}'
        await self.send(
            text_data=head + ",".join(conversations) + '],"messages":[' + ",".join(messages) + tail
        )

    def _history(self, conversation_id: int, before_seq: int | None, limit: int) -> dict[str, Any]:
        selectors.participant_get(conversation_id=conversation_id, member_key=self.sender.key)
        rows, has_more = selectors.messages_before(
            conversation_id=conversation_id,
            before_seq=before_seq,
            limit=limit,
            include_internal=self.sees_internal,
        )
        # newest first within WEIYU_SYNC_PAGE_BYTES: the older rest comes with the next fetch
        payloads: list[dict[str, Any]] = []
        size = 0
        for row in reversed(rows):
            payload = message_payload(row)
            size += len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
            if payloads and size > settings.WEIYU_SYNC_PAGE_BYTES:
                has_more = True
                break
            payloads.append(payload)
        payloads.reverse()
        return {"conversation_id": conversation_id, "messages": payloads, "has_more": has_more}

    async def on_history_fetch(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        before_seq = _int_field(data, "before_seq", required=False, minimum=1)
        limit = _int_field(data, "limit", required=False, minimum=1) or 50
        if limit > 100:
            raise ServiceError("invalid", _("limit must be between 1 and 100."), field="limit")
        result = await self.db(self._history, conversation_id, before_seq, limit)
        await self.send_json({"type": "history.result", "ref": ref, **result})

    def send_message(self, data: dict[str, Any]) -> tuple[Any, bool]:
        """Store the frame's message from this socket's member (the one send path; the kind of
        conversation adds its behaviour through its hook, im.hooks)."""
        return im_messages.message_send(sender=self.sender, **self.message_fields(data))

    @staticmethod
    def message_fields(data: dict[str, Any]) -> dict[str, Any]:
        """The ``message.send`` frame's fields as ``message_send`` arguments (validated there)."""
        return {
            "conversation_id": _int_field(data, "conversation_id", minimum=1),
            "content": data.get("content"),
            "client_msg_id": data.get("client_msg_id"),
            "msg_type": data.get("msg_type", "text"),
            "attachment_id": data.get("attachment_id"),
            "sticker_id": data.get("sticker_id"),
            "mentions": data.get("mentions"),
            "internal": data.get("internal", False),
        }

    async def send_ack(self, message: Any, created: bool, ref: str | None) -> None:
        await self.send_json(
            {
                "type": "message.ack",
                "ref": ref,
                "client_msg_id": message.client_msg_id,
                "conversation_id": message.conversation_id,
                "id": message.pk,
                "seq": message.seq,
                "created_at": message.created_at.isoformat(),
                "duplicate": not created,
            }
        )

    async def on_message_send(self, data: dict[str, Any], ref: str | None) -> None:
        if not isinstance(data.get("client_msg_id"), str):
            raise ServiceError("invalid", _("client_msg_id is required."), field="client_msg_id")
        message, created = await self.db(self.send_message, data)
        await self.send_ack(message, created, ref)

    async def on_message_recall(self, data: dict[str, Any], ref: str | None) -> None:
        if not isinstance(data.get("client_msg_id"), str):
            raise ServiceError("invalid", _("client_msg_id is required."), field="client_msg_id")
        message, created = await self.db(
            im_messages.message_recall,
            conversation_id=_int_field(data, "conversation_id", minimum=1),
            message_id=data.get("message_id"),
            sender=self.sender,
            client_msg_id=data["client_msg_id"],
        )
        await self.send_ack(message, created, ref)

    async def on_receipts_fetch(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        seqs = data.get("seqs")
        if (
            not isinstance(seqs, list)
            or len(seqs) > 200
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in seqs)
        ):
            raise ServiceError(
                "invalid", _("seqs must be a list of up to 200 positive integers."), field="seqs"
            )
        member_count, counts = await self.db(
            selectors.receipt_counts,
            conversation_id=conversation_id,
            member_key=self.sender.key,
            seqs=seqs,
        )
        await self.send_json(
            {
                "type": "receipts.result",
                "ref": ref,
                "conversation_id": conversation_id,
                "member_count": member_count,
                "counts": {str(seq): c for seq, c in counts.items()},
            }
        )

    async def on_typing(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        state = "start" if data["type"] == "typing.start" else "stop"
        await self.db(
            im_receipts.typing_notify,
            conversation_id=conversation_id,
            member_key=self.sender.key,
            state=state,
        )

    async def on_read_update(self, data: dict[str, Any], ref: str | None) -> None:
        conversation_id = _int_field(data, "conversation_id", minimum=1)
        await self.db(
            im_receipts.receipt_update,
            conversation_id=conversation_id,
            member_key=self.sender.key,
            delivered_seq=data.get("delivered_seq"),
            read_seq=data.get("read_seq"),
        )
