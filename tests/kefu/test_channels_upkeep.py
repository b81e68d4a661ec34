"""Channel upkeep (kefu.channels): inbound events pruned after their retention, vendor calls
made outside the handler's transaction, and the system lines a messaging customer receives."""

from __future__ import annotations

import datetime as dt
import threading

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message
from kefu.channels.delivery import channel_health
from kefu.channels.inbound import channel_event_handle
from kefu.models import ChannelEvent
from kefu.services import messages
from kefu.tasks import channel_events_prune_task
from tests import fake_vendors
from tests.channels import messaging_channel, visitor_session
from tests.conftest import make_desk, unique
from tests.waits import wait_until

_ids = iter(range(200_000_000, 299_999_999, 11))


def _update(chat_id: int, language: str = "", **message: object) -> dict:
    sender = {"id": chat_id, "is_bot": False, "first_name": "Ivan"}
    if language:
        sender["language_code"] = language
    base = {"message_id": 1, "date": 1_700_000_000, "chat": {"id": chat_id, "type": "private"}}
    return {"update_id": next(_ids), "message": {**base, "from": sender, **message}}


def _event(channel, update: dict) -> ChannelEvent:
    return ChannelEvent.objects.create(
        channel=channel, external_id=str(update["update_id"]), payload=update
    )


def test_handled_events_are_pruned_after_their_retention_failed_ones_later(acme, vendors):
    # given events handled 6 and 8 days ago, failed ones 8 and 31 days ago, an unhandled one
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    now = timezone.now()
    with schema_context("acme"):

        def stored(days: float | None, error: str = "") -> int:
            event = ChannelEvent.objects.create(channel=channel, external_id=unique("e"))
            handled = now - dt.timedelta(days=days) if days is not None else None
            ChannelEvent.objects.filter(pk=event.pk).update(
                handled_at=handled, error=error, received_at=now - dt.timedelta(days=60)
            )
            return event.pk

        recent, old = stored(6), stored(8)
        failed, old_failed = stored(8, "Telegram refused it"), stored(31, "boom")
        waiting = stored(None)

        # when the hourly prune runs for the tenant
        deleted = channel_events_prune_task("acme")

        # then only the handled events past their retention are gone, and the health page
        # still counts the failed one it keeps
        left = set(ChannelEvent.objects.filter(channel=channel).values_list("pk", flat=True))
        health = channel_health(channel=channel)
    assert deleted >= 2
    assert left == {recent, failed, waiting}
    assert old not in left
    assert old_failed not in left
    assert health["events_failed"] == 1
    assert "kefu-channel-events-prune" in django_settings.CELERY_BEAT_SCHEDULE


def test_a_slow_file_download_holds_no_row_lock(acme, vendors, settings):
    # given a Telegram customer talking to an agent (this process may reach the fake vendor)
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{fake_vendors.PORT}"
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    with schema_context("acme"):
        channel_event_handle(event_id=_event(channel, _update(chat_id, text="hello")).pk)
    session = visitor_session("acme", channel, str(chat_id))
    assert session is not None
    assert session.agent_id
    # and a text then a photo stored, whose download the vendor holds
    with schema_context("acme"):
        _event(channel, _update(chat_id, text="and another thing"))
        photo = _event(channel, _update(chat_id, photo=[{"file_id": "slow1", "file_size": 5}]))
    vendors.hold_files = threading.Event()
    done: dict = {}

    def handle() -> None:
        try:
            with schema_context("acme"):
                done["message"] = channel_event_handle(event_id=photo.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=handle)
    worker.start()
    try:
        wait_until(lambda: vendors.sent("photos/slow1.png"), what="the download started")

        # when the agent replies meanwhile, waiting at most 5 s for any lock
        with schema_context("acme"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            reply, _ = messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                client_msg_id=unique("c"),
                content="Still here",
            )

        # then the reply is stored while the vendor still holds the download
        assert worker.is_alive()
    finally:
        vendors.hold_files.set()
        worker.join(timeout=120)
        vendors.hold_files = None
    # and the customer's messages are stored after it, in the order they were sent
    assert done["message"] is not None
    with schema_context("acme"):
        rows = list(
            Message.objects.filter(
                conversation_id=session.conversation_id, seq__gt=reply.seq
            ).values_list("sender_type", "msg_type", "content")
        )
    assert [r for r in rows if r[0] == "visitor"] == [
        ("visitor", "text", "and another thing"),
        ("visitor", "image", ""),
    ]


def test_system_lines_reach_a_telegram_customer_in_their_language(acme, vendors, channel_worker):
    # given a Telegram customer whose app speaks English, and one whose app speaks Chinese
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    english, chinese = next(_ids), next(_ids)
    agent = desk.agents[0]

    # when each writes and is assigned to the agent, and the agent leaves a note then ends one
    with schema_context("acme"):
        channel_event_handle(event_id=_event(channel, _update(english, "en-GB", text="hi")).pk)
        channel_event_handle(event_id=_event(channel, _update(chinese, "zh-hans", text="你好")).pk)
    session = visitor_session("acme", channel, str(english))
    with schema_context("acme"):
        messages.agent_message_send(
            user=agent,
            conversation_id=session.conversation_id,
            client_msg_id=unique("c"),
            content="VIP customer",
            internal=True,
        )

    # then each gets "… is now serving you" as text in their own language, and no internal note
    def texts(chat_id: int) -> list[str]:
        return [
            c.json["text"] for c in vendors.sent("sendMessage") if c.json["chat_id"] == str(chat_id)
        ]

    wait_until(lambda: texts(english) and texts(chinese), what="the lines at the fake Telegram")
    assert texts(english) == [f"{agent.name} is now serving you."]
    assert texts(chinese) == [f"客服 {agent.name} 正在为您服务。"]
    assert all("VIP" not in t for t in texts(english))
