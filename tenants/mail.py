"""Every e-mail a tenant's product sends goes through :func:`mail_send`: transcripts, ticket
replies, password resets, invitations, webhook notices, sign-up confirmations.

It picks the sender: the tenant's own SMTP server and address (:class:`tenants.models.
MailSettings`) once a test mail has verified them, else the platform's (``EMAIL_*``,
``DEFAULT_FROM_EMAIL``). A tenant that set a logo or colours (:mod:`tenants.branding`) gets an
HTML part with them beside the plain text; the logo travels inline (``cid:``), so no mail
client fetches it from us.

A tenant chooses the SMTP host, so connections to it obey the outgoing-request rules of
:mod:`weiyu.outbound`: every address the host resolves to must be public unless its
``ip:port`` is in ``WEIYU_OUTBOUND_ALLOW``, and the socket connects to the address that was
checked (TLS still verifies the host name). A verified server that is refused later (its name
now points inside) is not used: the mail goes out through the platform's server instead.
"""

from __future__ import annotations

import logging
import smtplib
import socket
from email.mime.image import MIMEImage
from email.utils import formataddr
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from tenants import branding
from tenants.models import MailSettings, Tenant
from weiyu import outbound
from weiyu.errors import ServiceError

logger = logging.getLogger(__name__)

#: seconds an SMTP exchange with a tenant's server may take
SMTP_TIMEOUT_S = 20
#: the fields whose change makes verified settings unverified again
_CONNECTION_FIELDS = ("host", "port", "security", "username", "password", "from_address")


def _guarded_socket(smtp: smtplib.SMTP, host: str, port: int, timeout: float) -> socket.socket:
    addresses = outbound.checked_addresses(host, port)
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, smtp.source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"cannot connect to {host}:{port}")


class _GuardedSMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _guarded_socket(self, host, port, timeout)


class _GuardedSMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = _guarded_socket(self, host, port, timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


class GuardedEmailBackend(EmailBackend):
    """Django's SMTP backend connecting only to addresses :mod:`weiyu.outbound` accepts.
    Raises :class:`weiyu.outbound.OutboundRefusedError` for a refused host."""

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return _GuardedSMTPSSL if self.use_ssl else _GuardedSMTP


def connection_for(row: MailSettings) -> GuardedEmailBackend:
    """A (not yet opened) backend for a tenant's SMTP settings."""
    return GuardedEmailBackend(
        host=row.host,
        port=row.port,
        username=row.username or None,
        password=row.password or None,
        use_tls=row.security == MailSettings.Security.STARTTLS,
        use_ssl=row.security == MailSettings.Security.SSL,
        timeout=SMTP_TIMEOUT_S,
        fail_silently=False,
    )


def sender_for(row: MailSettings) -> str:
    """``"Name <address>"`` (or the bare address) of a tenant's settings."""
    return formataddr((row.from_name, row.from_address)) if row.from_name else row.from_address


def _tenant_for(schema: str) -> Tenant | None:
    if not schema or schema == settings.PUBLIC_SCHEMA_NAME:
        return None
    return Tenant.objects.filter(schema_name=schema).first()


def _message(
    *,
    tenant: Tenant | None,
    subject: str,
    body: str,
    to: list[str],
    reply_to: list[str] | None,
    from_email: str | None,
    backend: Any,
) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject, body=body, from_email=from_email, to=to, reply_to=reply_to,
        connection=backend,
    )  # fmt: skip
    brand = branding.brand_get(tenant_id=tenant.pk if tenant else None)
    if brand.is_set:
        logo = branding.logo_read(brand)
        html = render_to_string(
            "email/branded.html",
            {"subject": subject, "body": body, "brand": brand, "has_logo": bool(logo),
             "company": tenant.name if tenant else ""},
        )  # fmt: skip
        message.attach_alternative(html, "text/html")
        if logo:
            # multipart/related: the HTML's <img src="cid:logo"> is this part
            message.mixed_subtype = "related"
            image = MIMEImage(logo, _subtype=brand.logo_type.split("/", 1)[1])
            image.add_header("Content-ID", "<logo>")
            image.add_header("Content-Disposition", "inline", filename="logo")
            message.attach(image)
    return message


def mail_send(
    *,
    subject: str,
    body: str,
    to: list[str],
    reply_to: list[str] | None = None,
    schema: str | None = None,
) -> None:
    """Send one plain-text e-mail for the tenant of ``schema`` (default: the current schema),
    through its verified SMTP settings and sender, else the platform's; with a branded HTML part
    when the tenant has branding. ``subject`` and ``body`` are already translated.

    Raises ``OSError`` (``smtplib.SMTPException`` included) when the server fails, for the
    calling task to retry. A tenant server refused by the outgoing-request rules is logged and
    replaced by the platform's server."""
    tenant = _tenant_for(schema or connection.schema_name)
    row = (
        MailSettings.objects.filter(tenant=tenant, verified_at__isnull=False).first()
        if tenant
        else None
    )
    if row is not None:
        message = _message(
            tenant=tenant, subject=subject, body=body, to=to, reply_to=reply_to,
            from_email=sender_for(row), backend=connection_for(row),
        )  # fmt: skip
        try:
            message.send()
        except outbound.OutboundRefusedError as exc:
            logger.warning("tenant %s: SMTP server refused (%s); platform server used", tenant, exc)
        else:
            return
    _message(
        tenant=tenant, subject=subject, body=body, to=to, reply_to=reply_to, from_email=None,
        backend=None,
    ).send()  # fmt: skip


