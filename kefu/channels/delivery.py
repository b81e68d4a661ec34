"""Replies on their way out to a messaging channel: one ``Delivery`` per agent or robot message,
sent by :func:`delivery_send_task` with retries and exponential back-off, its state mirrored in
the message's ``meta["delivery"]`` and announced to the staff in the conversation with a
``message.delivery`` event (docs/protocol.md, docs/channels.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im import selectors as im_selectors
from im.models import Message, Participant
from im.services import messages as im_messages
from im.syslines import message_text
from kefu.channels import adapter_for
from kefu.channels.base import DeliveryError, logger
from kefu.models import Channel, ChannelAccount, ChannelEvent, Delivery, Session
from kefu.senders import language_for
from kefu.syslines import CUSTOMER_LINES
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_on_commit


def delivery_payload(delivery: Delivery) -> dict[str, Any]:
    """``{"id", "status" (queued|sent|failed), "error" ("" unless failed or retrying),
    "attempts"}`` — kept in ``message.meta["delivery"]``."""
    return {
        "id": delivery.pk,
        "status": delivery.status,
        "error": delivery.error,
        "attempts": delivery.attempts,
    }


def _publish(delivery: Delivery, message: Message) -> None:
    """Mirror the state in the message's meta and tell the staff in the conversation."""
    meta = {**(message.meta or {}), "delivery": delivery_payload(delivery)}
    im_messages.message_meta_update(message_id=message.pk, meta=meta)
    staff = [
        key
        for key in Participant.objects.filter(
            conversation_id=message.conversation_id, left_at__isnull=True
        ).values_list("member_key", flat=True)
        if not im_selectors.is_visitor_key(key)
    ]
    publish_event_on_commit(
        {
            "type": "message.delivery",
            "conversation_id": message.conversation_id,
            "message_id": message.pk,
            "seq": message.seq,
            "delivery": delivery_payload(delivery),
        },
        staff,
    )


def delivery_create(*, message: Message, channel_id: int, visitor_id: int) -> Delivery:
    """Queue ``message`` for the customer of a messaging channel (inside the send's
    transaction; the task is enqueued after commit)."""
    delivery = Delivery.objects.create(
        message_id=message.pk, channel_id=channel_id, visitor_id=visitor_id
    )
    schema = connection.schema_name
    transaction.on_commit(lambda: delivery_send_task.delay(schema, delivery.pk))
    return delivery


def session_line_post(
    *,
    session: Session,
    code: str = "",
    params: dict[str, Any] | None = None,
    content: str = "",
    meta: dict[str, Any] | None = None,
) -> Message:
    """Post a service line into the session's conversation
    (``im.services.messages.system_message_post``, same arguments) and, when the customer is on
    a messaging channel other than e-mail and the line is one a customer reads (:data:`kefu.syslines.
    CUSTOMER_LINES`, or a line without a code: the tenant's own text), queue it for them like a
    reply — sent as text in their language (docs/channels.md, "System lines"). Done here, where
    the session is at hand, so a widget conversation's line costs no extra query when the
    session comes with its channel loaded. Raises as ``system_message_post``."""
    line = im_messages.system_message_post(
        conversation_id=session.conversation_id,
        code=code,
        params=params,
        content=content,
        meta=meta,
    )
    if code and code not in CUSTOMER_LINES:
        return line
    if Session.channel.is_cached(session):
        kind = session.channel.kind
    else:
        kind = Channel.objects.filter(pk=session.channel_id).values_list("kind", flat=True).first()
    # a mail per "now serving you" would be noise: e-mail customers get the replies only
    if kind and kind not in (Channel.Kind.WIDGET, Channel.Kind.EMAIL):
        delivery_create(message=line, channel_id=session.channel_id, visitor_id=session.visitor_id)
    return line


def _backoff_s(attempts: int, retry_after_s: float | None) -> float:
    base = settings.WEIYU_CHANNEL_RETRY_S * (2 ** max(attempts - 1, 0))
    return max(base, retry_after_s or 0.0)


#: seconds a delivery waits for an older one to the same customer before looking again
ORDER_WAIT_S = 0.5


def delivery_attempt(*, delivery_id: int) -> float | None:
    """Send a queued delivery once. Returns the seconds to wait before the next attempt, or
    None when it is done (sent, failed for good, or not queued). A permanent refusal, or the
    last of ``WEIYU_CHANNEL_SEND_ATTEMPTS`` attempts, marks it failed: the agent sees "not
    delivered: <reason>" with a retry button, and the channel's health shows the error.

    Replies reach a customer in the order they were written: one attempt per customer at a time
    (a transaction-level advisory lock named after the schema and visitor, held over the
    vendor call, at most ``WEIYU_CHANNEL_HTTP_TIMEOUT_S`` per request), and a delivery waits
    (:data:`ORDER_WAIT_S`, not counted as an attempt) while an older one to the same customer is
    still queued."""
    visitor_id = (
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.QUEUED)
        .values_list("visitor_id", flat=True)
        .first()
    )
    if visitor_id is None:
        return None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"{connection.schema_name}.kefu.delivery.{visitor_id}"],
            )
        delivery = (
            Delivery.objects.select_related("message__attachment", "channel", "visitor")
            .filter(pk=delivery_id, status=Delivery.Status.QUEUED)
            .first()
        )
        if delivery is None:
            return None
        if Delivery.objects.filter(
            visitor_id=visitor_id, status=Delivery.Status.QUEUED, pk__lt=delivery.pk
        ).exists():
            return ORDER_WAIT_S
        return _attempt(delivery)


