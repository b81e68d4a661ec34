"""Callbacks and updates from messaging channels, turned into visitors and messages through the
widget's own send path (docs/channels.md). Accepting an event (:func:`channel_event_accept`)
only stores it, once per vendor id; :func:`channel_event_task` handles it in a worker (media
downloads are HTTP calls to the vendor), with retries, so nothing accepted is lost."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im.attachments import attachment_upload
from im.models import Message
from kefu.channels import adapter_for
from kefu.channels.base import ChannelInputError, DeliveryError, Inbound, logger
from kefu.channels.contacts import visitor_for_external
from kefu.channels.delivery import account_error_record
from kefu.channels.mail_threads import mail_sender, mail_store
from kefu.channels.telegram import TelegramAdapter
from kefu.models import Channel, ChannelAccount, ChannelEvent, Visitor
from kefu.services.messages import visitor_message_send
from weiyu.errors import ServiceError


def channel_event_accept(
    *, channel: Channel, external_id: str, payload: Any, fingerprint: str = ""
) -> bool:
    """Store one inbound event and queue its handling after commit. Returns False for an event
    already stored (a vendor's retry: nothing is done again). Records the channel's last
    inbound time. ``fingerprint``: the request's (:func:`org.apikeys.request_fingerprint`), kept
    to tell a retry from another request under the same ``Idempotency-Key``."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = ChannelEvent.objects.create(
                    channel=channel,
                    external_id=external_id,
                    payload=payload,
                    fingerprint=fingerprint,
                )
        except IntegrityError:
            logger.info("channel %s: event %s already stored", channel.pk, external_id)
            return False
        ChannelAccount.objects.filter(channel=channel).update(last_inbound_at=timezone.now())
        schema = connection.schema_name
        transaction.on_commit(lambda: channel_event_task.delay(schema, event.pk))
    return True


#: the payload key under which an event keeps what was fetched for it before it is stored
PREPARED = "_weiyu"


def _notice(channel: Channel, account: ChannelAccount, user_id: str, text: str) -> None:
    """Tell the customer something the widget would show (closed, queue full, refused, the
    welcome text), after the handler's transaction commits: a vendor call never runs while rows
    are locked."""
    adapter = adapter_for(channel.kind)
    if adapter is None or not text:
        return

    def send() -> None:
        try:
            adapter.send_text(account=account, user_id=user_id, text=text)
        except DeliveryError as exc:
            account_error_record(channel_id=channel.pk, error=exc.message)

    transaction.on_commit(send)


def channel_event_handle(*, event_id: int) -> Message | None:
    """Handle a stored event and, first, the channel's older events not handled yet, in the
    order they arrived: one handler per channel at a time (an advisory lock named after the
    channel), so a customer's messages are stored in the order the vendor sent them, whichever
    worker takes which task. Returns the message of ``event_id`` (None when it made none).

    The vendor calls (a new customer's profile, a file download: up to
    ``WEIYU_CHANNEL_HTTP_TIMEOUT_S`` each) happen first, outside any transaction
    (:func:`_event_prepare`), so no row is locked while a vendor is slow: an agent replying to
    the same customer is never kept waiting. An older event whose file cannot be fetched yet is
    left to its own task's retry. Raises :class:`DeliveryError` for this event's download that
    may work later (the task retries)."""
    channel_id = (
        ChannelEvent.objects.filter(pk=event_id).values_list("channel_id", flat=True).first()
    )
    if channel_id is None:
        return None
    older = ChannelEvent.objects.filter(
        channel_id=channel_id, handled_at__isnull=True, pk__lt=event_id
    ).order_by("pk")
    for earlier in older.values_list("pk", flat=True):
        try:
            _event_prepare(event_id=earlier)
        except DeliveryError:
            logger.info("channel %s: event %s waits for its retry", channel_id, earlier)
    failure: DeliveryError | None = None
    try:
        _event_prepare(event_id=event_id)
    except DeliveryError as exc:
        failure = exc
    message = None
    with transaction.atomic():
        # an advisory lock, not the account row: webhooks update that row meanwhile
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"{connection.schema_name}.kefu.channel.{channel_id}"],
            )
        for earlier in older.values_list("pk", flat=True):
            try:
                with transaction.atomic():
                    _event_handle(event_id=earlier)
            except DeliveryError:
                logger.info("channel %s: event %s waits for its retry", channel_id, earlier)
        if failure is None:
            try:
                with transaction.atomic():
                    message = _event_handle(event_id=event_id)
            except DeliveryError as exc:
                failure = exc
    if failure is not None:
        raise failure
    return message


