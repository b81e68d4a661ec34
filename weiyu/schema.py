"""The OpenAPI 3 schema of the API (drf-spectacular): served at ``/api/v1/schema/``, browsable at
``/api/v1/docs/`` (Swagger UI from drf-spectacular-sidecar, so no CDN and a strict CSP hold).

Kept apart from :mod:`weiyu.api`, which DRF imports while it loads its views (the inspector
imports DRF's generic views).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "The error code, e.g. invalid, not_found."},
        "detail": {"type": "string", "description": "A message in the caller's language."},
        "field": {"type": "string", "description": "The offending input, when there is one."},
        "retry_after": {"type": "integer", "description": "Seconds, with 429 rate_limited."},
    },
    "required": ["error", "detail"],
}


_REFUSED = {
    "content": {"application/json": {"schema": _ERROR}},
    "description": "Refused: the API's error shape (docs/api.md).",
}

#: ``extend_schema(responses=NO_CONTENT)`` for an operation that answers ``204`` without a body
NO_CONTENT = {204: OpenApiResponse(description="Done; no body.")}
#: … for a file download: the file with its own type, or (S3 storage) ``302`` to a signed URL
FILE = {
    (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
    302: OpenApiResponse(description="With S3 storage: to a signed URL, valid 5 minutes."),
}
#: … for a download served from here only (no redirect): the file with its own type
DOWNLOAD = {(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")}
#: … for a JSON answer that ``export=csv`` (or ``kind=csv``) turns into a CSV download
JSON_OR_CSV = {
    (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="As above."),
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV download."),
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema inspector for views that answer hand-made JSON (most of ours: plain
    ``APIView`` subclasses documented in their docstrings, without serializers): such an operation
    takes and answers a JSON object, described by the view's docstring, instead of a warning.
    A view method that answers something else (no body, a file, CSV) says so with
    ``extend_schema(responses=NO_CONTENT | FILE | DOWNLOAD | JSON_OR_CSV)``; errors keep the
    error shape."""

    def get_operation_id(self) -> str:
        """``<path words>_<method>``, e.g. ``tickets_id_comments_post``: unique per operation."""
        words = re.sub(r"\W+", "_", self.path.removeprefix("/api/v1/")).strip("_")
        return f"{words}_{self.method.lower()}"

    def _get_serializer(self) -> Any:
        view = self.view
        if hasattr(view, "get_serializer") or getattr(view, "serializer_class", None):
            return super()._get_serializer()
        return None

    def _get_request_body(self, direction: str = "request") -> Any:
        if self.method in ("GET", "HEAD", "DELETE") or self._get_serializer() is not None:
            return super()._get_request_body(direction)
        return {"content": {media: {"schema": {"type": "object"}} for media in self.map_parsers()}}

    def _get_response_bodies(self, direction: str = "response") -> Any:
        if self._get_serializer() is not None:
            return super()._get_response_bodies(direction)
        if self.get_response_serializers() is not None:  # the view's extend_schema(responses=…)
            bodies = super()._get_response_bodies(direction)
            bodies.setdefault("4XX", _REFUSED)
            return bodies
        return {
            "2XX": {
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": "The answer described above.",
            },
            "4XX": _REFUSED,
        }
