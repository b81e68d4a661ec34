"""Self-service sign-up on the public site (TEN-4; docs/operations.md "Sign-up").

1. A company fills ``/signup/`` on the platform domain: company name, subdomain, the
   administrator's e-mail address and password. :func:`signup_request` checks it (the abuse
   controls below), stores a :class:`tenants.models.Signup` (password hashed) and has a worker
   e-mail a verification link (:func:`verification_send`).
2. The link (``/signup/verify/<token>/``, signed, valid ``WEIYU_SIGNUP_LINK_MAX_AGE_S``) shows
   one button; pressing it (a POST, so a mail scanner opening links creates nothing) runs
   :func:`signup_verify`: the tenant is provisioned by cloning the template schema
   (:func:`tenants.services.tenant_create`, about a second), on the sign-up plan with a trial
   end, its administrator being the e-mail address with the chosen password.
3. The browser is sent to the tenant's own domain with a one-time sign-in token
   (:func:`welcome_token`, ten minutes, void once the administrator has signed in) which lands on
   the back office's getting-started page.

Abuse controls: sign-ups per client address per hour (``WEIYU_SIGNUP_PER_IP_HOUR``,
:mod:`weiyu.ratelimit`); reserved subdomains (:data:`RESERVED` plus ``WEIYU_SIGNUP_RESERVED``);
only ASCII letters, digits and inner hyphens — punycode (``xn--``) and other scripts refused — and
no subdomain that reads like a reserved or taken one (``adm1n``, ``g00gle``: :func:`skeleton`);
disposable e-mail domains refused (:data:`DISPOSABLE` plus ``WEIYU_SIGNUP_DISPOSABLE_DOMAINS`` and
the file ``WEIYU_SIGNUP_DISPOSABLE_FILE``); a honeypot field (the view); ``WEIYU_SIGNUP`` off
closes sign-up.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from tenants import mail, services
from tenants.models import Domain, Plan, Signup, Tenant
from weiyu import ratelimit
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: subdomains nobody may sign up for (the platform's own names and common service names)
RESERVED = frozenset(
    [
        "www",
        "admin",
        "administrator",
        "api",
        "app",
        "apps",
        "assets",
        "auth",
        "billing",
        "blog",
        "cdn",
        "chat",
        "dashboard",
        "dev",
        "docs",
        "download",
        "email",
        "ftp",
        "help",
        "imap",
        "info",
        "login",
        "mail",
        "media",
        "mx",
        "news",
        "ns",
        "ns1",
        "ns2",
        "pop",
        "pop3",
        "portal",
        "public",
        "root",
        "security",
        "shop",
        "signup",
        "smtp",
        "static",
        "status",
        "support",
        "test",
        "web",
        "webmail",
        "weiyu",
        "widget",
        "ws",
        "wss",
    ]
)
#: disposable e-mail domains refused by default (a short list of the common ones; the settings
#: add more)
DISPOSABLE = frozenset(
    [
        "mailinator.com",
        "guerrillamail.com",
        "guerrillamail.net",
        "sharklasers.com",
        "10minutemail.com",
        "temp-mail.org",
        "tempmail.com",
        "yopmail.com",
        "trashmail.com",
        "getnada.com",
        "dispostable.com",
        "maildrop.cc",
        "throwawaymail.com",
        "fakeinbox.com",
        "mohmal.com",
        "emailondeck.com",
        "mintemail.com",
        "spamgourmet.com",
        "tempail.com",
        "moakt.com",
    ]
)
SUBDOMAIN_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
#: characters that read alike, folded by :func:`skeleton`
_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "3": "e", "4": "a", "5": "s", "7": "t",
                       "8": "b", "9": "g", "-": ""})  # fmt: skip
VERIFY_SALT = "weiyu.signup.verify"
WELCOME_SALT = "weiyu.signup.welcome"
#: seconds the sign-in link to the new back office works
WELCOME_MAX_AGE_S = 600


def skeleton(label: str) -> str:
    """What a subdomain looks like to a reader: digits that pass for letters folded to them,
    ``rn`` → ``m``, ``vv`` → ``w``, hyphens dropped (``adm1n`` → ``admln`` = ``admin``'s)."""
    return label.lower().replace("rn", "m").replace("vv", "w").translate(_FOLD)


@lru_cache(maxsize=1)
def _reserved_skeletons() -> frozenset[str]:
    return frozenset(skeleton(r) for r in RESERVED | set(settings.WEIYU_SIGNUP_RESERVED))


def disposable_domains() -> frozenset[str]:
    """The e-mail domains refused: :data:`DISPOSABLE`, ``WEIYU_SIGNUP_DISPOSABLE_DOMAINS`` and
    the lines of ``WEIYU_SIGNUP_DISPOSABLE_FILE`` (``#`` comments allowed)."""
    extra = set(settings.WEIYU_SIGNUP_DISPOSABLE_DOMAINS)
    path = settings.WEIYU_SIGNUP_DISPOSABLE_FILE
    if path:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            entry = line.split("#", 1)[0].strip().lower()
            if entry:
                extra.add(entry)
    return DISPOSABLE | extra


def tenant_domain(subdomain: str) -> str:
    """The host name a signed-up company gets: ``<subdomain>.<WEIYU_SIGNUP_DOMAIN>``."""
    return f"{subdomain}.{settings.WEIYU_SIGNUP_DOMAIN}"


def subdomain_check(value: object) -> str:
    """The subdomain, normalised (trimmed, lower case), when a company may have it. Raises
    ``ServiceError`` with ``field="subdomain"``: ``invalid`` (not 3-32 ASCII letters, digits and
    inner hyphens starting with a letter; punycode or another script; reserved; reads like a
    reserved name) or ``conflict`` (taken, or reads like a taken one)."""
    label = str(value or "").strip().lower()
    if not label.isascii() or label.startswith("xn--") or label[2:4] == "--":
        raise ServiceError(
            "invalid",
            _("Use only the letters a–z, digits and hyphens (no accents or other scripts)."),
            field="subdomain",
        )
    if not SUBDOMAIN_RE.match(label):
        raise ServiceError(
            "invalid",
            _("A subdomain is 3 to 32 letters a–z, digits or hyphens, starting with a letter."),
            field="subdomain",
        )
    reserved = RESERVED | set(settings.WEIYU_SIGNUP_RESERVED)
    if label in reserved or skeleton(label) in _reserved_skeletons():
        raise ServiceError(
            "invalid", _("'%(name)s' is reserved.") % {"name": label}, field="subdomain"
        )
    suffix = f".{settings.WEIYU_SIGNUP_DOMAIN}"
    schema = label.replace("-", "_")
    taken = Tenant.objects.filter(schema_name=schema).exists() or (
        Domain.objects.filter(domain=tenant_domain(label)).exists()
    )
    if not taken:
        mine = skeleton(label)
        taken = any(
            skeleton(host[: -len(suffix)]) == mine
            for host in Domain.objects.filter(domain__endswith=suffix).values_list(
                "domain", flat=True
            )
            if "." not in host[: -len(suffix)]
        )
    if taken:
        raise ServiceError(
            "conflict",
            _("'%(name)s' is taken, or too close to a name that is.") % {"name": label},
            field="subdomain",
        )
    return label


def email_check(value: object) -> str:
    """The administrator's e-mail address, trimmed, when it is valid and not at a disposable
    domain. Raises ``ServiceError("invalid", field="email")``."""
    email = str(value or "").strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ServiceError("invalid", " ".join(exc.messages), field="email") from exc
    if len(email) > 150:
        raise ServiceError("invalid", _("The e-mail address is too long."), field="email")
    if email.rsplit("@", 1)[1].lower() in disposable_domains():
        raise ServiceError(
            "invalid",
            _("Please use your work e-mail address, not a disposable one."),
            field="email",
        )
    return email


def _rate_limit(ip: str) -> None:
    ratelimit.check(
        [
            ratelimit.Limit(
                name="signup_ip",
                key=ip or "-",
                limit=settings.WEIYU_SIGNUP_PER_IP_HOUR if settings.WEIYU_RATE_LIMITS else 0,
                window_s=3600,
                message=lambda: _("Too many sign-ups from your address. Please try again later."),
            )
        ]
    )


def signup_request(
    *,
    company: object,
    subdomain: object,
    email: object,
    password: object,
    ip: str,
    language: str,
    base_url: str,
) -> Signup:
    """Check a sign-up, store it and have its verification mail sent (by a worker, once this
    transaction commits) with a link under ``base_url`` (``scheme://host[:port]`` of the
    platform domain), in ``language``.

    Raises ``ServiceError``: ``forbidden`` (sign-up is off), ``rate_limited`` (too many from
    ``ip`` this hour; counted before anything else), ``invalid`` / ``conflict`` with ``field``
    one of ``company``, ``subdomain``, ``email``, ``password``. Nothing is stored then."""
    if not settings.WEIYU_SIGNUP:
        raise ServiceError("forbidden", _("Sign-up is closed on this platform."))
    _rate_limit(ip)
    company = str(company or "").strip()
    if not company or len(company) > 100:
        raise ServiceError(
            "invalid", _("Enter your company's name (at most 100 characters)."), field="company"
        )
    label = subdomain_check(subdomain)
    address = email_check(email)
    password = str(password or "")
    try:
        validate_password(password, get_user_model()(username=address, email=address))
    except ValidationError as exc:
        raise ServiceError("invalid", " ".join(exc.messages), field="password") from exc
    with transaction.atomic():
        signup = Signup.objects.create(
            company=company,
            subdomain=label,
            email=address,
            password_hash=make_password(password),
            language=language,
            ip_address=ip or None,
        )
        args = (signup.pk, base_url, language)
        transaction.on_commit(lambda: signup_verification_email_task.delay(*args))
    return signup


def verification_token(signup: Signup) -> str:
    """The signed token of ``signup``'s verification link (its id and e-mail address)."""
    return signing.dumps({"id": signup.pk, "email": signup.email}, salt=VERIFY_SALT)


def signup_from_token(token: str) -> Signup:
    """The sign-up a verification token names. Raises ``ServiceError("invalid_token")`` when
    the token is forged, expired (``WEIYU_SIGNUP_LINK_MAX_AGE_S``) or names no sign-up."""
    try:
        data = signing.loads(token, salt=VERIFY_SALT, max_age=settings.WEIYU_SIGNUP_LINK_MAX_AGE_S)
    except signing.BadSignature as exc:
        raise ServiceError(
            "invalid_token",
            _("This link has expired or is not valid. Please sign up again."),
        ) from exc
    signup = Signup.objects.filter(pk=data.get("id"), email=data.get("email")).first()
    if signup is None:
        raise ServiceError("invalid_token", _("This link is not valid. Please sign up again."))
    return signup


def verification_send(*, signup_id: int, base_url: str, language: str) -> bool:
    """Compose and send the verification mail of a sign-up (the body of
    ``signup_verification_email_task``). Returns whether a mail was sent (the sign-up is gone or
    already verified: False)."""
    signup = Signup.objects.filter(pk=signup_id, verified_at__isnull=True).first()
    if signup is None:
        return False
    link = f"{base_url.rstrip('/')}/signup/verify/{verification_token(signup)}/"
    with translation.override(language):
        body = _(
            "Welcome to Weiyu!\n\n"
            "Confirm your e-mail address to create the workspace of %(company)s at "
            "%(domain)s (the link works for %(hours)d hours):\n%(link)s\n\n"
            "If you did not sign up, ignore this mail: nothing is created without it."
        ) % {
            "company": signup.company,
            "domain": tenant_domain(signup.subdomain),
            "hours": settings.WEIYU_SIGNUP_LINK_MAX_AGE_S // 3600,
            "link": link,
        }
        # the platform's own mail (no tenant exists yet)
        mail.mail_send(
            subject=_("Confirm your e-mail address for Weiyu"), body=body, to=[signup.email],
            schema=settings.PUBLIC_SCHEMA_NAME,
        )  # fmt: skip
    return True


@shared_task(
    name="tenants.tasks.signup_verification_email_task",
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=8,
)
def signup_verification_email_task(signup_id: int, base_url: str, language: str) -> bool:
    """E-mail a sign-up its verification link (:func:`verification_send`); SMTP errors retry
    with back-off. Returns whether a mail was sent."""
    return verification_send(signup_id=signup_id, base_url=base_url, language=language)


def signup_plan() -> Plan:
    """The plan sign-ups get (``WEIYU_SIGNUP_PLAN``), made when missing as a trial of
    ``WEIYU_TRIAL_DAYS`` days with small limits the platform admin can change."""
    plan, _created = Plan.objects.get_or_create(
        code=settings.WEIYU_SIGNUP_PLAN,
        defaults={
            "name": _("Trial"),
            "seats": 3,
            "widget_channels": 1,
            "conversations_per_month": 100,
            "storage_bytes": 100 * 1024 * 1024,
            "ai_answers_per_month": 50,
            "trial_days": settings.WEIYU_TRIAL_DAYS,
        },
    )
    return plan


def signup_verify(*, token: str) -> Signup:
    """Verify a sign-up and provision its tenant: cloned from the template schema, on
    :func:`signup_plan` (a trial ends ``trial_days`` after now), with the administrator
    (username and e-mail: the address signed up with, the chosen password). A second call for
    the same sign-up returns it as it is (one tenant per sign-up).

    Raises ``ServiceError``: ``invalid_token`` (:func:`signup_from_token`), ``forbidden``
    (sign-up closed), ``conflict`` (the subdomain was taken meanwhile; nothing created)."""
    if not settings.WEIYU_SIGNUP:
        raise ServiceError("forbidden", _("Sign-up is closed on this platform."))
    signup = signup_from_token(token)
    with transaction.atomic():
        signup = Signup.objects.select_for_update().get(pk=signup.pk)
        if signup.tenant_id is not None:
            return signup
        label = subdomain_check(signup.subdomain)
        tenant = services.tenant_create(
            name=signup.company,
            schema_name=label.replace("-", "_"),
            domain=tenant_domain(label),
            admin_username=signup.email,
            admin_password_hash=signup.password_hash,  # hashed once, when the form was sent
            admin_email=signup.email,
        )
        plan = signup_plan()
        tenant.plan = plan
        if plan.trial_days:
            tenant.trial_ends_at = timezone.now() + dt.timedelta(days=plan.trial_days)
        tenant.save(update_fields=["plan", "trial_ends_at"])
        signup.tenant = tenant
        signup.verified_at = timezone.now()
        signup.password_hash = ""
        signup.save(update_fields=["tenant", "verified_at", "password_hash"])
    connection.set_schema_to_public()
    logger.info("sign-up %s: tenant %s provisioned", signup.pk, tenant.schema_name)
    return signup


def signups_purge(*, now: dt.datetime | None = None) -> int:
    """Delete the sign-ups never verified whose link has expired (``WEIYU_SIGNUP_LINK_MAX_AGE_S``
    old): their e-mail address and password hash are kept no longer than they can be used
    (beat: ``tenants.tasks.signups_purge_task``, hourly). Returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.WEIYU_SIGNUP_LINK_MAX_AGE_S)
    deleted, _by_model = Signup.objects.filter(
        verified_at__isnull=True, created_at__lt=cutoff
    ).delete()
    return deleted


def welcome_token(*, tenant: Tenant, username: str) -> str:
    """A one-time sign-in token for the new administrator ``username`` of ``tenant``, used at
    ``/signup/welcome/<token>/`` on the tenant's domain: valid :data:`WELCOME_MAX_AGE_S` seconds
    and only until that user has signed in once."""
    return signing.dumps({"schema": tenant.schema_name, "username": username}, salt=WELCOME_SALT)


def welcome_user(*, token: str) -> Any:
    """The administrator a welcome token signs in, in the current tenant's schema. Raises
    ``ServiceError("invalid_token")`` when the token is forged, expired, for another tenant, or
    its user has signed in already."""
    try:
        data = signing.loads(token, salt=WELCOME_SALT, max_age=WELCOME_MAX_AGE_S)
    except signing.BadSignature as exc:
        raise ServiceError("invalid_token", _("This sign-in link has expired.")) from exc
    user = None
    if data.get("schema") == connection.schema_name:
        user = (
            get_user_model()
            .objects.filter(username=data.get("username"), is_active=True, last_login__isnull=True)
            .first()
        )
    if user is None:
        raise ServiceError(
            "invalid_token", _("This sign-in link has been used already. Please sign in.")
        )
    return user
