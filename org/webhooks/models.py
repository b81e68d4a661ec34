"""Webhook endpoints, their deliveries and the log of every attempt (docs/webhooks.md)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from weiyu.fields import EncryptedTextField

#: every event a tenant can subscribe to, with what it means for the admin (docs/webhooks.md)
EVENTS = {
    "conversation.created": _("A visitor started a conversation"),
    "conversation.assigned": _("A conversation was assigned to an agent"),
    "conversation.transferred": _("A conversation was transferred to another agent"),
    "conversation.closed": _("A conversation was closed"),
    "message.created": _("A message was sent in a customer conversation"),
    "contact.created": _("A contact (visitor) was created"),
    "contact.updated": _("A contact's details were changed"),
    "ticket.created": _("A ticket was created"),
    "ticket.updated": _("A ticket was changed"),
    "sla.breached": _("A ticket missed an SLA target"),
    "csat.submitted": _("A customer rated a conversation (CSAT)"),
}


class WebhookEndpoint(models.Model):
    """A URL that receives the tenant's events of the types in ``events``, signed with
    ``secret`` (shown once; rotatable). Turned off by the admin (``is_active``) or by the
    delivery service after ``WEIYU_WEBHOOK_DISABLE_AFTER`` failed deliveries in a row
    (``disabled_at`` and ``disabled_reason`` say why)."""

    url = models.URLField(_("URL"), max_length=2000)
    description = models.CharField(_("description"), max_length=200, blank=True)
    events = ArrayField(models.CharField(max_length=40), verbose_name=_("events"))
    secret = EncryptedTextField(_("signing secret"), editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    consecutive_failures = models.PositiveIntegerField(
        _("failed deliveries in a row"), default=0, editable=False
    )
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True, editable=False)
    disabled_reason = models.CharField(
        _("why it was disabled"), max_length=500, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """One event that happened, with the payload every subscribed endpoint receives.
    ``key`` orders deliveries (``conversation:<id>``, ``ticket:<id>``, ``contact:<id>``)."""

    uid = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(_("type"), max_length=40)
    key = models.CharField(_("ordering key"), max_length=60)
    data = models.JSONField(_("data"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"


class WebhookDelivery(models.Model):
    """An event on its way to one endpoint. Deliveries of one endpoint with the same ``key``
    go out one after the other in ``id`` order: a later one waits until the earlier one has
    succeeded or finally failed (docs/webhooks.md, "Order")."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("endpoint"),
    )
    event = models.ForeignKey(
        WebhookEvent, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("event")
    )
    key = models.CharField(_("ordering key"), max_length=60)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    #: a worker holds the delivery until then while it sends it (a lease, not a row lock)
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    replay_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replays",
        verbose_name=_("replay of"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        indexes = [
            models.Index(
                fields=["endpoint", "key", "id"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_pending",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event.type} → {self.endpoint.url}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, as the delivery log shows it: what was sent, the response
    code (None when no response came: refused address, timeout, connection error), the first
    bytes of the response, the duration in milliseconds and the error."""

    delivery = models.ForeignKey(
        WebhookDelivery,
        on_delete=models.CASCADE,
        related_name="log",
        verbose_name=_("delivery"),
    )
    number = models.PositiveIntegerField(_("attempt"))
    url = models.URLField(_("URL"), max_length=2000)
    request_headers = models.JSONField(_("request headers"))
    request_body = models.TextField(_("request body"))
    response_code = models.PositiveIntegerField(_("response code"), null=True, blank=True)
    response_body = models.TextField(_("response body"), blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    error = models.CharField(_("error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("sent at"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")

    def __str__(self) -> str:
        return f"#{self.number} {self.response_code or self.error}"
