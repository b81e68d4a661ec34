"""A Telegram bot as a channel (kefu.channels.telegram): updates in through the webhook (or long
polling), routed to an agent like a widget visitor, agent replies out through the Bot API of a
local fake (tests/fake_vendors.py) by the Celery worker; duplicates stored once, forged secrets
refused, unknown updates skipped, failures shown with a retry."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.management import call_command
from django.test import Client
from django_tenants.utils import schema_context

from im.attachments import attachment_upload
from im.models import Message
from kefu.channels.delivery import channel_health, delivery_retry
from kefu.channels.inbound import channel_event_handle
from kefu.models import Channel, ChannelAccount, ChannelEvent, Delivery
from kefu.services import messages
from tests.channels import BOT_TOKEN, HOOK_SECRET, messaging_channel, visitor_session
from tests.conftest import make_desk, unique
from tests.fake_vendors import PNG
from tests.kefu.conftest import REFUND_A, REFUND_Q, robot_desk
from tests.waits import wait_until

HOST = "acme.localhost"
_ids = iter(range(10_000_000, 99_999_999, 7))


def _update(chat_id: int, **message: object) -> dict:
    base = {"message_id": 1, "date": 1_700_000_000, "chat": {"id": chat_id, "type": "private"}}
    base["from"] = {"id": chat_id, "is_bot": False, "first_name": "Ivan", "last_name": "Petrov"}
    return {"update_id": next(_ids), "message": {**base, **message}}


def _post(channel, update: dict, secret: str | None = HOOK_SECRET):
    client = Client(HTTP_HOST=HOST, raise_request_exception=False)
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    return client.post(
        f"/hooks/telegram/{channel.public_key}",
        data=json.dumps(update),
        content_type="application/json",
        **headers,
    )


def _reply(agent, conversation_id: int, **fields):
    with schema_context("acme"):
        return messages.agent_message_send(
            user=agent, conversation_id=conversation_id, client_msg_id=unique("c"), **fields
        )[0]


def _delivery(message_id: int) -> Delivery | None:
    with schema_context("acme"):
        return Delivery.objects.filter(message_id=message_id).first()


def test_a_telegram_message_reaches_an_agent_and_the_reply_reaches_telegram(
    acme, vendors, channel_worker
):
    # given a bot channel served by an online agent
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)

    # when Telegram delivers a text message to the webhook
    response = _post(channel, _update(chat_id, text="Where is my parcel?"))

    # then it is accepted, and the customer is routed to the agent with the message
    assert response.status_code == 200
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s,
        what="the Telegram customer assigned to the agent",
    )
    assert session.agent_id == desk.agents[0].pk
    assert session.visitor.name == "Ivan Petrov"
    with schema_context("acme"):
        texts = list(
            Message.objects.filter(
                conversation_id=session.conversation_id, sender_type="visitor"
            ).values_list("content", flat=True)
        )
        assert texts == ["Where is my parcel?"]
        assert ChannelAccount.objects.get(channel=channel).last_inbound_at is not None

    # when the agent replies
    reply = _reply(desk.agents[0], session.conversation_id, content="It ships today.")

    # then the Bot API receives sendMessage for that chat, and the reply is marked sent
    call = wait_until(
        lambda: [c for c in vendors.sent("sendMessage") if c.json["text"] == "It ships today."],
        what="sendMessage at the fake Telegram",
    )[0]
    assert call.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert call.json["chat_id"] == str(chat_id)
    delivery = wait_until(
        lambda: (d := _delivery(reply.pk)) and d.status == "sent" and d, what="delivery sent"
    )
    with schema_context("acme"):
        meta = Message.objects.get(pk=reply.pk).meta
    assert meta["delivery"] == {"id": delivery.pk, "status": "sent", "error": "", "attempts": 1}


def test_photos_and_documents_go_both_ways(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    photo = [
        {"file_id": "small1", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 10},
        {"file_id": "large1", "file_unique_id": "l", "width": 800, "height": 800, "file_size": 99},
    ]

    # when the customer sends a photo with a caption
    assert _post(channel, _update(chat_id, photo=photo, caption="this one")).status_code == 200

    # then the largest size is fetched and stored as an image message with its caption
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s
    )
    with schema_context("acme"):
        image = wait_until(
            lambda: Message.objects.filter(
                conversation_id=session.conversation_id, msg_type="image"
            ).first()
        )
        assert image.content == "this one"
        with image.attachment.file.open("rb") as fh:
            assert fh.read() == PNG
    assert any(c.json == {"file_id": "large1"} for c in vendors.sent("getFile"))

    # when the agent sends a picture back
    agent = desk.agents[0]
    with schema_context("acme"):
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = attachment_upload(
            conversation_id=session.conversation_id,
            uploader_key=agent.member_key,
            upload=SimpleUploadedFile("map.png", PNG),
            kind="image",
        )
    _reply(agent, session.conversation_id, msg_type="image", attachment_id=upload.pk, content="")

    # then the Bot API receives sendPhoto with the file
    call = wait_until(
        lambda: [c for c in vendors.sent("sendPhoto") if c.form.get("chat_id") == str(chat_id)],
        what="sendPhoto at the fake Telegram",
    )[0]
    assert call.files["photo"] == ("map.png", PNG)


def test_a_retried_update_is_stored_once(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    update = _update(chat_id, text="hello once")

    # when Telegram sends the same update three times (it retries until it gets a 200)
    statuses = [_post(channel, update).status_code for _ in range(3)]

    # then every call is answered 200 and the message is stored once
    assert statuses == [200, 200, 200]
    session = wait_until(lambda: visitor_session("acme", channel, str(chat_id)))
    with schema_context("acme"):
        wait_until(lambda: ChannelEvent.objects.get(channel=channel).handled_at)
        assert ChannelEvent.objects.filter(channel=channel).count() == 1
        assert (
            Message.objects.filter(
                conversation_id=session.conversation_id, content="hello once"
            ).count()
            == 1
        )


def test_a_forged_secret_is_refused_with_403_and_nothing_is_stored(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)

    for secret in ("wrong", "", None):
        response = _post(channel, _update(next(_ids), text="let me in"), secret=secret)
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"

    with schema_context("acme"):
        assert not ChannelEvent.objects.filter(channel=channel).exists()


def test_bad_bodies_and_unknown_channels_are_refused(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    client = Client(HTTP_HOST=HOST, raise_request_exception=False)
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": HOOK_SECRET}

    not_json = client.post(
        f"/hooks/telegram/{channel.public_key}", "{nope", "application/json", **headers
    )
    no_id = client.post(
        f"/hooks/telegram/{channel.public_key}", '{"message": {}}', "application/json", **headers
    )
    unknown = client.post("/hooks/telegram/no-such-key", "{}", "application/json", **headers)
    wrong_kind = client.post(f"/hooks/wechat_mp/{channel.public_key}", "<xml/>", "text/xml")

    assert (not_json.status_code, not_json.json()["error"]) == (400, "invalid")
    assert (no_id.status_code, no_id.json()["error"]) == (400, "invalid")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert wrong_kind.status_code == 404


def test_unknown_update_types_are_skipped_with_a_log_line(acme, vendors, caplog):
    # given an edited message, a callback query and a sticker, stored by the webhook
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    with schema_context("acme"):
        events = [
            ChannelEvent.objects.create(
                channel=channel, external_id=str(update["update_id"]), payload=update
            )
            for update in (
                {"update_id": next(_ids), "edited_message": {"text": "x"}},
                {"update_id": next(_ids), "callback_query": {"id": "1"}},
                _update(next(_ids), sticker={"file_id": "st"}),
            )
        ]

        # when they are handled
        with caplog.at_level(logging.INFO, logger="kefu.channels"):
            results = [channel_event_handle(event_id=e.pk) for e in events]

        # then no message is stored, each is marked handled and a line says why
        assert results == [None, None, None]
        assert all(e.handled_at for e in ChannelEvent.objects.filter(channel=channel))
        assert not Message.objects.filter(conversation__kefu_session__channel=channel).exists()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "['edited_message']" in logged
    assert "['callback_query']" in logged
    assert "['sticker']" in logged


def test_a_failing_send_is_retried_then_shown_not_delivered_and_can_be_retried(
    acme, vendors, channel_worker
):
    # given a customer talking to an agent
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    _post(channel, _update(chat_id, text="are you there?"))
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s
    )

    wait_until(
        lambda: [c for c in vendors.sent("sendMessage") if c.json["chat_id"] == str(chat_id)],
        what="the 'now serving you' line sent",
    )

    # when Telegram answers 500 to every attempt (3 in these tests)
    vendors.fail_next = 3
    reply = _reply(agent, session.conversation_id, content="Yes, here.")

    # then the reply is marked not delivered with the reason, and the health counts it
    delivery = wait_until(
        lambda: (d := _delivery(reply.pk)) and d.status == "failed" and d, what="failed"
    )
    assert delivery.attempts == 3
    assert "boom" in delivery.error
    with schema_context("acme"):
        meta = Message.objects.get(pk=reply.pk).meta["delivery"]
        health = channel_health(channel=channel)
    assert meta["status"] == "failed"
    assert "boom" in meta["error"]
    assert health["failed_today"] == 1
    assert "boom" in health["last_error"]

    # when the agent retries it (Telegram is back)
    with schema_context("acme"):
        delivery_retry(user=agent, delivery_id=delivery.pk)

    # then it is sent
    wait_until(lambda: (d := _delivery(reply.pk)) and d.status == "sent", what="sent on retry")
    assert [c for c in vendors.sent("sendMessage") if c.json["text"] == "Yes, here."]


def test_an_answer_no_one_expected_fails_the_delivery_and_the_next_reply_still_goes(
    acme, vendors, channel_worker
):
    # given a customer talking to an agent
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    _post(channel, _update(chat_id, text="hello?"))
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s
    )
    wait_until(
        lambda: [c for c in vendors.sent("sendMessage") if c.json["chat_id"] == str(chat_id)],
        what="the 'now serving you' line sent",
    )
    # when Telegram says "ok" to every attempt of a reply with a result nobody can read
    vendors.garble_next = 3
    first = _reply(agent, session.conversation_id, content="First answer.")
    # then that reply ends "not delivered" with a reason, after its attempts
    delivery = wait_until(
        lambda: (d := _delivery(first.pk)) and d.status == "failed" and d, what="failed"
    )
    assert delivery.attempts == 3
    assert "AttributeError" in delivery.error  # the reason, in the tenant's language
    # and the customer's next reply, which waited behind it, is sent
    second = _reply(agent, session.conversation_id, content="Second answer.")
    wait_until(lambda: (d := _delivery(second.pk)) and d.status == "sent", what="the next sent")


def test_a_permanent_refusal_is_not_retried(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    _post(channel, _update(chat_id, text="bye"))
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s
    )
    vendors.refuse = True
    try:
        reply = _reply(desk.agents[0], session.conversation_id, content="Blocked?")
        delivery = wait_until(
            lambda: (d := _delivery(reply.pk)) and d.status == "failed" and d, what="failed"
        )
    finally:
        vendors.refuse = False
    assert delivery.attempts == 1
    assert "bot was blocked by the user" in delivery.error


def test_only_a_member_of_the_conversation_may_retry(acme, vendors):
    from weiyu.errors import ServiceError

    desk = make_desk(acme, agents=2)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    with schema_context("acme"):
        with pytest.raises(ServiceError) as missing:
            delivery_retry(user=desk.agents[1], delivery_id=987654321)
        with pytest.raises(ServiceError) as bad:
            delivery_retry(user=desk.agents[1], delivery_id="1")
    assert missing.value.code == "not_found"
    assert bad.value.code == "invalid"
    assert channel.kind == "telegram"


def test_long_polling_stores_new_updates_and_moves_the_offset(
    acme, vendors, channel_worker, settings
):
    # given a bot without a webhook, and two updates waiting at Telegram
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    first, second = _update(chat_id, text="polled one"), _update(chat_id, text="polled two")
    vendors.updates = [first, second]

    # when the poller runs once (this process may reach the fake too)
    settings.WEIYU_OUTBOUND_ALLOW = f"127.0.0.1:{vendors.server.server_address[1]}"
    call_command("telegram_poll", tenant="acme", channel=channel.pk, once=True, timeout=0)

    # then both are stored and handled in order, and the offset is past them
    session = wait_until(lambda: visitor_session("acme", channel, str(chat_id)))
    with schema_context("acme"):
        wait_until(
            lambda: (
                Message.objects.filter(
                    conversation_id=session.conversation_id, content__startswith="polled"
                ).count()
                == 2
            )
        )
        assert ChannelAccount.objects.get(channel=channel).poll_offset == second["update_id"]
    assert vendors.sent("getUpdates")[-1].json["offset"] == 1


def test_the_robot_answers_a_telegram_customer_on_a_robot_channel(acme, vendors, channel_worker):
    # given a robot-only channel with a knowledge base, turned into a Telegram bot
    desk = robot_desk(acme, mode="robot")
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(kind="telegram")
        ChannelAccount.objects.create(
            channel=desk.channel,
            secret=BOT_TOKEN,
            verify_token=HOOK_SECRET,
            api_base_url=vendors.base_url,
        )
    chat_id = next(_ids)

    # when the customer asks a question the knowledge base answers
    _post(desk.channel, _update(chat_id, text=REFUND_Q))

    # then the robot's answer reaches Telegram
    call = wait_until(
        lambda: [c for c in vendors.sent("sendMessage") if c.json["chat_id"] == str(chat_id)],
        what="the robot's answer at the fake Telegram",
    )[0]
    assert call.json["text"] == REFUND_A


def test_quick_replies_reach_the_customer_in_the_order_they_were_written(
    acme, vendors, channel_worker
):
    # given a customer served by an agent, and a worker that runs two tasks at once
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", vendors.base_url)
    chat_id = next(_ids)
    _post(channel, _update(chat_id, text="hello"))
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, str(chat_id))) and s.agent_id and s
    )

    # when the agent sends five replies in a row
    texts = [f"part {n}" for n in range(1, 6)]
    for text in texts:
        _reply(desk.agents[0], session.conversation_id, content=text)

    # then Telegram receives them in that order (after the line saying who serves them)
    def received() -> list[str]:
        return [
            c.json["text"]
            for c in vendors.sent("sendMessage")
            if c.json["chat_id"] == str(chat_id) and c.json["text"].startswith("part ")
        ]

    wait_until(lambda: len(received()) == 5, what="five sendMessage calls")
    assert received() == texts
