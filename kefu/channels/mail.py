"""E-mail as a channel (docs/channels.md, "E-mail"): one channel per support address.

In: IMAP polling by the beat (:func:`imap_poll_once`, UID-based) or the inbound SMTP endpoint
(``manage.py email_smtpd``, :class:`InboundSmtpHandler`). Either way a mail is stored once as a
``ChannelEvent`` (its id is the ``Message-ID``, else the SHA-256 of the mail) and handled by the
shared Celery task (:func:`mail_store`): the sender's address is the contact (``Visitor.
external_id``), ``In-Reply-To``/``References`` naming a mail of a thread put it into that
thread's conversation (``EmailReference``), anything else starts a new one. The agent sees the
new text only (quoted history and signature trimmed by ``mail-parser-reply``, HTML reduced to
text by ``nh3``); the whole mail is kept as ``original.eml`` on the message, and each attachment
becomes a file or picture message.

Out: agents' and the robot's replies are mailed by the delivery task (:meth:`EmailAdapter.send`,
SMTP with retries) from the channel's address, with ``In-Reply-To``/``References`` of the
thread; so are public replies of a ticket made from such a conversation (:func:`mail_reply_send`).
A reply is plain text with an HTML alternative (links made clickable) and quotes the customer's
latest words under "On <date>, <name> wrote:", as mail programs do.
Hosts are the tenant's to set, so each connection is checked by the outbound guard first
(:func:`weiyu.outbound.checked_addresses`: public, or allowed by the operator).
"""

from __future__ import annotations

import html
import imaplib
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formataddr, getaddresses, make_msgid
from typing import TYPE_CHECKING, Any

import nh3
from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from mailparser_reply import EmailReplyParser

from im.models import Attachment, Message
from kefu.channels.base import (
    Capabilities,
    ChannelAdapter,
    ChannelInputError,
    DeliveryError,
    Inbound,
    attachment_bytes,
    logger,
)
from kefu.models import Channel, ChannelAccount, EmailReference, MailSecurity, Visitor
from weiyu import outbound

if TYPE_CHECKING:
    from django.http import HttpRequest

#: the languages whose reply headers ("On … wrote:", "在 … 写道") are recognised
REPLY_LANGUAGES = ["en", "zh", "de", "fr", "es", "ja"]
_BRACKETS = re.compile(r"<([^<>\s]+)>")


@dataclass
class ParsedMail:
    """What Weiyu reads from a mail: ids for threading, the sender, the text (``full``: all of
    it; ``trimmed``: without quoted history and signature) and the attachments
    ``[(file name, bytes, "image"|"file")]``."""

    message_id: str
    references: list[str]
    sender: str
    sender_name: str
    recipients: list[str]
    subject: str
    full: str
    trimmed: str
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)


def message_ids(value: str | None) -> list[str]:
    """The ``<…>`` message ids of a header, in order, without brackets."""
    return _BRACKETS.findall(str(value or ""))[:50]


