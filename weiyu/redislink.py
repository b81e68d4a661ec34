"""One pipelined Redis connection for the channel layer's hot path (publish and pump).

redis-py pays a lot of Python for each command: a pool checkout with a health check, a retry
wrapper, observability hooks, and an ``asyncio.wait_for`` (a new task) around every write
because the layer's connections have a ``socket_timeout``. At hundreds of messages a second
that was most of the layer's share of the web process's CPU (docs/benchmarks.md, "CPU per
message"). A :class:`RedisLink` is a bare ``asyncio.Protocol`` on one socket: commands are
packed and parsed by ``hiredis`` (C), written at once, and answered in order (Redis replies in
the order it was asked, so several callers share the socket without waiting for each other);
one timer per link, not per command, bounds how long the oldest command may wait.

Errors are redis-py's, so callers handle them as before: ``redis.exceptions.ConnectionError``
when Redis cannot be reached or the connection broke (every command on its way fails with it),
``TimeoutError`` when the oldest command waited longer than the timeout (the connection is then
dropped), ``ResponseError`` / ``NoScriptError`` for an error reply. A broken connection is
replaced on the next call. Only plain ``redis://`` and ``unix://`` addresses are handled
(:func:`link_for_host` returns None for others, e.g. TLS, and the caller keeps redis-py).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # pragma: no cover - pinned in requirements.txt
    hiredis = None


def link_for_host(host: dict[str, Any] | str) -> RedisLink | None:
    """A :class:`RedisLink` for one of channels-redis's ``hosts`` entries (a dict with
    ``address``, a URL string), or None when it cannot serve it (no ``hiredis``, TLS, sentinel,
    a host given as a tuple): the caller then keeps redis-py."""
    if hiredis is None:
        return None
    if isinstance(host, str):
        host = {"address": host}
    address = host.get("address") if isinstance(host, dict) else None
    if not isinstance(address, str) or not address.startswith(("redis://", "unix://")):
        return None
    options = parse_url(address)
    if "connection_class" in options:  # anything but a plain TCP or unix socket
        if address.startswith("unix://"):
            options.pop("connection_class")
        else:
            return None
    return RedisLink(
        host=options.get("host", "localhost"),
        port=int(options.get("port", 6379)),
        path=options.get("path"),
        db=int(options.get("db", 0) or 0),
        username=options.get("username"),
        password=options.get("password"),
        timeout=float(host.get("socket_timeout") or 15.0),
        connect_timeout=float(host.get("socket_connect_timeout") or 5.0),
    )


class RedisLink:
    """A lazily opened, pipelined connection to one Redis server, for one event loop.

    ``timeout`` (s): the longest a command may wait for its reply (commands that block in Redis,
    ``BZPOPMIN``, pass ``block`` seconds more); ``connect_timeout`` (s) bounds opening it.
    """

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.db, self.username, self.password = db, username, password
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def call(self, *args: Any, block: float = 0.0) -> Any:
        """Send one command (``args``: str, bytes, int or float) and return its reply (bytes,
        int, list, None). ``block``: seconds the command may block in Redis. Raises the errors
        listed in the module's docstring."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        return await protocol.request(hiredis.pack_command(args), self.timeout + block)

    async def _open(self) -> _Protocol:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop)
        try:
            if self.path:
                connecting = loop.create_unix_connection(lambda: protocol, self.path)
            else:
                connecting = loop.create_connection(lambda: protocol, self.host, self.port)
            await asyncio.wait_for(connecting, self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            where = self.path or f"{self.host}:{self.port}"
            raise RedisConnectionError(f"Error connecting to {where}: {exc}") from exc
        setup = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            setup.append(protocol.request(hiredis.pack_command(("AUTH", *auth)), self.timeout))
        if self.db:
            setup.append(protocol.request(hiredis.pack_command(("SELECT", self.db)), self.timeout))
        try:
            await asyncio.gather(*setup)
        except BaseException:
            protocol.abort(RedisConnectionError("Redis refused the connection's set-up"))
            raise
        self._protocol = protocol
        return protocol

    def close(self) -> None:
        """Drop the connection (commands on their way fail with ``ConnectionError``); the next
        call opens a new one."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abort(RedisConnectionError("Connection closed by the channel layer."))


class _Protocol(asyncio.Protocol):
    """The socket: commands written at once, replies handed to their futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ResponseError, notEnoughData=False)
        #: (future, deadline) of every command on its way, oldest first
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, packed: bytes, timeout: float) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("Connection to Redis lost."))
            return future
        self.waiting.append((future, self.loop.time() + timeout))
        self.transport.write(packed)
        if self.timer is None:
            self.timer = self.loop.call_at(self.waiting[0][1], self._check_deadline)
        return future

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                future, _deadline = self.waiting.popleft()
                if future.done():  # its caller was cancelled: the reply is dropped
                    continue
                if isinstance(reply, ResponseError):
                    message = str(reply)
                    if message.startswith("NOSCRIPT"):
                        reply = NoScriptError(message)
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.abort(RedisConnectionError(f"Protocol error from Redis: {exc}"))

    def _check_deadline(self) -> None:
        self.timer = None
        if not self.waiting:
            return
        deadline = self.waiting[0][1]
        if self.loop.time() >= deadline:
            self.abort(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def abort(self, error: Exception) -> None:
        """Close the socket and fail every command on its way with ``error``."""
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.waiting:
            future, _deadline = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
