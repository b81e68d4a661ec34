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
"""

from __future__ import annotations

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