def _event_inbound(
    event: ChannelEvent,
) -> tuple[Any, ChannelAccount, Inbound] | None:
    """``(adapter, account, inbound)`` of a stored event, None when there is nothing to do (a
    mail is handled whole by :func:`_mail_handle`)."""
    channel = event.channel
    if channel.kind == Channel.Kind.EMAIL:
        return None
    account = ChannelAccount.objects.filter(channel=channel).first()
    adapter = adapter_for(channel.kind)
    if adapter is None or account is None:
        return None
    inbound = adapter.inbound(account=account, payload=event.payload)
    if inbound is None or not inbound.user_id:
        return None
    return adapter, account, inbound


def _event_prepare(*, event_id: int) -> None:
    """The vendor calls an event needs, outside any transaction (each write here commits on
    its own): the customer, created on first contact with the vendor's profile name; a file,
    downloaded and stored as an attachment kept in the payload (``_weiyu: {"attachment_id",
    "kind"}`` or ``{"refused": reason}`` for a file the tenant's rules refuse), so a retry or
    another worker does not fetch it again. Raises :class:`DeliveryError` for a download that
    may work later."""
    event = ChannelEvent.objects.select_related("channel").filter(pk=event_id).first()
    if event is None or event.handled_at is not None or PREPARED in (event.payload or {}):
        return
    found = _event_inbound(event)
    if found is None:
        return
    adapter, account, inbound = found
    visitor, created = visitor_for_external(
        channel=event.channel, user_id=inbound.user_id, name=inbound.name
    )
    if created and not inbound.name:
        try:
            fetched = adapter.profile_name(account=account, user_id=inbound.user_id)
        except DeliveryError as exc:
            fetched = ""
            account_error_record(channel_id=event.channel_id, error=exc.message)
        if fetched:
            Visitor.objects.filter(pk=visitor.pk).update(name=fetched[:100], name_given=True)
    if inbound.event or inbound.msg_type == "text" or "attachment_id" in inbound.media:
        return
    content, name = adapter.media_fetch(account=account, inbound=inbound)
    try:
        prepared = _attachment_store(visitor, inbound.msg_type, name, content)
    except ServiceError as exc:
        prepared = {"refused": exc.message}
    ChannelEvent.objects.filter(pk=event.pk, handled_at__isnull=True).exclude(
        payload__has_key=PREPARED
    ).update(payload={**event.payload, PREPARED: prepared})


def _attachment_store(visitor: Visitor, kind: str, name: str, content: bytes) -> dict[str, Any]:
    """Store a customer's file; ``{"attachment_id", "kind"}``. A format the inbox cannot play or
    show inline (WeChat's AMR voice) is kept as a file. Raises ``ServiceError``."""
    try:
        attachment = attachment_upload(
            conversation_id=None,
            uploader_key=visitor.member_key,
            upload=SimpleUploadedFile(name, content),
            kind=kind,
            standalone=True,
        )
    except ServiceError as exc:
        if exc.code != "invalid" or kind == "file":
            raise
        kind = "file"
        attachment = attachment_upload(
            conversation_id=None,
            uploader_key=visitor.member_key,
            upload=SimpleUploadedFile(name, content),
            kind=kind,
            standalone=True,
        )
    return {"attachment_id": attachment.pk, "kind": kind}