def html_text(markup: str) -> str:
    """An HTML body as plain text: every tag removed by nh3 (the sanitiser), block ends as line
    breaks, entities decoded."""
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h[1-6]|blockquote)>", "\n", markup)
    text = html.unescape(nh3.clean(markup, tags=set(), strip_comments=True))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def mail_parse(raw: bytes) -> ParsedMail:
    """Parse one mail (RFC 5322/MIME, the standard library's ``policy.default``). Raises
    :class:`ChannelInputError` for a mail without a usable From address."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        senders = getaddresses([str(msg.get("From", ""))])
    except Exception as exc:  # malformed MIME: the parser's many error types
        raise ChannelInputError(_("The mail cannot be read.")) from exc
    name, address = senders[0] if senders else ("", "")
    if "@" not in address:
        raise ChannelInputError(_("The mail has no sender address."))
    message_id = (message_ids(msg.get("Message-ID")) or [""])[0]
    references = message_ids(msg.get("References")) + message_ids(msg.get("In-Reply-To"))
    recipients = [
        a.lower()
        for _n, a in getaddresses([str(msg.get(h, "")) for h in ("To", "Cc", "Delivered-To")])
        if "@" in a
    ]
    body = msg.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        try:
            content = body.get_content()
        except (LookupError, ValueError):
            content = body.get_payload(decode=True).decode("utf-8", "replace")
        text = html_text(content) if body.get_content_type() == "text/html" else content
    text = text.replace("\r\n", "\n").strip()
    trimmed = ""
    if text:
        parsed = EmailReplyParser(languages=REPLY_LANGUAGES).read(text)
        trimmed = parsed.replies[0].body.strip() if parsed.replies else ""
    files: list[tuple[str, bytes, str]] = []
    for part in msg.iter_attachments():
        data = part.get_payload(decode=True)
        if not data:
            continue
        kind = "image" if part.get_content_maintype() == "image" else "file"
        files.append((part.get_filename() or "attachment", data, kind))
    return ParsedMail(
        message_id=message_id[:255],
        references=[r[:255] for r in references],
        sender=address.lower()[:128],
        sender_name=name[:100],
        recipients=recipients,
        subject=str(msg.get("Subject", ""))[:255],
        full=text,
        trimmed=trimmed or text,
        attachments=files,
    )


def reference_add(
    channel: Channel, message_id: str, conversation_id: int, thread_key: str, subject: str, *,
    inbound: bool = True,
) -> None:  # fmt: skip
    """Remember a mail of a thread (received or sent); a known id is kept as it was."""
    try:
        with transaction.atomic():
            EmailReference.objects.create(
                channel=channel,
                message_id=message_id[:255],
                conversation_id=conversation_id,
                thread_key=thread_key,
                subject=subject[:255],
                inbound=inbound,
            )
    except IntegrityError:
        return


# ---- connections -------------------------------------------------------------------------------
def _checked(host: str, port: int) -> None:
    """Refuse a host the outbound guard refuses (private addresses unless allowed)."""
    if not host:
        raise DeliveryError(_("The channel has no server set."), permanent=True)
    try:
        outbound.checked_addresses(host, port)
    except outbound.OutboundRefusedError as exc:
        raise DeliveryError(str(exc), permanent=True) from exc


def imap_connect(account: ChannelAccount) -> imaplib.IMAP4:
    """A logged-in IMAP connection with the folder selected (read-only). Raises
    :class:`DeliveryError` (permanent for a refused host or login)."""
    _checked(account.imap_host, account.imap_port)
    timeout = settings.WEIYU_CHANNEL_HTTP_TIMEOUT_S
    try:
        if account.imap_tls == MailSecurity.TLS:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                account.imap_host,
                account.imap_port,
                ssl_context=ssl.create_default_context(),
                timeout=timeout,
            )
        else:
            client = imaplib.IMAP4(account.imap_host, account.imap_port, timeout=timeout)
            if account.imap_tls == MailSecurity.STARTTLS:
                client.starttls(ssl_context=ssl.create_default_context())
    except (OSError, imaplib.IMAP4.error) as exc:
        raise DeliveryError(_("IMAP: %(reason)s") % {"reason": exc}) from exc
    try:
        client.login(account.imap_user, account.imap_password)
        status, _data = client.select(_quoted(account.imap_folder or "INBOX"), readonly=True)
    except imaplib.IMAP4.error as exc:
        client.logout()
        raise DeliveryError(_("IMAP: %(reason)s") % {"reason": exc}, permanent=True) from exc
    if status != "OK":
        client.logout()
        raise DeliveryError(_("IMAP: the folder cannot be opened."), permanent=True)
    return client


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def smtp_connect(account: ChannelAccount) -> smtplib.SMTP:
    """A connected (and, with a user, logged-in) SMTP client. Raises :class:`DeliveryError`."""
    _checked(account.smtp_host, account.smtp_port)
    timeout = settings.WEIYU_CHANNEL_HTTP_TIMEOUT_S
    try:
        if account.smtp_tls == MailSecurity.TLS:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                account.smtp_host,
                account.smtp_port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(account.smtp_host, account.smtp_port, timeout=timeout)
            if account.smtp_tls == MailSecurity.STARTTLS:
                client.starttls(context=ssl.create_default_context())
        if account.smtp_user:
            client.login(account.smtp_user, account.smtp_password)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(_("SMTP: the login was refused."), permanent=True) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(_("SMTP: %(reason)s") % {"reason": exc}) from exc
    return client


def connection_test(account: ChannelAccount) -> list[tuple[bool, str]]:
    """The back office's "test connection": log in to IMAP (select the folder) and to SMTP,
    without fetching or sending anything. Returns ``[(ok, what happened)]``, one per server."""
    results: list[tuple[bool, str]] = []
    for label, connect in (("IMAP", imap_connect), ("SMTP", smtp_connect)):
        host = account.imap_host if label == "IMAP" else account.smtp_host
        if not host:
            results.append((False, _("%(server)s: no host set.") % {"server": label}))
            continue
        try:
            client = connect(account)
        except DeliveryError as exc:
            results.append((False, exc.message))
            continue
        try:
            client.logout() if isinstance(client, imaplib.IMAP4) else client.quit()
        except (OSError, imaplib.IMAP4.error, smtplib.SMTPException):
            logger.info("email: closing the %s test connection failed", label)
        results.append((True, _("%(server)s: connected and logged in.") % {"server": label}))
    return results


# ---- sending -----------------------------------------------------------------------------------
def _thread_headers(conversation_id: int) -> tuple[str, str | None, list[str]]:
    """``(subject, In-Reply-To, References)`` for a reply in a conversation: the latest mail of
    the customer is answered; References lists the thread's ids, oldest first (at most 20)."""
    refs = list(
        EmailReference.objects.filter(conversation_id=conversation_id)
        .order_by("id")
        .values_list("message_id", "subject", "inbound")
    )
    customer = [r for r in refs if r[2]]
    subject = next((r[1] for r in reversed(customer) if r[1]), "")
    if subject and not subject.lower().startswith(("re:", "回复")):
        subject = f"Re: {subject}"
    in_reply_to = f"<{customer[-1][0]}>" if customer else None
    return subject, in_reply_to, [f"<{r[0]}>" for r in refs][-20:]


