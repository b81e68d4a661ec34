"""Secrets at rest: a text column whose value is encrypted with a key from the environment
(docs/security.md, "Secrets at rest").

Vendor API keys, webhook signing secrets and channel credentials are kept in tenant tables; a
database dump or a replica must not hand them out. :class:`EncryptedTextField` stores a Fernet
token (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package) and gives Python code the
plain ``str``.

Keys: ``WEIYU_FIELD_KEYS`` in the environment, a comma-separated list of Fernet keys (32
url-safe base64 bytes each; ``python -c "from cryptography.fernet import Fernet;
print(Fernet.generate_key().decode())"``). The first key encrypts, every key decrypts, so a key
is rotated by putting a new one first, running ``manage.py rotate_field_keys`` (re-encrypts every
such column of every tenant with the first key) and then dropping the old one. Without the
variable (development) one key is derived from ``SECRET_KEY`` with HKDF-SHA256 (it stays a
decrypting key after keys are configured, until ``rotate_field_keys`` has run); in production
the variable is required (``check --deploy`` reports ``tenants.E002``).

Limits: the column cannot be filtered or ordered by its plain value (each encryption of the
same text differs); an empty string is stored as an empty string (nothing to hide).
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

#: every Fernet token starts with its version byte 0x80, base64 "gA"
TOKEN_PREFIX = "gA"  # noqa: S105 - a format marker, not a secret


class FieldKeyError(ImproperlyConfigured):
    """A stored value none of the configured keys decrypts: ``WEIYU_FIELD_KEYS`` lost the key
    it was written with (or ``SECRET_KEY`` changed while no keys were configured)."""


def derived_key(secret: str) -> bytes:
    """The development key: HKDF-SHA256 of ``secret`` (``SECRET_KEY``), 32 bytes, as a Fernet key
    (url-safe base64)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"weiyu-field-key")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def configured_keys() -> list[bytes]:
    """The keys in order (the first encrypts): ``settings.WEIYU_FIELD_KEYS`` followed by the key
    derived from ``SECRET_KEY`` (which only decrypts what was written before keys were
    configured), or that derived key alone. Raises :class:`ImproperlyConfigured` for a key
    that is not a valid Fernet key."""
    raw = [k.strip() for k in getattr(settings, "WEIYU_FIELD_KEYS", []) if k.strip()]
    fallback = derived_key(settings.SECRET_KEY)
    if not raw:
        return [fallback]
    keys = []
    for position, key in enumerate(raw, start=1):
        try:
            Fernet(key.encode())
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"WEIYU_FIELD_KEYS: key {position} is not a Fernet key (32 url-safe base64 bytes)"
            ) from exc
        keys.append(key.encode())
    # values written before the keys were configured still open; rotation rewrites them
    return [*keys, fallback]


@functools.cache
def _box(keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def box() -> MultiFernet:
    """The :class:`MultiFernet` of :func:`configured_keys` (cached per key list)."""
    return _box(tuple(configured_keys()))


def encrypt(plain: str) -> str:
    """``plain`` → a Fernet token (str) under the first key; ``""`` stays ``""``."""
    if not plain:
        return ""
    return box().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """A token from :func:`encrypt` → the plain text. Raises :class:`FieldKeyError` when no
    configured key opens it."""
    if not token:
        return ""
    try:
        return box().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise FieldKeyError(
            "A stored secret cannot be decrypted with WEIYU_FIELD_KEYS (or the key derived from "
            "SECRET_KEY): restore the key it was written with."
        ) from exc


def rotate(token: str) -> str:
    """A token re-encrypted under the first key (any configured key may have written it)."""
    if not token:
        return ""
    try:
        return box().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise FieldKeyError("A stored secret cannot be decrypted for rotation.") from exc


class EncryptedTextField(models.TextField):
    """A ``TextField`` whose column holds a Fernet token and whose Python value is the plain
    ``str`` (see the module docstring for keys and rotation). Reading a value no configured key
    opens raises :class:`FieldKeyError`."""

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return encrypt(str(value))
