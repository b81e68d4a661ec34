"""Websocket frames written straight to the socket, not on the reactor's next turn.

Twisted's TCP transport buffers every ``write`` and registers the socket with the event loop for
writing; the loop wakes on the next turn, sends, and unregisters it: for each frame daphne sends,
two ``epoll_ctl`` calls and an extra turn of the loop besides the ``send``: about a tenth of the
web process's samples in a profile of the closed-loop chat bench, where sending at once gave
about 1.2 times the messages per second (docs/benchmarks.md, "CPU per message").
:func:`install` makes a plain (not TLS) server connection with nothing
buffered try the ``send`` at once, as asyncio's own transports do, and fall back to Twisted's
buffering for what the kernel did not take, for errors (Twisted then closes the connection as
before), while a pull producer is registered or a push producer is paused (Twisted resumes
those as its buffer drains), and once the connection is closing. (A websocket's transport
keeps the push producer of the HTTP connection it was upgraded from: daphne never unregisters it.)

:func:`lazy_autobahn_log_args` keeps autobahn from formatting the arguments of its per-frame
and per-connection debug log lines when debug logging is off.
"""

from __future__ import annotations

import functools
import pprint
from typing import Any

try:
    from twisted.internet import tcp
except ImportError:  # not served by daphne
    tcp = None

_installed = False


def install() -> None:
    """Patch ``twisted.internet.tcp.Server.write`` (once per process; a no-op without Twisted)."""
    global _installed  # noqa: PLW0603 - once per process
    if _installed or tcp is None:
        return
    buffered = tcp.Server.write

    def write(self: Any, data: bytes) -> None:
        if (
            data
            and not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and (self.producer is None or (self.streamingProducer and not self.producerPaused))
            and not self._tempDataBuffer
            and self.offset >= len(self.dataBuffer)
            and isinstance(data, bytes)
        ):
            sent = self.writeSomeData(data)
            if isinstance(sent, int):
                if sent >= len(data):
                    return
                data = data[sent:]
        buffered(self, data)

    tcp.Server.write = write
    _installed = True


class _LazyHighlight:
    """An argument of one of autobahn's debug log lines, formatted only if the line is."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __format__(self, spec: str) -> str:
        return format(self.fn(*self.args), spec)

    def __str__(self) -> str:
        return str(self.fn(*self.args))


_quiet_logs = False


def _timings_str(self: Any) -> str:
    # autobahn's Timings.__str__, which returns the module's pformat (deferred below) as is
    return pprint.pformat(self._timings)


def lazy_autobahn_log_args() -> None:
    """Defer the highlighting of autobahn's per-frame debug log arguments (once per process).

    autobahn logs each frame it receives and sends at debug level, and builds the arguments
    before the logger drops the line: ``hltype``/``hlval`` look up the method's qualified name
    and colour it with ``click.style``, for every frame (~4 % of the web process's samples in
    the closed-loop chat bench, docs/benchmarks.md "CPU per message"). Wrapped here, they cost
    an object each and are formatted only when debug logging is on. So is the ``pformat`` of
    every opening handshake's debug lines (the connection's 29 settings and its transport:
    ~0.14 ms a connection, 12 % of the event loop's busy samples in a reconnect storm,
    docs/benchmarks.md "Connections"); ``Timings.__str__``, which returns its text, formats at
    once as before. A no-op without autobahn.
    """
    global _quiet_logs  # noqa: PLW0603 - once per process
    if _quiet_logs:
        return
    try:
        from autobahn.twisted import websocket as twisted_websocket
        from autobahn.websocket import protocol
    except ImportError:  # not served by daphne
        return
    for module in (twisted_websocket, protocol):
        for name in ("hltype", "hlval"):
            original = getattr(module, name, None)
            if original is not None:
                setattr(module, name, functools.partial(_LazyHighlight, original))
    if getattr(protocol, "pformat", None) is pprint.pformat:
        protocol.pformat = functools.partial(_LazyHighlight, pprint.pformat)
        protocol.Timings.__str__ = _timings_str
    _quiet_logs = True
