"""A tenant's branding: logo and colours for the widget, the help center and HTML e-mails.

The logo is an uploaded PNG, JPEG or WebP (no SVG: it can carry script), checked by decoding it
with Pillow, at most :data:`MAX_LOGO_BYTES` and :data:`MAX_LOGO_PIXELS` a side, kept in the
default storage under ``<schema>/branding/`` like other uploads and served publicly by
``GET /branding/logo`` (:func:`tenants.views.branding_logo`) with its own content type and
``nosniff``. Colours are ``#rrggbb``; an empty one keeps Weiyu's default.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import IO

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from tenants.models import Branding, Tenant, hex_colour
from weiyu.errors import ServiceError

#: bytes a logo may have at most
MAX_LOGO_BYTES = 256 * 1024
#: pixels a logo may have at most on each side
MAX_LOGO_PIXELS = 1024
#: Pillow format → (content type, file suffix) of the logos accepted
LOGO_FORMATS = {"PNG": ("image/png", ".png"), "JPEG": ("image/jpeg", ".jpg"),
                "WEBP": ("image/webp", ".webp")}  # fmt: skip
#: the widget channel colour a tenant never changed (kefu.models.Channel.color's default):
#: such a channel takes the brand's primary colour
DEFAULT_CHANNEL_COLOR = "#1f6feb"


@dataclass(frozen=True)
class Brand:
    """What the templates and the widget need: colours (``""`` = default), the logo's path on
    the tenant's own domain (``""`` = none; ``?v=`` changes with each upload) and its storage
    path and type (for e-mails, which carry it inline)."""

    primary_color: str = ""
    accent_color: str = ""
    logo_url: str = ""
    logo_path: str = ""
    logo_type: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.primary_color or self.accent_color or self.logo_path)


def brand_get(*, tenant_id: int | None) -> Brand:
    """The tenant's :class:`Brand` (all defaults when it has none, or for the public schema)."""
    row = Branding.objects.filter(tenant_id=tenant_id).first() if tenant_id else None
    if row is None:
        return Brand()
    logo_url = ""
    if row.logo_path:
        logo_url = f"{reverse('branding-logo')}?v={int(row.updated_at.timestamp())}"
    return Brand(
        primary_color=row.primary_color,
        accent_color=row.accent_color,
        logo_url=logo_url,
        logo_path=row.logo_path,
        logo_type=row.logo_type,
    )


def widget_color(*, channel_color: str, brand: Brand) -> str:
    """The colour a channel's widget shows: the channel's own when it was changed from the
    default, else the brand's primary colour, else the default."""
    if brand.primary_color and channel_color.lower() == DEFAULT_CHANNEL_COLOR:
        return brand.primary_color
    return channel_color


def context_processor(request: HttpRequest) -> dict[str, object]:
    """``brand``: the current tenant's :class:`Brand`, read only when a template uses it."""
    tenant = getattr(request, "tenant", None)
    return {"brand": SimpleLazyObject(lambda: brand_get(tenant_id=getattr(tenant, "pk", None)))}


def logo_check(upload: IO[bytes], *, size: int) -> tuple[bytes, str, str]:
    """Read and check an uploaded logo: ``(bytes, content type, suffix)``.

    Raises ``ServiceError("invalid", field="logo")`` when it is larger than
    :data:`MAX_LOGO_BYTES`, not a PNG/JPEG/WebP image Pillow can decode, or larger than
    :data:`MAX_LOGO_PIXELS` on a side."""
    if size > MAX_LOGO_BYTES:
        raise ServiceError(
            "invalid",
            _("The logo may have at most %(kb)d KB.") % {"kb": MAX_LOGO_BYTES // 1024},
            field="logo",
        )
    data = upload.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise ServiceError(
            "invalid",
            _("The logo may have at most %(kb)d KB.") % {"kb": MAX_LOGO_BYTES // 1024},
            field="logo",
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        kind = ""
        width = height = 0
    if kind not in LOGO_FORMATS:
        raise ServiceError(
            "invalid", _("The logo must be a PNG, JPEG or WebP image."), field="logo"
        )
    if width > MAX_LOGO_PIXELS or height > MAX_LOGO_PIXELS:
        raise ServiceError(
            "invalid",
            _("The logo may be at most %(px)d × %(px)d pixels.") % {"px": MAX_LOGO_PIXELS},
            field="logo",
        )
    content_type, suffix = LOGO_FORMATS[kind]
    return data, content_type, suffix


def colour_check(value: object, *, field: str) -> str:
    """``""`` or a ``#rrggbb`` colour (lower case). Raises ``ServiceError("invalid")``."""
    text = str(value or "").strip().lower()
    if not text:
        return ""
    try:
        hex_colour(text)
    except ValidationError:
        raise ServiceError("invalid", _("Use a hex colour like #1f6feb."), field=field) from None
    return text


def branding_save(
    *,
    tenant: Tenant,
    primary_color: str,
    accent_color: str,
    logo: IO[bytes] | None = None,
    logo_size: int = 0,
    logo_remove: bool = False,
) -> Branding:
    """Set the tenant's colours and, when given, its logo (replacing and deleting the old file)
    or remove it. Raises ``ServiceError("invalid")`` for a bad colour or logo (nothing saved).
    Widget, help center and e-mails show the change at their next load."""
    primary = colour_check(primary_color, field="primary_color")
    accent = colour_check(accent_color, field="accent_color")
    checked = logo_check(logo, size=logo_size) if logo is not None else None
    with transaction.atomic():
        row, _created = Branding.objects.select_for_update().get_or_create(tenant=tenant)
        old_path = row.logo_path
        row.primary_color, row.accent_color = primary, accent
        if checked is not None:
            data, content_type, suffix = checked
            name = f"{tenant.schema_name}/branding/logo-{uuid.uuid4().hex}{suffix}"
            row.logo_path = default_storage.save(name, ContentFile(data))
            row.logo_type = content_type
        elif logo_remove:
            row.logo_path = row.logo_type = ""
        row.save()
        if old_path and old_path != row.logo_path:
            transaction.on_commit(lambda: default_storage.delete(old_path))
    return row


def logo_read(brand: Brand) -> bytes:
    """The logo's bytes (``b""`` when there is none or its file is gone)."""
    if not brand.logo_path:
        return b""
    try:
        with default_storage.open(brand.logo_path, "rb") as handle:
            return handle.read(MAX_LOGO_BYTES + 1)
    except OSError:
        return b""