def host_check(host: object, port: object) -> str:
    """The SMTP host, normalised, when the outgoing-request rules accept it on ``port`` (it
    resolves, to public or allow-listed addresses only). Raises ``ServiceError("invalid",
    field="host")`` with the reason."""
    name = str(host or "").strip().lower().rstrip(".")
    try:
        outbound.checked_addresses(name, int(port or 0))
    except (outbound.OutboundRefusedError, ValueError) as exc:
        raise ServiceError("invalid", str(exc), field="host") from None
    return name


def mail_settings_save(*, tenant: Tenant, values: dict[str, Any]) -> MailSettings:
    """Create or change the tenant's SMTP settings from ``values`` (the model's editable fields;
    a ``password`` of ``""`` or ``None`` keeps the stored one). A change of server, account or
    sender clears ``verified_at`` and bumps ``version``: the platform's server sends again until
    a new test mail succeeds. Raises ``ServiceError("invalid", field="host")`` for a host the
    outgoing-request rules refuse (resolved now; checked again on every connection)."""
    host = host_check(values.get("host"), values.get("port"))
    with transaction.atomic():
        row = MailSettings.objects.select_for_update().filter(tenant=tenant).first()
        if row is None:
            row = MailSettings(tenant=tenant)
            before = None
        else:
            before = {name: getattr(row, name) for name in _CONNECTION_FIELDS}
        for name in ("port", "security", "username", "from_name", "from_address"):
            if name in values:
                setattr(row, name, values[name] if values[name] is not None else "")
        row.host = host
        if values.get("password"):
            row.password = values["password"]
        after = {name: getattr(row, name) for name in _CONNECTION_FIELDS}
        if before is not None and before != after:
            row.version += 1
            row.verified_at = None
        row.full_clean(exclude=["tenant"])
        row.save()
    return row


def mail_settings_delete(*, tenant: Tenant) -> None:
    """Forget the tenant's SMTP settings: the platform's server and sender send again."""
    MailSettings.objects.filter(tenant=tenant).delete()


def mail_settings_test_schedule(*, row: MailSettings, to: str) -> None:
    """After the current transaction commits, have a worker send a test mail to ``to`` through
    ``row`` (:func:`mail_settings_test_task`); its outcome shows in the back office as
    ``verified_at`` or ``last_error``."""
    args = [row.pk, row.version, to, translation.get_language() or settings.LANGUAGE_CODE]
    transaction.on_commit(lambda: mail_settings_test_task.delay(*args))


def mail_settings_test(*, settings_id: int, version: int, to: str) -> bool:
    """Send the test mail through the settings, in the active language, and record the outcome:
    on success ``verified_at`` (only if the settings are still at ``version``: a change made
    meanwhile is not verified by a test of the old values), on failure ``last_error`` (the
    settings stay unverified). Returns whether it was sent."""
    row = MailSettings.objects.select_related("tenant").filter(pk=settings_id).first()
    if row is None:
        return False
    body = _(
        "This test mail was sent through %(host)s:%(port)d as %(sender)s.\n\n"
        "From now on, the e-mails of %(company)s on Weiyu are sent this way."
    ) % {"host": row.host, "port": row.port, "sender": row.from_address, "company": row.tenant.name}
    message = _message(
        tenant=row.tenant, subject=_("Weiyu: test of your mail settings"), body=body, to=[to],
        reply_to=None, from_email=sender_for(row), backend=connection_for(row),
    )  # fmt: skip
    error = ""
    try:
        message.send()
    except (OSError, outbound.OutboundRefusedError) as exc:
        error = str(exc) or exc.__class__.__name__
    now = timezone.now()
    updates: dict[str, Any] = {"tested_at": now, "last_error": error[:1000]}
    if not error:
        updates["verified_at"] = now
    MailSettings.objects.filter(pk=row.pk, version=version).update(**updates)
    return not error


@shared_task(name="tenants.tasks.mail_settings_test_task")
def mail_settings_test_task(settings_id: int, version: int, to: str, language: str) -> bool:
    """Send a tenant's test mail (:func:`mail_settings_test`); not retried, the admin sees the
    error and tries again."""
    with translation.override(language):
        return mail_settings_test(settings_id=settings_id, version=version, to=to)