def _event_handle(*, event_id: int) -> Message | None:
    """Store a prepared event once (no vendor call: :func:`_event_prepare` made them): the
    visitor, then the message through ``visitor_message_send`` — routed, served by the robot
    or queued exactly as a widget visitor's. ``client_msg_id`` ``ch<event id>`` keeps a second
    run from storing it twice. A refusal (outside work hours, queue full, blocked) is told to
    the customer as the widget would, after commit. Returns the stored message, None when there
    was none. Raises :class:`DeliveryError` for a file not fetched yet (its task retries)."""
    event = ChannelEvent.objects.select_related("channel").filter(pk=event_id).first()
    if event is None or event.handled_at is not None:
        return None
    channel = event.channel
    message = None
    error = ""
    found = _event_inbound(event)
    if channel.kind == Channel.Kind.EMAIL:
        account = ChannelAccount.objects.filter(channel=channel).first()
        if account is not None:
            message, error = _mail_handle(channel, account, event)
    elif found is not None:
        _adapter, account, inbound = found
        visitor, _created = visitor_for_external(
            channel=channel, user_id=inbound.user_id, name=inbound.name
        )
        _contact_update(visitor, inbound)
        try:
            message = _message_store(visitor, inbound, event)
        except ServiceError as exc:
            error = exc.message
            logger.info("channel %s: event %s refused: %s", channel.pk, event.pk, exc.code)
            _notice(channel, account, inbound.user_id, exc.message)
        if inbound.event == "subscribe":
            _notice(channel, account, inbound.user_id, channel.welcome_text)
    # the payload has done its work (the message is stored): nothing personal is kept twice,
    # the row stays to recognise a retry
    ChannelEvent.objects.filter(pk=event.pk).update(
        handled_at=timezone.now(), error=error[:500], payload={}
    )
    return message


def _mail_handle(
    channel: Channel, account: ChannelAccount, event: ChannelEvent
) -> tuple[Message | None, str]:
    """A mail (kefu.channels.mail_threads): ``(message, error)``. A refusal (closed, queue full,
    blocked) is mailed back to the sender as the widget would show it; an unreadable mail is
    kept as handled with its error."""
    try:
        return mail_store(channel=channel, event=event), ""
    except ChannelInputError as exc:
        logger.warning("email channel %s: event %s unreadable: %s", channel.pk, event.pk, exc)
        return None, str(exc)
    except ServiceError as exc:
        logger.info("email channel %s: event %s refused: %s", channel.pk, event.pk, exc.code)
        sender = mail_sender(event.payload)
        if sender:
            _notice(channel, account, sender, exc.message)
        return None, exc.message


def api_upload_store(
    *, channel: Channel, payload: dict[str, Any], upload: Any, kind: object
) -> dict[str, Any]:
    """A file uploaded with an API channel's message: stored now (the request carries it) for
    the contact of ``payload``, created on first contact. ``{"attachment_id", "kind"}``.
    Raises ``ServiceError``: ``invalid`` (a kind other than ``image``/``file``, content the
    tenant's rules refuse), ``too_large``, ``quota_exceeded``."""
    if kind not in ("image", "file"):
        raise ServiceError("invalid", _("type is image or file."), field="type")
    contact = payload["contact"]
    visitor, _created = visitor_for_external(
        channel=channel, user_id=contact["id"], name=contact["name"]
    )
    attachment = attachment_upload(
        conversation_id=None,
        uploader_key=visitor.member_key,
        upload=upload,
        kind=kind,
        standalone=True,
    )
    return {"attachment_id": attachment.pk, "kind": kind}


def _contact_update(visitor: Visitor, inbound: Inbound) -> None:
    """The e-mail address, phone number and language a channel gives, when they changed."""
    changed = {
        name: value
        for name, value in (
            ("email", inbound.email),
            ("phone", inbound.phone),
            ("language", inbound.language),
        )
        if value and getattr(visitor, name) != value
    }
    if changed:
        Visitor.objects.filter(pk=visitor.pk).update(**changed)
        for name, value in changed.items():
            setattr(visitor, name, value)


def _message_store(visitor: Visitor, inbound: Inbound, event: ChannelEvent) -> Message | None:
    if inbound.event:
        return None
    client_msg_id = f"ch{event.pk}"
    if inbound.msg_type == "text":
        message, _created = visitor_message_send(
            visitor=visitor, conversation_id=None, content=inbound.text, client_msg_id=client_msg_id
        )
        return message
    prepared = inbound.media if "attachment_id" in inbound.media else event.payload.get(PREPARED)
    if not prepared:
        raise DeliveryError(_("The file has not been fetched yet."))
    if prepared.get("refused"):
        raise ServiceError("invalid", prepared["refused"])
    message, _created = visitor_message_send(
        visitor=visitor,
        conversation_id=None,
        content=inbound.text[: settings.WEIYU_MESSAGE_MAX_CHARS],
        client_msg_id=client_msg_id,
        msg_type=prepared["kind"],
        attachment_id=prepared["attachment_id"],
    )
    return message


