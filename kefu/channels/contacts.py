"""The contact a messaging channel's customer is: one visitor per vendor id and channel (the
Telegram chat id, the WeChat OpenID, the e-mail address)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from kefu.models import Channel, Visitor


def visitor_for_external(*, channel: Channel, user_id: str, name: str = "") -> tuple[Visitor, bool]:
    """The visitor a vendor's customer id stands for on this channel, created on first contact
    (``(visitor, created)``). ``name``: what the vendor calls them; empty: "Telegram 1234"."""
    visitor = (
        Visitor.objects.select_related("channel")
        .filter(channel=channel, external_id=user_id)
        .first()
    )
    if visitor is not None:
        return visitor, False
    label = name or f"{channel.get_kind_display()} {user_id[-4:]}"
    try:
        with transaction.atomic():
            visitor = Visitor.objects.create(
                channel=channel, external_id=user_id, name=label[:100], name_given=bool(name)
            )
    except IntegrityError:
        return Visitor.objects.select_related("channel").get(
            channel=channel, external_id=user_id
        ), False
    return visitor, True
