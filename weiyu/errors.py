"""The error every service raises for a refused request.

``code`` is the protocol's error code (docs/protocol.md §2.4); ``message`` is translated for the
user; ``field`` names the offending input when there is one. Websocket consumers turn it into an
``error`` frame, API views into an HTTP 4xx with a JSON body.
"""

from __future__ import annotations

HTTP_STATUS = {
    "invalid": 400,
    "bad_frame": 400,
    "unauthorized": 401,
    "invalid_token": 401,
    "quota_exceeded": 402,
    "forbidden": 403,
    "read_only": 403,
    "suspended": 403,
    "not_found": 404,
    "conversation_closed": 409,
    "conflict": 409,
    "not_configured": 409,
    "nothing_to_answer": 409,
    "queue_full": 409,
    "closed": 409,
    "reply_window_closed": 409,
    "unavailable_agent": 409,
    "full": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


class ServiceError(Exception):
    """A request a service refuses. Nothing was written when it is raised."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = str(message)
        self.field = field

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    def as_dict(self) -> dict[str, str | int]:
        data: dict[str, str | int] = {"code": self.code, "message": self.message}
        if self.field:
            data["field"] = self.field
        return data


class RateLimitedError(ServiceError):
    """``rate_limited`` (HTTP 429): too many requests; ``retry_after_s`` (whole seconds) is when
    the caller may try again, sent as the ``Retry-After`` header and ``retry_after`` in the body."""

    def __init__(self, message: str, *, retry_after_s: int, field: str | None = None) -> None:
        super().__init__("rate_limited", message, field=field)
        self.retry_after_s = max(1, int(retry_after_s))

    def as_dict(self) -> dict[str, str | int]:
        """The error frame's fields, with ``retry_after`` (seconds)."""
        return {**super().as_dict(), "retry_after": self.retry_after_s}


def contains_nul(value: object) -> bool:
    """Whether a decoded JSON value (or a string) holds a NUL character anywhere, keys included.
    PostgreSQL text cannot store one, so input carrying it is refused as ``invalid`` at the
    edge (API parser, websocket frames, query strings) instead of failing in the database."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False
