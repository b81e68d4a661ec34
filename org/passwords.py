"""Passwords: the tenant's password policy and "forgot your password" by e-mail
(docs/security.md, "Passwords").

- :class:`TenantPasswordPolicyValidator` (in ``AUTH_PASSWORD_VALIDATORS``) applies the tenant's
  :class:`org.models.SecuritySettings` — a minimum length and how many kinds of character a
  password mixes — wherever Django validates a new password: the reset and invitation pages,
  the back office's user forms, ``changepassword``.
- :func:`password_reset_request` e-mails a one-time link to every active account of the tenant
  with that address; it answers the same whether or not one exists (no account discovery), and
  is rate-limited per client address and per e-mail address (``org.limits.password_reset``).
  The link is Django's password-reset token (an HMAC over the user's password hash and last
  sign-in: it dies once used, or after ``PASSWORD_RESET_TIMEOUT``).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_tenants.utils import schema_context

from org import audit, limits
from org.models import SecuritySettings, User
from tenants import mail
from weiyu import ratelimit
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit

logger = logging.getLogger(__name__)


def character_kinds(password: str) -> int:
    """How many kinds of character ``password`` mixes (0 to 4): lower-case letters, upper-case
    letters (any script's cased letters count as their case), digits, anything else (symbols,
    spaces, Chinese characters)."""
    kinds = set()
    for char in password:
        if char.islower():
            kinds.add("lower")
        elif char.isupper():
            kinds.add("upper")
        elif char.isdigit():
            kinds.add("digit")
        else:
            kinds.add("other")
    return len(kinds)


def policy() -> tuple[int, int]:
    """``(minimum length, kinds required)`` in force in the current schema (the tenant's
    security settings; on the platform's domains, the platform's own row)."""
    row = SecuritySettings.current()
    return row.password_min_length, row.password_character_classes


class TenantPasswordPolicyValidator:
    """A Django password validator for the tenant's policy (:func:`policy`). Raises
    ``ValidationError`` with code ``password_too_short`` or ``password_too_simple``."""

    def validate(self, password: str, user: object = None) -> None:
        min_length, kinds = policy()
        errors = []
        if len(password) < min_length:
            errors.append(
                ValidationError(
                    ngettext(
                        "This password is too short. It must contain at least %(min_length)d "
                        "character.",
                        "This password is too short. It must contain at least %(min_length)d "
                        "characters.",
                        min_length,
                    ),
                    code="password_too_short",
                    params={"min_length": min_length},
                )
            )
        if character_kinds(password) < kinds:
            errors.append(
                ValidationError(
                    _(
                        "This password must mix at least %(kinds)d of: lower-case letters, "
                        "upper-case letters, digits, other characters."
                    ),
                    code="password_too_simple",
                    params={"kinds": kinds},
                )
            )
        if errors:
            raise ValidationError(errors)

    def get_help_text(self) -> str:
        min_length, kinds = policy()
        text = ngettext(
            "Your password must contain at least %(min_length)d character.",
            "Your password must contain at least %(min_length)d characters.",
            min_length,
        ) % {"min_length": min_length}
        if kinds > 1:
            text += " " + _(
                "It must mix at least %(kinds)d of: lower-case letters, upper-case letters, "
                "digits, other characters."
            ) % {"kinds": kinds}
        return text


def password_reset_request(*, email: str, base_url: str, language: str, ip: str) -> None:
    """Send a password-reset link to every active account of the current tenant whose e-mail
    address is ``email`` (case-insensitive) and that signs in with a password. Nothing tells the
    caller whether such an account exists.

    ``base_url``: ``https://acme.example.com`` (the link is ``<base_url>/account/password/reset/
    <uid>/<token>/``). Raises ``RateLimitedError`` past the limits of
    :func:`org.limits.password_reset`, ``ServiceError("invalid")`` for an empty address."""
    email = (email or "").strip()
    if not email or "@" not in email or len(email) > 254:
        raise ServiceError("invalid", _("Enter the e-mail address of your account."), field="email")
    ratelimit.check(limits.password_reset(schema=connection.schema_name, ip=ip, address=email))
    schema = connection.schema_name
    for user in User.objects.filter(email__iexact=email, is_active=True):
        if not user.has_usable_password():
            continue
        audit.audit_record(
            actor=None, action=audit.PASSWORD_RESET_REQUESTED, target=user, ip=ip or None
        )
        transaction.on_commit(
            lambda pk=user.pk: password_reset_email_task.delay(schema, pk, base_url, language)
        )


def password_reset_link(user: User, base_url: str) -> str:
    """The one-time link of :func:`password_reset_request` for ``user``."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return f"{base_url.rstrip('/')}/account/password/reset/{uid}/{token}/"


def password_reset_send(*, schema: str, user_id: int, base_url: str, language: str) -> bool:
    """E-mail the reset link to the user (in ``language``). Returns whether a mail was sent
    (False: the user is gone or disabled since the request)."""
    with schema_context(schema):
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None or not user.email:
            return False
        link = password_reset_link(user, base_url)
        with translation.override(language):
            body = _(
                "Someone asked to reset the password of your Weiyu account %(username)s.\n\n"
                "Choose a new password here (the link works once, for %(days)d days):\n"
                "%(link)s\n\n"
                "If it was not you, ignore this e-mail: your password stays as it is."
            ) % {
                "username": user.username,
                "days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
                "link": link,
            }
            mail.mail_send(subject=_("Reset your Weiyu password"), body=body, to=[user.email])
    return True


@shared_task(
    name="org.tasks.password_reset_email_task",
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=8,
)
def password_reset_email_task(schema: str, user_id: int, base_url: str, language: str) -> bool:
    """Celery: :func:`password_reset_send`; SMTP errors retry with back-off."""
    return password_reset_send(schema=schema, user_id=user_id, base_url=base_url, language=language)


def password_reset_done(*, user: User) -> None:
    """After a password was chosen through a reset link: the account's sign-in lock-out is
    cleared (django-axes), and its open inbox sockets are closed (every session ended: the
    password changed)."""
    from axes.utils import reset as axes_reset

    axes_reset(username=user.get_username())
    publish_event_on_commit({"type": "session.ended", "keep": ""}, [user.member_key])
