"""Where the widget's visitor token travels: never in a URL that access logs keep.

- HTTP: the ``X-Visitor-Token`` header (what the widget sends), else ``token`` in the JSON or
  form body of a POST.
- File downloads, which a browser makes from ``<img src>`` / ``<a href>`` without headers: a
  *files token* in ``?ft=`` — valid 12 hours, for downloads only (:func:`files_token`, given by
  ``POST /api/v1/widget/session`` and the socket's ``hello``), so what an access log keeps is
  not the year-long credential. ``?token=`` is still read there for older clients.
- Websocket: the subprotocol ``weiyu.token.<token as base64url, no padding>`` offered beside
  ``weiyu`` (``new WebSocket(url, ["weiyu", "weiyu.token.…"])``); the server answers ``weiyu``.
  ``?token=`` is still read for clients that cannot set subprotocols.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

from django.core import signing
from django.db import connection

from kefu.models import Visitor
from kefu.services.visitors import visitor_from_signed, visitor_from_token

HEADER = "HTTP_X_VISITOR_TOKEN"
SUBPROTOCOL = "weiyu"
TOKEN_PREFIX = "weiyu.token."  # noqa: S105 - a name prefix, not a secret
FILES_SALT = "weiyu.kefu.visitor-files"
#: seconds a files token is good for (a new one comes with every session start and ``hello``)
FILES_MAX_AGE = 12 * 3600


def request_token(request: Any) -> object:
    """The visitor token of a DRF request: the header, else the body's ``token`` (POST). None
    when there is none."""
    header = request.META.get(HEADER)
    if header:
        return header
    data = request.data if request.method == "POST" else None
    if hasattr(data, "get") and data.get("token") is not None:
        return data.get("token")
    return None


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


def files_token(visitor: Visitor, schema: str | None = None) -> str:
    """A token that lets ``visitor`` download its widget files for :data:`FILES_MAX_AGE` s, in
    its tenant only (``schema``, default the current one); nothing else accepts it."""
    return signing.dumps({"v": visitor.pk, "s": schema or connection.schema_name}, salt=FILES_SALT)


def download_visitor(request: Any) -> Visitor:
    """The visitor of a widget download: ``?ft=`` (a files token), else the visitor token
    (header, ``?token=``). Raises ``ServiceError("invalid_token")``."""
    value = request.query_params.get("ft")
    if value is None:
        token = request.META.get(HEADER) or request.query_params.get("token")
        return visitor_from_token(token)
    return visitor_from_signed(value, salt=FILES_SALT, max_age=FILES_MAX_AGE)