@shared_task(name="kefu.tasks.channel_event_task", bind=True, acks_late=True, max_retries=None)
def channel_event_task(self: Any, schema: str, event_id: int) -> int | None:
    """Handle one inbound event (:func:`channel_event_handle`); a failed download is tried again
    with back-off (``WEIYU_CHANNEL_SEND_ATTEMPTS`` times), then recorded on the event and the
    channel's health. Returns the message id."""
    with schema_context(schema):
        try:
            message = channel_event_handle(event_id=event_id)
        except DeliveryError as exc:
            event = ChannelEvent.objects.filter(pk=event_id).first()
            if event is not None:
                account_error_record(channel_id=event.channel_id, error=exc.message)
            attempts = self.request.retries + 1
            if exc.permanent or attempts >= settings.WEIYU_CHANNEL_SEND_ATTEMPTS:
                ChannelEvent.objects.filter(pk=event_id).update(
                    handled_at=timezone.now(), error=exc.message[:500]
                )
                return None
            raise self.retry(
                countdown=settings.WEIYU_CHANNEL_RETRY_S * 2 ** (attempts - 1)
            ) from exc
    return message.pk if message else None


def telegram_poll_once(*, channel: Channel, timeout_s: int) -> int:
    """Long polling instead of a webhook: one ``getUpdates`` after the stored offset (waiting up
    to ``timeout_s`` seconds), each update stored once like a webhook call, then the offset
    moved past the last one. Returns the number of updates received. Raises
    :class:`DeliveryError` when Telegram cannot be reached (the caller waits and polls again).
    Telegram refuses getUpdates while a webhook is set."""
    account = ChannelAccount.objects.get(channel=channel)
    adapter = adapter_for(channel.kind)
    if not isinstance(adapter, TelegramAdapter):
        raise ServiceError("invalid", _("Only Telegram channels are polled."), field="channel")
    updates = adapter.updates_fetch(account=account, timeout_s=timeout_s)
    last = account.poll_offset
    for update in updates:
        try:
            external_id, payload = adapter.update_event(update)
        except Exception:
            logger.warning("telegram: unreadable update skipped: %r", update)
            continue
        channel_event_accept(channel=channel, external_id=external_id, payload=payload)
        last = max(last, int(external_id))
    if last != account.poll_offset:
        ChannelAccount.objects.filter(pk=account.pk).update(poll_offset=last)
    return len(updates)


def channel_events_prune(*, now: dt.datetime | None = None) -> int:
    """Delete handled inbound events past their retention (docs/channels.md, "Retention"): an
    event handled without an error after ``WEIYU_CHANNEL_EVENT_KEEP_DAYS`` days (a vendor
    retries a callback for minutes, not days, so the row has done its work), one that failed
    after ``WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS`` days (kept longer for the channel's health:
    "inbound events failed"). Events not handled yet are never deleted. Returns the rows
    deleted."""
    now = now or timezone.now()
    ok_before = now - dt.timedelta(days=settings.WEIYU_CHANNEL_EVENT_KEEP_DAYS)
    failed_before = now - dt.timedelta(days=settings.WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS)
    deleted, _by_model = ChannelEvent.objects.filter(
        Q(error="", handled_at__lt=ok_before) | Q(handled_at__lt=failed_before)
    ).delete()
    if deleted:
        logger.info("channel events pruned: %s", deleted)
    return deleted


def visitor_channel_export(visitor: Visitor) -> dict[str, Any]:
    """The privacy export's part (kefu.privacy): where the customer wrote from,
    ``{"kind", "external_id"}``; ``{}`` for a widget visitor."""
    if not visitor.external_id:
        return {}
    return {"kind": visitor.channel.kind, "external_id": visitor.external_id}


def visitor_channel_erase(visitor: Visitor) -> int:
    """The privacy erasure's part (kefu.privacy): the vendor's id of the customer is forgotten
    (a later message from them starts a new visitor) and the payloads of their events not yet
    handled are emptied. Returns the rows changed."""
    if not visitor.external_id:
        return 0
    who = visitor.external_id
    mine = Q(payload__FromUserName=who)
    if who.lstrip("-").isdigit():
        mine |= Q(payload__message__chat__id=int(who))
    cleared = (
        ChannelEvent.objects.filter(channel_id=visitor.channel_id).filter(mine).update(payload={})
    )
    Visitor.objects.filter(pk=visitor.pk).update(external_id="")
    visitor.external_id = ""
    return cleared + 1