@dataclass(frozen=True)
class Quote:
    """The customer's words a reply quotes: who wrote them, when (aware), what (text)."""

    name: str
    at: Any
    text: str


#: at most this many characters of the customer's words are quoted in a reply
QUOTE_MAX_CHARS = 4000


def last_customer_words(conversation_id: int) -> Quote | None:
    """The newest words the customer wrote in the conversation (a mail's trimmed text, a chat
    message; files carry none), to quote in a reply; None when there are none. One query."""
    row = (
        Message.objects.filter(
            conversation_id=conversation_id,
            sender_type=Message.SenderType.VISITOR,
            recalled_at__isnull=True,
        )
        .exclude(content="")
        .order_by("-seq")
        .values_list("content", "created_at", "sender_name")
        .first()
    )
    if row is None:
        return None
    content, at, name = row
    return Quote(name=name or "", at=at, text=content[:QUOTE_MAX_CHARS])


_CJK = re.compile(r"[\u3400-\u9fff]")


def _quote_language(language: str, quote: Quote | None) -> str:
    """The customer's language when known, else guessed from their words: Chinese characters →
    ``zh-hans``, anything else → ``en`` (the two languages Weiyu ships)."""
    if language:
        return language
    return "zh-hans" if quote is not None and _CJK.search(quote.text) else "en"


def _reply_bodies(text: str, quote: Quote | None, language: str) -> tuple[str, str]:
    """``(plain text, HTML)`` of a reply: the agent's text, then the quoted customer's words
    under "On <date>, <name> wrote:" in their language (:func:`_quote_language`) as ``> ``
    lines / a blockquote."""
    with translation.override(_quote_language(language, quote)):
        header = ""
        if quote is not None:
            when = formats.date_format(timezone.localtime(quote.at), "DATETIME_FORMAT")
            header = _("On %(date)s, %(name)s wrote:") % {
                "date": when,
                "name": quote.name or _("you"),
            }
        plain = text
        if quote is not None:
            quoted = "\n".join(f"> {line}" if line else ">" for line in quote.text.splitlines())
            plain = f"{text}\n\n{header}\n{quoted}\n"
        markup = render_to_string(
            "email/reply.html",
            {"text": text, "header": header, "quote": quote.text if quote else ""},
        )
    return plain, markup


def mail_compose(
    *,
    account: ChannelAccount,
    to: str,
    conversation_id: int | None,
    text: str,
    files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
    subject: str = "",
    quote: Quote | None = None,
    language: str = "",
) -> EmailMessage:
    """A reply from the channel's address (``email_name <email_address>``) to ``to``, threaded
    into the conversation's mails (``In-Reply-To``, ``References``; subject "Re: …") with a new
    ``Message-ID`` on the address's domain: plain text and an HTML alternative, quoting
    ``quote`` (:func:`last_customer_words`) with its header in ``language`` (the customer's;
    when unknown, guessed from the quoted words). ``files``: ``[(name, bytes, content type)]``."""
    mail = EmailMessage()
    thread_subject, in_reply_to, references = (
        _thread_headers(conversation_id) if conversation_id else ("", None, [])
    )
    address = Address(addr_spec=account.email_address)
    mail["From"] = formataddr((account.email_name, account.email_address))
    mail["To"] = to
    mail["Subject"] = subject or thread_subject or account.channel.name
    mail["Message-ID"] = make_msgid(domain=address.domain or None)
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = " ".join(references)
    plain, markup = _reply_bodies(text or "", quote, language)
    mail.set_content(plain)
    mail.add_alternative(markup, subtype="html")
    for name, data, content_type in files:
        maintype, _slash, subtype = (content_type or "application/octet-stream").partition("/")
        mail.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=name
        )
    return mail


