"""Secrets at rest for two-factor sign-in (docs/security.md): every authenticator's key moves
from django-otp's plain ``key`` column to an encrypted :class:`org.models.TOTPSecret` (the
column is emptied), and every recovery code is replaced by its keyed hash (the same one
``org.twofactor.recovery_digest`` computes), so the codes people wrote down keep working.

Backwards: the keys go back to their plain column; hashed recovery codes cannot be turned back
into codes (they stay hashed and stop working after going back — make new ones)."""

from django.conf import settings
from django.db import migrations
from django.utils.crypto import salted_hmac

_SALT = "weiyu.recovery-code"


def _digest(code: str) -> str:
    return salted_hmac(_SALT, code, secret=settings.SECRET_KEY, algorithm="sha256").hexdigest()[:16]


def seal(apps, schema_editor):
    totp = apps.get_model("otp_totp", "TOTPDevice")
    secret = apps.get_model("org", "TOTPSecret")
    token = apps.get_model("otp_static", "StaticToken")
    for device in totp.objects.exclude(key=""):
        secret.objects.update_or_create(device_id=device.pk, defaults={"key": device.key})
        totp.objects.filter(pk=device.pk).update(key="")
    for row in token.objects.all():
        # plain codes are 8 base32 characters; a digest is 16 hex digits
        if len(row.token) < 16:
            token.objects.filter(pk=row.pk).update(token=_digest(row.token.lower()))


def unseal(apps, schema_editor):
    totp = apps.get_model("otp_totp", "TOTPDevice")
    secret = apps.get_model("org", "TOTPSecret")
    for row in secret.objects.all():
        totp.objects.filter(pk=row.device_id).update(key=row.key)
    secret.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("org", "0013_security_keys_and_sealed_totp"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(seal, unseal)]
