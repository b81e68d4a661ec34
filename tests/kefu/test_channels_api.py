"""The API channel (kefu.channels.api): the tenant's own system posts customer messages with the
channel's key and receives agent replies at its callback URL, signed — against a local receiver
(tests/fake_vendors.py, ``/receiver``) whose calls the test verifies as a customer's code would."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from django.test import Client
from django_tenants.utils import schema_context

from im.models import Message
from kefu.channels.api import api_channel_credentials_rotate
from kefu.models import Channel, ChannelAccount, ChannelEvent, Delivery
from kefu.services import messages
from org.models import User
from tests.channels import visitor_session
from tests.conftest import PASSWORD, agent_client, make_desk, unique
from tests.fake_vendors import PNG
from tests.kefu.conftest import REFUND_A, REFUND_Q, robot_desk
from tests.waits import wait_until

HOST = "acme.localhost"


def _api_channel(desk, base_url: str) -> tuple[Channel, str, str]:
    with schema_context("acme"):
        channel = Channel.objects.create(
            name=unique("api"), kind=Channel.Kind.API, workgroup=desk.workgroup
        )
        key, secret = api_channel_credentials_rotate(channel=channel)
        ChannelAccount.objects.filter(channel=channel).update(api_base_url=f"{base_url}/receiver")
    return channel, key, secret


def _post(channel, key: str, body, *, idem: str | None = None, **extra):
    client = Client(HTTP_HOST=HOST, raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    if idem is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idem
    url = f"/api/v1/kefu/channels/{channel.public_key}/messages"
    if isinstance(body, dict) and "file" in body:
        return client.post(url, data=body, **headers, **extra)
    return client.post(url, json.dumps(body), "application/json", **headers, **extra)


def _verified(call, secret: str) -> dict:
    """What a receiver does (docs/channels.md): check Weiyu-Signature over the raw body."""
    parts = dict(p.split("=", 1) for p in call.headers["Weiyu-Signature"].split(","))
    assert abs(time.time() - int(parts["t"])) < 300
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + call.raw, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    return json.loads(call.raw)


def test_a_message_from_the_api_reaches_an_agent_and_the_signed_reply_reaches_the_receiver(
    acme, vendors, channel_worker
):
    # given an API channel served by an online agent
    desk = make_desk(acme, agents=1)
    channel, key, secret = _api_channel(desk, vendors.base_url)
    contact = unique("crm")

    # when the tenant's system posts a customer's message
    response = _post(
        channel,
        key,
        {
            "contact": {
                "id": contact,
                "name": "Ann Lee",
                "email": "ann@example.com",
                "language": "en",
            },
            "text": "My order is late",
        },
        idem=unique("idem"),
    )

    # then it is accepted and the customer is routed to the agent, with their details
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, contact)) and s.agent_id and s,
        what="the API contact assigned to the agent",
    )
    assert session.visitor.name == "Ann Lee"
    assert session.visitor.email == "ann@example.com"
    with schema_context("acme"):
        assert list(
            Message.objects.filter(
                conversation_id=session.conversation_id, sender_type="visitor"
            ).values_list("content", flat=True)
        ) == ["My order is late"]

    # when the agent replies
    with schema_context("acme"):
        reply = messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=session.conversation_id,
            client_msg_id=unique("c"),
            content="It ships today.",
        )[0]

    # then the receiver gets it, signed with the channel's secret, and the reply is sent
    call = wait_until(
        lambda: [
            c
            for c in vendors.sent("/receiver")
            if json.loads(c.raw)["message"]["text"] == "It ships today."
        ],
        what="the reply at the receiver",
    )[0]
    body = _verified(call, secret)
    assert body["contact"]["id"] == contact
    assert body["message"]["id"] == reply.pk
    assert body["message"]["sender"]["type"] == "agent"
    assert body["channel"] == channel.public_key
    with schema_context("acme"):
        wait_until(
            lambda: Delivery.objects.filter(message_id=reply.pk, status="sent").exists(),
            what="the delivery marked sent",
        )
    # and the system line "… is now serving you" went to the receiver too, as text
    lines = [
        json.loads(c.raw)["message"]
        for c in vendors.sent("/receiver")
        if json.loads(c.raw)["contact"]["id"] == contact
    ]
    assert any(m["type"] == "system" and "is now serving you" in m["text"] for m in lines), lines


def test_a_repeated_idempotency_key_stores_the_message_once(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)
    contact = unique("crm")
    body = {"contact": {"id": contact}, "text": "only once"}

    first = _post(channel, key, body, idem="order-7-msg-1")
    again = _post(channel, key, body, idem="order-7-msg-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    session = wait_until(lambda: visitor_session("acme", channel, contact))
    with schema_context("acme"):
        wait_until(lambda: ChannelEvent.objects.get(pk=first.json()["id"]).handled_at)
        assert ChannelEvent.objects.filter(channel=channel).count() == 1
        assert (
            Message.objects.filter(
                conversation_id=session.conversation_id, content="only once"
            ).count()
            == 1
        )


def test_an_idempotency_key_sent_again_with_another_message_is_refused(
    acme, vendors, channel_worker
):
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)
    contact = unique("crm")

    first = _post(channel, key, {"contact": {"id": contact}, "text": "ship to A"}, idem="o-8")
    other = _post(channel, key, {"contact": {"id": contact}, "text": "ship to B"}, idem="o-8")
    payload = json.dumps({"contact": {"id": contact}, "text": "the invoice"})
    upload = _post(channel, key, {"payload": payload, "file": _file()}, idem="o-9")
    upload_again = _post(channel, key, {"payload": payload, "file": _file()}, idem="o-9")
    other_upload = _post(
        channel, key, {"payload": payload, "file": _file(b"total: 99\n")}, idem="o-9"
    )

    assert first.status_code == 202
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in other
    assert upload.status_code == 202, upload.content
    assert (upload_again.status_code, upload_again["Idempotent-Replayed"]) == (200, "true")
    assert upload_again.json()["id"] == upload.json()["id"]
    assert other_upload.status_code == 422
    with schema_context("acme"):
        assert ChannelEvent.objects.filter(channel=channel).count() == 2
        assert not any(
            e.payload.get("text") == "ship to B"
            for e in ChannelEvent.objects.filter(channel=channel)
        )


def test_files_by_url_and_by_upload_are_stored(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)
    contact = unique("crm")

    # when a picture comes by URL (fetched through the guarded client) and a file is uploaded
    by_url = _post(
        channel,
        key,
        {
            "contact": {"id": contact},
            "text": "see this",
            "attachment": {"url": f"{vendors.base_url}/files/shot.png", "type": "image"},
        },
    )
    payload = json.dumps({"contact": {"id": contact}, "text": "and the invoice"})
    upload = _post(channel, key, {"payload": payload, "type": "file", "file": _file()})

    # then both are stored as the customer's messages with their content
    assert (by_url.status_code, upload.status_code) == (202, 202), upload.content
    session = wait_until(lambda: visitor_session("acme", channel, contact))
    with schema_context("acme"):
        stored = wait_until(
            lambda: (
                list(
                    Message.objects.filter(
                        conversation_id=session.conversation_id, sender_type="visitor"
                    ).order_by("seq")
                )
                if Message.objects.filter(
                    conversation_id=session.conversation_id, sender_type="visitor"
                ).count()
                == 2
                else None
            ),
            what="both files stored",
        )
        assert [(m.msg_type, m.content) for m in stored] == [
            ("image", "see this"),
            ("file", "and the invoice"),
        ]
        with stored[0].attachment.file.open("rb") as fh:
            assert fh.read() == PNG
        assert stored[1].attachment.name == "invoice.txt"


def _file(data: bytes = b"total: 42\n"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("invoice.txt", data, content_type="text/plain")


def test_a_wrong_key_or_a_bad_body_is_refused_and_nothing_is_stored(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)

    wrong = _post(channel, "wyc_not-the-key", {"contact": {"id": "1"}, "text": "x"})
    no_contact = _post(channel, key, {"text": "who am I"})
    empty = _post(channel, key, {"contact": {"id": "1"}})
    bad_mail = _post(channel, key, {"contact": {"id": "1", "email": "nope"}, "text": "x"})
    private_url = _post(
        channel,
        key,
        {"contact": {"id": "1"}, "attachment": {"url": "file:///etc/passwd"}},
    )
    unknown = Client(HTTP_HOST=HOST).post(
        "/api/v1/kefu/channels/no-such-key/messages", "{}", "application/json"
    )
    as_hook = Client(HTTP_HOST=HOST).post(
        f"/hooks/api/{channel.public_key}", "{}", "application/json"
    )

    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    assert (no_contact.status_code, no_contact.json()["field"]) == (400, "contact")
    assert (empty.status_code, empty.json()["field"]) == (400, "text")
    assert (bad_mail.status_code, bad_mail.json()["field"]) == (400, "contact.email")
    assert (private_url.status_code, private_url.json()["field"]) == (400, "attachment.url")
    assert unknown.status_code == 404
    assert as_hook.status_code == 404
    with schema_context("acme"):
        assert not ChannelEvent.objects.filter(channel=channel).exists()


def test_a_body_over_the_upload_limit_is_refused_with_413(acme, vendors, settings):
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = _post(channel, key, {"contact": {"id": "1"}, "text": "x" * 2000})

    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    with schema_context("acme"):
        assert not ChannelEvent.objects.filter(channel=channel).exists()


def test_a_refusing_receiver_shows_not_delivered(acme, vendors, channel_worker):
    # given a customer with an agent, and a receiver that refuses (HTTP 410)
    desk = make_desk(acme, agents=1)
    channel, key, _secret = _api_channel(desk, vendors.base_url)
    contact = unique("crm")
    assert _post(channel, key, {"contact": {"id": contact}, "text": "hi"}).status_code == 202
    session = wait_until(
        lambda: (s := visitor_session("acme", channel, contact)) and s.agent_id and s
    )
    vendors.refuse = True
    try:
        with schema_context("acme"):
            reply = messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                client_msg_id=unique("c"),
                content="hello?",
            )[0]
        # then the reply fails at once with the reason, as the inbox shows it
        with schema_context("acme"):
            delivery = wait_until(
                lambda: Delivery.objects.filter(message_id=reply.pk, status="failed").first(),
                what="the delivery failed",
            )
            assert delivery.attempts == 1
            assert "410" in delivery.error
            assert Message.objects.get(pk=reply.pk).meta["delivery"]["status"] == "failed"
    finally:
        vendors.refuse = False


def test_the_back_office_shows_a_new_key_and_secret_once(acme, vendors):
    # given an API channel and a tenant administrator
    desk = make_desk(acme, agents=1)
    channel, old_key, _secret = _api_channel(desk, vendors.base_url)
    with schema_context("acme"):
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True,
            is_superuser=True,
        )  # fmt: skip
    client = agent_client(boss)

    # when they generate a new key and secret from the channel list
    page = client.post(
        "/admin/kefu/channel/",
        {"action": "api_credentials_generate", "_selected_action": [channel.pk]},
    )

    # then the page shows both once, uncached, and the stored ones are the new ones
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    with schema_context("acme"):
        account = ChannelAccount.objects.get(channel=channel)
    html = page.content.decode()
    assert f'<code id="api-channel-key">{account.verify_token}</code>' in html
    assert f'<code id="api-channel-secret">{account.secret}</code>' in html
    assert account.verify_token != old_key
    # the old key stops working; the change page shows the endpoint, never the secrets
    refused = _post(channel, old_key, {"contact": {"id": "1"}, "text": "x"})
    assert refused.status_code == 401
    change = client.get(f"/admin/kefu/channel/{channel.pk}/change/").content.decode()
    assert f"/api/v1/kefu/channels/{channel.public_key}/messages" in change
    assert account.verify_token not in change
    assert account.secret not in change


def test_the_robot_answers_an_api_customer_on_a_robot_channel(acme, vendors, channel_worker):
    # given a robot-only channel with a knowledge base, turned into an API channel
    desk = robot_desk(acme, mode="robot")
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(kind=Channel.Kind.API)
        desk.channel.kind = Channel.Kind.API
        key, secret = api_channel_credentials_rotate(channel=desk.channel)
        ChannelAccount.objects.filter(channel=desk.channel).update(
            api_base_url=f"{vendors.base_url}/receiver"
        )
    contact = unique("crm")

    # when the customer asks a question the knowledge base answers
    assert (
        _post(desk.channel, key, {"contact": {"id": contact}, "text": REFUND_Q}).status_code == 202
    )

    # then the robot's answer reaches the receiver, signed, from the robot
    def answers() -> list[dict]:
        return [
            body["message"]
            for body in (
                _verified(c, secret)
                for c in vendors.sent("/receiver")
                if json.loads(c.raw)["contact"]["id"] == contact
            )
            if body["message"]["sender"]["type"] == "robot"
        ]

    message = wait_until(answers, what="the robot's answer at the receiver")[0]
    assert message["text"] == REFUND_A
