"""The REST API's default permission (``REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]``)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request

from org.middleware import OWN_SETTINGS, READS_ONLY


class IsAuthenticatedWriter(IsAuthenticated):
    """Signed in (session or API key), and an auditor only reads: ``GET``/``HEAD``/``OPTIONS``
    pass, any other method of an auditor is answered 403 ``{"error": "read_only", "detail"}``
    before the view runs (docs/security.md "Roles"), except a ``POST`` to a view marked
    :func:`org.middleware.reads_only` (an export) and the views of their own settings
    (:func:`org.middleware.own_settings`). Views that set their own
    ``permission_classes`` (the anonymous widget paths) are not concerned."""

    message = _("Auditors can read but not change anything.")
    code = "read_only"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if request.method in SAFE_METHODS or not getattr(request.user, "is_auditor", False):
            return True
        if getattr(view, OWN_SETTINGS, False):
            return True
        return request.method == "POST" and bool(getattr(view, READS_ONLY, False))
