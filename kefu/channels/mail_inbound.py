"""Mails coming in to an e-mail channel (docs/channels.md, "E-mail"): stored once each as a
``ChannelEvent`` and handled by the shared Celery task (``kefu.channels.inbound``, which calls
:func:`kefu.channels.mail.mail_store`). Sources: IMAP polling by the beat
(:func:`imap_poll_once`) and the inbound SMTP endpoint (``manage.py email_smtpd``,
:class:`InboundSmtpHandler`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import imaplib
import re
import select
import time
from email import policy
from email.parser import BytesParser

from asgiref.sync import sync_to_async
from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _
from django_tenants.utils import get_tenant_model, schema_context

from kefu.channels.base import ChannelInputError, DeliveryError, logger
from kefu.channels.delivery import account_error_record
from kefu.channels.inbound import channel_event_accept
from kefu.channels.mail import imap_connect, message_ids
from kefu.models import Channel, ChannelAccount
from tenants import fanout

#: mails fetched per poll and channel (the rest on the next poll)
POLL_BATCH = 200


# ---- accepting mails ---------------------------------------------------------------------------
def mail_accept(*, channel: Channel, raw: bytes) -> bool:
    """Store one received mail as an event of ``channel`` (once: its ``Message-ID``, else the
    SHA-256 of its bytes, is the event's id) and queue its handling after commit. Returns False
    for a mail already stored. A mail over ``WEIYU_EMAIL_MAX_BYTES`` is refused with
    :class:`ChannelInputError` (logged by the caller)."""
    if len(raw) > settings.WEIYU_EMAIL_MAX_BYTES:
        raise ChannelInputError(_("The mail is larger than the channel accepts."))
    match = message_ids(
        BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)["Message-ID"]
    )
    external_id = f"mid:{match[0]}"[:128] if match else f"sha:{hashlib.sha256(raw).hexdigest()}"
    return channel_event_accept(
        channel=channel, external_id=external_id, payload={"mail": base64.b64encode(raw).decode()}
    )


# ---- IMAP polling ------------------------------------------------------------------------------
def imap_poll_once(*, channel: Channel) -> int:
    """Fetch the mails that arrived in the channel's IMAP folder since the last poll (UIDs above
    the stored one; all of them again when the folder's UIDVALIDITY changed — those already
    stored are recognised by their id), at most :data:`POLL_BATCH`, and store each
    (:func:`mail_accept`). The stored UID moves in the same transaction as the mails, after a
    lock on the channel: a worker that dies part-way leaves both as they were, and two polls
    never run at once. Mails are only read (``BODY.PEEK``), never flagged or deleted. Returns
    the number of new mails. Raises :class:`DeliveryError` when the server cannot be used."""
    account = ChannelAccount.objects.get(channel=channel)
    client = imap_connect(account)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtext(%s))",
                    [f"{connection.schema_name}.kefu.imap.{channel.pk}"],
                )
                if not cursor.fetchone()[0]:
                    return 0
            account = ChannelAccount.objects.select_for_update().get(pk=account.pk)
            validity = int((client.response("UIDVALIDITY")[1] or [b"0"])[0] or 0)
            last = account.imap_last_uid if validity == account.imap_uidvalidity else 0
            status, data = client.uid("SEARCH", None, f"UID {last + 1}:*")
            if status != "OK":
                raise DeliveryError(_("IMAP: the search failed."))
            uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > last)[:POLL_BATCH]
            stored = 0
            for uid in uids:
                raw = _imap_fetch(client, uid, channel)
                if raw is not None:
                    try:
                        stored += mail_accept(channel=channel, raw=raw)
                    except ChannelInputError as exc:
                        logger.warning("email channel %s: UID %s skipped: %s", channel.pk, uid, exc)
                last = max(last, uid)
            ChannelAccount.objects.filter(pk=account.pk).update(
                imap_uidvalidity=validity, imap_last_uid=last
            )
            return stored
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            logger.info("email channel %s: IMAP logout failed", channel.pk)


def _imap_fetch(client: imaplib.IMAP4, uid: int, channel: Channel) -> bytes | None:
    """One mail's bytes, or None when it is too large (skipped with a log line)."""
    status, data = client.uid("FETCH", str(uid), "(RFC822.SIZE)")
    size = re.search(rb"RFC822\.SIZE (\d+)", b" ".join(d for d in data if isinstance(d, bytes)))
    if status == "OK" and size and int(size.group(1)) > settings.WEIYU_EMAIL_MAX_BYTES:
        logger.warning("email channel %s: UID %s of %s bytes skipped", channel.pk, uid, size[1])
        return None
    status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
    if status != "OK":
        raise DeliveryError(_("IMAP: the mail cannot be fetched."))
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return bytes(item[1])
    return None


@shared_task(name="kefu.tasks.imap_poll_task", acks_late=True)
def imap_poll_task(schema: str, channel_id: int) -> int:
    """Poll one e-mail channel's IMAP folder (:func:`imap_poll_once`); a failure is recorded in
    the channel's health and the next beat tries again. Returns the new mails."""
    with schema_context(schema):
        channel = Channel.objects.filter(
            pk=channel_id, kind=Channel.Kind.EMAIL, is_active=True
        ).first()
        if channel is None:
            return 0
        try:
            return imap_poll_once(channel=channel)
        except DeliveryError as exc:
            logger.warning("email channel %s: IMAP poll failed: %s", channel_id, exc.message)
            account_error_record(channel_id=channel_id, error=exc.message)
            return 0