def mail_send(*, account: ChannelAccount, mail: EmailMessage) -> str:
    """Send over the channel's SMTP server. Returns the Message-ID (without brackets). Raises
    :class:`DeliveryError`: permanent for refused recipients or sender (5xx), else retried."""
    client = smtp_connect(account)
    try:
        client.send_message(mail, from_addr=account.email_address)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise DeliveryError(
            _("SMTP refused it: %(reason)s") % {"reason": exc}, permanent=True
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            _("SMTP refused it: %(reason)s") % {"reason": exc}, permanent=exc.smtp_code >= 500
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(_("SMTP: %(reason)s") % {"reason": exc}) from exc
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return str(mail["Message-ID"]).strip("<>")


def mail_reply_send(
    *,
    conversation_id: int,
    text: str,
    files: list[Attachment] = (),  # type: ignore[assignment]
) -> str | None:
    """Mail ``text`` (and ``files``) to the customer of an e-mail conversation, threaded, and
    remember its Message-ID for the thread. Returns the Message-ID, None when the conversation
    is not an e-mail channel's. Raises :class:`DeliveryError`. Used by ticket replies
    (tickets.services.email) so that they arrive in the customer's thread."""
    reference = (
        EmailReference.objects.select_related("channel")
        .filter(conversation_id=conversation_id)
        .order_by("-id")
        .first()
    )
    if reference is None:
        return None
    account = ChannelAccount.objects.select_related("channel").get(channel=reference.channel)
    to = (
        Visitor.objects.filter(sessions__conversation_id=conversation_id)
        .values_list("external_id", flat=True)
        .first()
    )
    if not to:
        return None
    language = (
        Visitor.objects.filter(sessions__conversation_id=conversation_id)
        .values_list("language", flat=True)
        .first()
    )
    mail = mail_compose(
        account=account,
        to=to,
        conversation_id=conversation_id,
        text=text,
        files=[(f.name, attachment_bytes(f), f.content_type) for f in files],
        quote=last_customer_words(conversation_id),
        language=language or "",
    )
    sent = mail_send(account=account, mail=mail)
    reference_add(reference.channel, sent, conversation_id, reference.thread_key, "", inbound=False)
    return sent


class EmailAdapter(ChannelAdapter):
    """E-mail: no vendor callback (mails come by IMAP or the SMTP endpoint); replies by SMTP."""

    kind = "email"
    capabilities = Capabilities(attachments=("image", "file"))

    def verify(self, *, account: ChannelAccount, request: HttpRequest) -> None:
        raise ChannelInputError(_("E-mail channels receive mail by IMAP or SMTP."))

    def events(self, *, account: ChannelAccount, request: HttpRequest) -> list[tuple[str, Any]]:
        raise ChannelInputError(_("E-mail channels receive mail by IMAP or SMTP."))

    def inbound(self, *, account: ChannelAccount, payload: Any) -> Inbound | None:
        """Mails are handled whole by :func:`mail_store` (threads, several attachments)."""
        return None

    def media_fetch(self, *, account: ChannelAccount, inbound: Inbound) -> tuple[bytes, str]:
        raise DeliveryError(_("E-mail attachments come with the mail."), permanent=True)

    def send(self, *, account: ChannelAccount, visitor: Visitor, message: Message) -> str:
        """Mail the reply (its file attached) into the conversation's thread."""
        files = []
        if message.attachment_id is not None:
            attachment = message.attachment
            files.append((attachment.name, attachment_bytes(attachment), attachment.content_type))
        mail = mail_compose(
            account=account,
            to=visitor.external_id,
            conversation_id=message.conversation_id,
            text=message.content or "",
            files=files,
            quote=last_customer_words(message.conversation_id),
            language=visitor.language or "",
        )
        sent = mail_send(account=account, mail=mail)
        thread_key = (
            EmailReference.objects.filter(conversation_id=message.conversation_id)
            .values_list("thread_key", flat=True)
            .first()
        )
        if thread_key:
            reference_add(
                account.channel, sent, message.conversation_id, thread_key, "", inbound=False
            )
        return sent

    def send_text(self, *, account: ChannelAccount, user_id: str, text: str) -> str:
        """A notice (outside work hours, queue full…) as a mail of its own."""
        return mail_send(
            account=account,
            mail=mail_compose(account=account, to=user_id, conversation_id=None, text=text),
        )


def channel_for_address(address: str) -> Channel | None:
    """The active e-mail channel of this tenant that receives mail for ``address``."""
    account = (
        ChannelAccount.objects.select_related("channel")
        .filter(
            email_address__iexact=address,
            channel__kind=Channel.Kind.EMAIL,
            channel__is_active=True,
        )
        .first()
    )
    return account.channel if account else None
