"""Where the widget's visitor token travels: never in a URL that access logs keep.

- HTTP: the ``X-Visitor-Token`` header (what the widget sends), else ``token`` in the JSON or
  form body of a POST. ``?token=`` is still read on the GET downloads a browser makes from
  ``<img src>`` / ``<a href>`` (files), which cannot carry a header.
- Websocket: the subprotocol ``weiyu.token.<token as base64url, no padding>`` offered beside
  ``weiyu`` (``new WebSocket(url, ["weiyu", "weiyu.token.…"])``); the server answers ``weiyu``.
  ``?token=`` is still read for clients that cannot set subprotocols.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

HEADER = "HTTP_X_VISITOR_TOKEN"
SUBPROTOCOL = "weiyu"
TOKEN_PREFIX = "weiyu.token."  # noqa: S105 - a name prefix, not a secret


def request_token(request: Any, *, query: bool = False) -> object:
    """The visitor token of a DRF request: header, then body ``token``, then (``query``: for
    downloads only) ``?token=``. None when there is none."""
    header = request.META.get(HEADER)
    if header:
        return header
    data = request.data if request.method == "POST" else None
    if hasattr(data, "get") and data.get("token") is not None:
        return data.get("token")
    return request.query_params.get("token") if query else None


def socket_token(scope: dict[str, Any]) -> str | None:
    """The visitor token of a websocket handshake: its ``weiyu.token.…`` subprotocol, else
    ``?token=``."""
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(TOKEN_PREFIX):
            encoded = protocol[len(TOKEN_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("token") or [None])[0]


def accepted_subprotocol(scope: dict[str, Any]) -> str | None:
    """``weiyu`` when the client offered it (a browser fails a handshake whose answer names no
    subprotocol it offered, and one that names none when it offered some)."""
    return SUBPROTOCOL if SUBPROTOCOL in (scope.get("subprotocols") or []) else None