@shared_task(name="kefu.tasks.imap_poll_tenant_task")
def imap_poll_tenant_task(schema: str) -> int:
    """One :func:`imap_poll_task` per active e-mail channel with an IMAP host of ``schema``;
    returns how many were queued."""
    with schema_context(schema):
        ids = list(
            ChannelAccount.objects.filter(channel__kind=Channel.Kind.EMAIL, channel__is_active=True)
            .exclude(imap_host="")
            .values_list("channel_id", flat=True)
        )
    for channel_id in ids:
        imap_poll_task.delay(schema, channel_id)
    return len(ids)


@shared_task(name="kefu.tasks.imap_poll_all_task")
def imap_poll_all_task() -> int:
    """Beat (``WEIYU_EMAIL_POLL_S``): :func:`imap_poll_tenant_task` for every active tenant, in
    chunks (:func:`tenants.fanout.fanout`); returns how many tenants."""
    return fanout.fanout("kefu.tasks.imap_poll_tenant_task")


# ---- IMAP IDLE --------------------------------------------------------------------------------
def imap_idle_wait(*, channel: Channel, timeout_s: float) -> bool:
    """Wait until the channel's IMAP folder reports a new mail (IDLE, RFC 2177), at most
    ``timeout_s`` seconds (servers drop an idle client after 30 minutes: stay under it).
    Returns True when a mail arrived (poll then), False on time-out. Nothing is fetched here.
    Raises :class:`DeliveryError` (permanent when the server does not offer IDLE)."""
    account = ChannelAccount.objects.get(channel=channel)
    client = imap_connect(account)
    try:
        _status, capabilities = client.capability()
        if b"IDLE" not in b" ".join(capabilities or []).upper().split():
            raise DeliveryError(_("IMAP: the server does not offer IDLE."), permanent=True)
        client.send(b"I1 IDLE\r\n")
        if not client.readline().startswith(b"+"):
            raise DeliveryError(_("IMAP: the server refused IDLE."), permanent=True)
        # wait with select(): a read time-out would leave imaplib's socket file unusable
        deadline = time.monotonic() + timeout_s
        arrived = False
        while not arrived:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([client.sock], [], [], remaining)[0]:
                break
            line = client.readline()
            if not line:
                raise DeliveryError(_("IMAP: the server closed the connection."))
            arrived = re.match(rb"\* \d+ (EXISTS|RECENT)", line) is not None
        client.send(b"DONE\r\n")
        line = client.readline()
        while line and not line.startswith(b"I1 "):  # untagged lines up to IDLE's own answer
            line = client.readline()
        return arrived
    except (OSError, imaplib.IMAP4.error) as exc:
        raise DeliveryError(_("IMAP: %(reason)s") % {"reason": exc}) from exc
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            logger.info("email channel %s: IMAP logout failed", channel.pk)


# ---- the inbound SMTP endpoint -------------------------------------------------------------
def address_routes() -> dict[str, tuple[str, int]]:
    """Every active e-mail channel's address in every active tenant:
    ``{address (lower case): (schema, channel id)}``."""
    routes: dict[str, tuple[str, int]] = {}
    schemas = (
        get_tenant_model()
        .objects.filter(is_active=True)
        .exclude(schema_name="public")
        .values_list("schema_name", flat=True)
    )
    for schema in list(schemas):
        with schema_context(schema):
            for channel_id, address in (
                ChannelAccount.objects.filter(
                    channel__kind=Channel.Kind.EMAIL, channel__is_active=True
                )
                .exclude(email_address="")
                .values_list("channel_id", "email_address")
            ):
                routes.setdefault(address.lower(), (schema, channel_id))
    return routes


def smtp_deliver(*, schema: str, channel_id: int, raw: bytes) -> bool:
    """Store a mail the SMTP endpoint received for a channel (:func:`mail_accept`)."""
    with schema_context(schema):
        channel = Channel.objects.filter(pk=channel_id, is_active=True).first()
        if channel is None:
            return False
        return mail_accept(channel=channel, raw=raw)


class InboundSmtpHandler:
    """aiosmtpd handler of ``manage.py email_smtpd``: accepts mail only for the addresses of
    active e-mail channels (``550`` for any other recipient: no open relay), at most
    ``WEIYU_EMAIL_MAX_BYTES`` (the server's ``data_size_limit``), and answers ``250`` only once
    the mail is stored for each of its channels (``451``, try again later, when the database
    cannot take it), so a sending server keeps the mail until we have it."""

    #: seconds the address routes are kept before they are read again
    ROUTES_TTL_S = 30.0

    def __init__(self) -> None:
        self._routes: dict[str, tuple[str, int]] = {}
        self._read_at = -1e9

    async def _route(self, address: str) -> tuple[str, int] | None:
        now = asyncio.get_running_loop().time()
        found = self._routes.get(address.lower())
        if (found is None and now - self._read_at > 1.0) or now - self._read_at > self.ROUTES_TTL_S:
            self._routes = await sync_to_async(address_routes, thread_sensitive=False)()
            self._read_at = now
            found = self._routes.get(address.lower())
        return found

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        """Accept a recipient only when a channel receives its mail."""
        if await self._route(address) is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        """Store the mail once per channel it was addressed to."""
        raw = bytes(envelope.original_content or envelope.content)
        for address in envelope.rcpt_tos:
            route = await self._route(address)
            if route is None:
                continue
            try:
                await sync_to_async(smtp_deliver, thread_sensitive=False)(
                    schema=route[0], channel_id=route[1], raw=raw
                )
            except ChannelInputError as exc:
                logger.warning("email smtpd: mail for %s refused: %s", address, exc)
                return "552 5.3.4 Message too big for this channel"
            except Exception:
                logger.exception("email smtpd: mail for %s not stored", address)
                return "451 4.3.0 Try again later"
        return "250 OK"
