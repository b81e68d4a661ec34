"""Custom domains a tenant adds itself (``support.acme.com``), proven with a DNS TXT record.

The tenant admin adds a host name; Weiyu shows the record to create, ``_weiyu-verify.<host>``
with a random token as its text. "Verify" looks the record up through the resolver named by
``settings.WEIYU_DNS_RESOLVER`` (a class with ``txt(name) -> list[str]``; the default,
:class:`DnsTxtResolver`, asks the system's DNS servers with dnspython; tests name a fake). Only
then does a :class:`tenants.models.Domain` route the host to the tenant — unless another tenant
routes it already. Removing a custom domain removes its route. The host must also point at
Weiyu (a CNAME or A record) and be in ``ALLOWED_HOSTS`` and the TLS certificate of the proxy in
front (docs/operations.md, "Custom domains").
"""

from __future__ import annotations

import secrets
from typing import Protocol

import dns.exception
import dns.resolver
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from tenants.models import CustomDomain, Domain, Tenant
from weiyu.errors import ServiceError

#: seconds a TXT lookup may take in all
DNS_LIFETIME_S = 5.0
#: custom domains one tenant may have (verified or not)
MAX_DOMAINS = 20


class TxtResolver(Protocol):
    """Looks up TXT records."""

    def txt(self, name: str) -> list[str]:
        """The texts of ``name``'s TXT records (``[]`` when there are none or the name does not
        exist). Raises :class:`DomainCheckError` when the lookup itself fails."""
        ...


class DomainCheckError(Exception):
    """A DNS lookup that failed (timeout, no server answered): try again later."""


class DnsTxtResolver:
    """:class:`TxtResolver` over the system's DNS servers (dnspython), :data:`DNS_LIFETIME_S`
    seconds at most."""

    def txt(self, name: str) -> list[str]:
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=DNS_LIFETIME_S)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DomainCheckError(str(exc) or exc.__class__.__name__) from exc
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def resolver() -> TxtResolver:
    """An instance of ``settings.WEIYU_DNS_RESOLVER``."""
    return import_string(settings.WEIYU_DNS_RESOLVER)()


def host_check(value: object) -> str:
    """A host name a tenant may claim, normalised (lower case, IDNA/punycode, no final dot).

    Raises ``ServiceError("invalid", field="host")`` for anything else: a port, path or
    address, a single label, a label that is not letters, digits and inner hyphens, or a name
    under the platform's own sign-up domain (those are given out by sign-up only)."""
    text = str(value or "").strip().lower().rstrip(".")
    invalid = ServiceError(
        "invalid", _("Enter a host name like support.example.com."), field="host"
    )
    try:
        host = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid from None
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or labels[-1].isdigit():
        raise invalid
    for label in labels:
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            raise invalid
        if not all(c.isalnum() or c == "-" for c in label):
            raise invalid
    base = settings.WEIYU_SIGNUP_DOMAIN
    if host == base or host.endswith("." + base) or host in ("localhost", "127.0.0.1"):
        raise ServiceError(
            "invalid",
            _("Names under %(base)s are given out by sign-up, not added here.") % {"base": base},
            field="host",
        )
    return host


def _taken_elsewhere(host: str, tenant: Tenant) -> bool:
    return Domain.objects.filter(domain=host).exclude(tenant=tenant).exists()


def custom_domain_add(*, tenant: Tenant, host: object) -> CustomDomain:
    """Claim ``host`` for ``tenant`` with a new token (not routed until verified).

    Raises ``ServiceError`` with ``field="host"``: ``invalid`` (:func:`host_check`, or the
    tenant has :data:`MAX_DOMAINS` already) or ``conflict`` (another tenant uses it, or this
    tenant added it already)."""
    name = host_check(host)
    if _taken_elsewhere(name, tenant):
        raise ServiceError("conflict", _("This domain is used by another account."), field="host")
    if CustomDomain.objects.filter(tenant=tenant).count() >= MAX_DOMAINS:
        raise ServiceError(
            "invalid",
            _("You can add at most %(n)d domains.") % {"n": MAX_DOMAINS},
            field="host",
        )
    try:
        with transaction.atomic():
            return CustomDomain.objects.create(
                tenant=tenant, host=name, token=secrets.token_urlsafe(24)
            )
    except IntegrityError:
        raise ServiceError("conflict", _("You added this domain already."), field="host") from None


def custom_domain_verify(*, custom: CustomDomain, txt: TxtResolver | None = None) -> bool:
    """Look for the TXT record; when it holds the token, route the host to the tenant (a
    :class:`Domain`, not primary) and set ``verified_at``. Records the outcome in
    ``checked_at``/``last_error``. Returns whether the domain is verified (an already verified
    one is not looked up again).

    Raises ``ServiceError("conflict")`` when another tenant got the host meanwhile."""
    if custom.verified_at and custom.domain_id:
        return True
    lookup = txt or resolver()
    try:
        texts = lookup.txt(custom.record_name)
        error = (
            ""
            if custom.token in (t.strip() for t in texts)
            else _(
                "No TXT record %(name)s with the text %(token)s was found (DNS changes can take a "
                "while to be seen)."
            )
            % {"name": custom.record_name, "token": custom.token}
        )
    except DomainCheckError as exc:
        error = _("The DNS lookup failed: %(error)s") % {"error": exc}
    now = timezone.now()
    with transaction.atomic():
        row = CustomDomain.objects.select_for_update().get(pk=custom.pk)
        row.checked_at, row.last_error = now, error[:500]
        if not error:
            if _taken_elsewhere(row.host, row.tenant):
                raise ServiceError(
                    "conflict", _("This domain is used by another account."), field="host"
                )
            domain, _created = Domain.objects.get_or_create(
                domain=row.host, defaults={"tenant": row.tenant, "is_primary": False}
            )
            row.domain, row.verified_at = domain, now
        row.save(update_fields=["checked_at", "last_error", "domain", "verified_at"])
    custom.refresh_from_db()
    return not error


def custom_domain_remove(*, custom: CustomDomain) -> None:
    """Forget a custom domain and stop routing it (its :class:`Domain`, unless that became the
    tenant's primary domain, which the platform admin changes). Web processes stop answering on
    it within their host cache's 30 s."""
    with transaction.atomic():
        if custom.domain_id:
            Domain.objects.filter(pk=custom.domain_id, tenant=custom.tenant_id).exclude(
                is_primary=True
            ).delete()
        CustomDomain.objects.filter(pk=custom.pk).delete()