def _send(adapter: Any, account: ChannelAccount, delivery: Delivery) -> str:
    """A reply through the adapter; a system line as text in the customer's language
    (:func:`kefu.senders.language_for`)."""
    message, visitor = delivery.message, delivery.visitor
    if message.msg_type == Message.Type.SYSTEM:
        text = message_text(message, language=language_for(visitor))
        return adapter.send_text(account=account, user_id=visitor.external_id, text=text)
    return adapter.send(account=account, visitor=visitor, message=message)


def _attempt(delivery: Delivery) -> float | None:
    channel: Channel = delivery.channel
    adapter = adapter_for(channel.kind)
    account = ChannelAccount.objects.filter(channel=channel).first()
    error: DeliveryError | None = None
    external_id = ""
    if adapter is None or account is None:
        error = DeliveryError(_("The channel is not set up."), permanent=True)
    else:
        try:
            external_id = _send(adapter, account, delivery)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a vendor answer no adapter expected, or a fault of ours
            # counted as a failed attempt (retried, then failed) so that this customer's later
            # replies, which wait for this one, are not held behind it for ever
            logger.exception("channel %s: delivery %s failed unexpectedly", channel.pk, delivery.pk)
            error = DeliveryError(
                _("Unexpected error while sending (%(kind)s).") % {"kind": type(exc).__name__}
            )
    now = timezone.now()
    delivery.attempts += 1
    if error is None:
        delivery.status, delivery.sent_at, delivery.error = Delivery.Status.SENT, now, ""
        delivery.external_id = external_id[:128]
        wait = None
    else:
        delivery.error = error.message[:500]
        final = error.permanent or delivery.attempts >= settings.WEIYU_CHANNEL_SEND_ATTEMPTS
        wait = None if final else _backoff_s(delivery.attempts, error.retry_after_s)
        if final:
            delivery.status, delivery.failed_at = Delivery.Status.FAILED, now
            ChannelAccount.objects.filter(channel=channel).update(
                last_error=delivery.error, last_error_at=now
            )
        logger.warning(
            "channel %s: delivery %s attempt %s failed: %s",
            channel.pk,
            delivery.pk,
            delivery.attempts,
            error.message,
        )
    delivery.save(
        update_fields=["attempts", "status", "sent_at", "failed_at", "error", "external_id"]
    )
    _publish(delivery, delivery.message)
    return wait


@shared_task(name="kefu.tasks.delivery_send_task", bind=True, acks_late=True, max_retries=None)
def delivery_send_task(self: Any, schema: str, delivery_id: int) -> None:
    """Send one delivery (:func:`delivery_attempt`), again after the back-off it returns."""
    with schema_context(schema):
        wait = delivery_attempt(delivery_id=delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)


def delivery_retry(*, user: User, delivery_id: object) -> Delivery:
    """An agent sends a failed delivery again (the inbox's retry button). The agent must be in
    the conversation (former members refused). Raises ``ServiceError``: ``not_found``,
    ``conflict`` (not failed: already sent or being sent)."""
    if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
        raise ServiceError("invalid", _("delivery_id must be an integer."), field="delivery_id")
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .select_related("message")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            raise ServiceError("not_found", _("No such message."), field="delivery_id")
        participant = Participant.objects.filter(
            conversation_id=delivery.message.conversation_id,
            member_key=user.member_key,
            left_at__isnull=True,
        ).first()
        if participant is None:
            raise ServiceError("not_found", _("No such message."), field="delivery_id")
        if delivery.status != Delivery.Status.FAILED:
            raise ServiceError("conflict", _("This message is not waiting for a retry."))
        delivery.status, delivery.error, delivery.failed_at = Delivery.Status.QUEUED, "", None
        delivery.attempts = 0
        delivery.save(update_fields=["status", "error", "failed_at", "attempts"])
        _publish(delivery, delivery.message)
        schema = connection.schema_name
        transaction.on_commit(lambda: delivery_send_task.delay(schema, delivery.pk))
    return delivery


def channel_health(*, channel: Channel, now: dt.datetime | None = None) -> dict[str, Any]:
    """The back office's view of a messaging channel: ``{"last_inbound_at", "last_error",
    "last_error_at", "failed_today", "events_failed"}``: ``failed_today`` — deliveries failed
    since local midnight (``settings.TIME_ZONE``); ``events_failed`` — inbound events that were
    refused or could not be handled, over the days they are kept
    (``WEIYU_CHANNEL_EVENT_FAILED_KEEP_DAYS``, :func:`kefu.channels.inbound.channel_events_prune`)."""
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    account = ChannelAccount.objects.filter(channel=channel).first()
    return {
        "last_inbound_at": account.last_inbound_at if account else None,
        "last_error": account.last_error if account else "",
        "last_error_at": account.last_error_at if account else None,
        "failed_today": Delivery.objects.filter(
            channel=channel, status=Delivery.Status.FAILED, failed_at__gte=midnight
        ).count(),
        "events_failed": ChannelEvent.objects.filter(channel=channel).exclude(error="").count(),
    }


def account_error_record(*, channel_id: int, error: str) -> None:
    """Remember a channel's latest error for its health (an inbound file that could not be
    fetched, a notice that could not be sent)."""
    ChannelAccount.objects.filter(channel_id=channel_id).update(
        last_error=error[:500], last_error_at=timezone.now()
    )
