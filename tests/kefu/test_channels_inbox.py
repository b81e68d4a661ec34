"""What agents and administrators see of a messaging channel without a vendor in the loop: the
composer's capabilities in the conversation payload, the server refusing what the channel cannot
carry, the Retry API, and the channel's health in the back office."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from django_tenants.utils import schema_context

from im.attachments import attachment_upload
from im.models import Message
from im.services import messages as im_messages
from kefu import privacy, selectors
from kefu.admin import ChannelAccountForm
from kefu.channels.inbound import visitor_for_external
from kefu.models import Channel, ChannelAccount, ChannelEvent, Delivery, Visitor
from kefu.senders import agent_sender
from kefu.services import messages
from org.models import User
from tests.channels import BOT_TOKEN, HOOK_SECRET, WX_AES_KEY, messaging_channel
from tests.conftest import PASSWORD, agent_client, make_desk, unique
from weiyu.errors import ServiceError


def _chat(acme, kind: str):
    """A desk, a channel of ``kind`` and a customer served by the desk's agent (no worker: the
    message goes straight through the send path)."""
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, kind, "https://api.example.com")
    with schema_context("acme"):
        visitor, _created = visitor_for_external(channel=channel, user_id=unique("u"), name="Li")
        message, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id=unique("m")
        )
    return desk, channel, message.conversation_id


def test_the_conversation_tells_the_inbox_what_the_channel_carries(acme):
    desk, _channel, conversation_id = _chat(acme, "wechat_mp")
    widget = make_desk(acme, agents=1)
    with schema_context("acme"):
        payload = selectors.conversation_get_for_member(
            conversation_id=conversation_id, member_key=desk.agents[0].member_key
        )
    channel = payload["session"]["channel"]
    assert channel["kind"] == "wechat_mp"
    assert channel["capabilities"] == {
        "attachments": ["image"],
        "typing": False,
        "read_receipts": False,
        "recall": False,
        "edit_window_s": 0,
        "reply_window_s": 48 * 3600,
    }
    assert widget.channel.kind == "widget"


def test_what_the_channel_cannot_carry_is_refused_before_it_is_stored(acme):
    desk, _channel, conversation_id = _chat(acme, "wechat_mp")
    agent = desk.agents[0]
    with schema_context("acme"), translation.override("en"):
        sent, _ = messages.agent_message_send(
            user=agent, conversation_id=conversation_id, content="ok", client_msg_id=unique("c")
        )
        pdf = attachment_upload(
            conversation_id=conversation_id,
            uploader_key=agent.member_key,
            upload=SimpleUploadedFile("terms.pdf", b"%PDF-1.4\n%%EOF\n"),
            kind="file",
        )
        before = Message.objects.filter(conversation_id=conversation_id).count()

        # when the agent recalls a message the follower already has, or sends a PDF
        with pytest.raises(ServiceError) as recall:
            im_messages.message_recall(
                conversation_id=conversation_id,
                message_id=sent.pk,
                sender=agent_sender(agent),
                client_msg_id=unique("r"),
            )
        with pytest.raises(ServiceError) as refused:
            messages.agent_message_send(
                user=agent,
                conversation_id=conversation_id,
                msg_type="file",
                attachment_id=pdf.pk,
                client_msg_id=unique("c"),
            )

        # then both are refused with the reason, and nothing changed
        assert Message.objects.get(pk=sent.pk).recalled_at is None
        assert Message.objects.filter(conversation_id=conversation_id).count() == before
    assert recall.value.code == "forbidden"
    assert "WeChat Official Account" in recall.value.message
    assert (refused.value.code, refused.value.field) == ("invalid", "msg_type")


def test_an_agent_retries_a_failed_reply_through_the_api(acme):
    # given a reply marked not delivered
    desk, _channel, conversation_id = _chat(acme, "telegram")
    agent = desk.agents[0]
    with schema_context("acme"):
        reply, _ = messages.agent_message_send(
            user=agent, conversation_id=conversation_id, content="x", client_msg_id=unique("c")
        )
        delivery = Delivery.objects.get(message=reply)
        Delivery.objects.filter(pk=delivery.pk).update(
            status="failed", error="Telegram refused it: boom", failed_at=timezone.now(), attempts=3
        )
        stranger = User.objects.create_user(username=unique("eve"), password=PASSWORD, role="agent")
    url = f"/api/v1/kefu/deliveries/{delivery.pk}/retry"

    # when someone outside the conversation, then the agent, then the agent again, ask
    outsider = agent_client(stranger).post(url)
    first = agent_client(agent).post(url)
    again = agent_client(agent).post(url)

    # then only the agent's first request queues it again
    assert outsider.status_code == 404
    assert first.status_code == 200
    assert first.json() == {"id": delivery.pk, "status": "queued", "error": "", "attempts": 0}
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    with schema_context("acme"):
        assert Message.objects.get(pk=reply.pk).meta["delivery"]["status"] == "queued"


def test_the_back_office_shows_the_channel_health_and_never_its_secrets(acme):
    desk, channel, conversation_id = _chat(acme, "telegram")
    with schema_context("acme"):
        reply, _ = messages.agent_message_send(
            user=desk.agents[0], conversation_id=conversation_id, content="x",
            client_msg_id=unique("c"),
        )  # fmt: skip
        Delivery.objects.filter(message=reply).update(status="failed", failed_at=timezone.now())
        ChannelAccount.objects.filter(channel=channel).update(
            last_inbound_at=timezone.now(),
            last_error="Telegram refused it: Forbidden: bot was blocked by the user",
            last_error_at=timezone.now(),
        )
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True,
            is_superuser=True,
        )  # fmt: skip
    client = agent_client(boss)

    page = client.get(f"/admin/kefu/channel/{channel.pk}/change/").content.decode()
    listing = client.get("/admin/kefu/channel/?kind=telegram").content.decode()

    assert f"/hooks/telegram/{channel.public_key}" in page
    assert "Messages not delivered today" in page
    assert '<dd id="health-failed">1</dd>' in page
    assert "bot was blocked by the user" in page
    assert BOT_TOKEN not in page
    assert HOOK_SECRET not in page
    assert channel.name in listing
    assert "Telegram bot" in listing


def test_the_back_office_keeps_a_stored_secret_left_empty(acme):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", "https://api.example.com", aes=True)
    with schema_context("acme"):
        account = ChannelAccount.objects.get(channel=channel)
        form = ChannelAccountForm(
            data={"app_id": "wxNEW", "secret": "", "verify_token": "", "aes_key": "",
                  "api_base_url": "http://10.0.0.1/"},
            instance=account,
        )  # fmt: skip
        assert not form.is_valid()
        assert "api_base_url" in form.errors
        form = ChannelAccountForm(
            data={"app_id": "wxNEW", "secret": "", "verify_token": "", "aes_key": "short",
                  "api_base_url": ""},
            instance=account,
        )  # fmt: skip
        assert not form.is_valid()
        assert "aes_key" in form.errors
        form = ChannelAccountForm(
            data={"app_id": "wxNEW", "secret": "", "verify_token": "", "aes_key": "",
                  "api_base_url": ""},
            instance=account,
        )  # fmt: skip
        assert form.is_valid(), form.errors
        form.save()
        account.refresh_from_db()
        assert (account.app_id, account.secret, account.aes_key) == (
            "wxNEW",
            "app-secret",
            WX_AES_KEY,
        )
        assert Channel.objects.get(pk=channel.pk).kind == "wechat_mp"


def test_a_channel_of_another_tenant_is_not_found(acme, globex):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", "https://api.example.com")
    response = Client(HTTP_HOST="globex.localhost", raise_request_exception=False).post(
        f"/hooks/telegram/{channel.public_key}",
        data=json.dumps({"update_id": 1, "message": {}}),
        content_type="application/json",
        HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=HOOK_SECRET,
    )
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


@pytest.mark.parametrize(("kind", "budget"), [("telegram", 6), ("wechat_mp", 7)])
def test_agent_reply_to_a_messaging_channel_budget(acme, kind, budget):
    # given an agent serving a Telegram or WeChat customer
    desk, _channel, conversation_id = _chat(acme, kind)
    sender = agent_sender(desk.agents[0])
    with schema_context("acme"):
        Delivery.objects.exists()  # the schema's search_path is set before counting
        # when the agent replies
        with CaptureQueriesContext(connection) as ctx:
            message, created = im_messages.message_send(
                conversation_id=conversation_id,
                sender=sender,
                content="hi",
                client_msg_id=unique("c"),
            )
        sql = [q["sql"][:140] for q in ctx.captured_queries]

        # then the widget's reply budget (members, BEGIN, session clock and channel kind in one
        # statement, the message, COMMIT) plus the delivery row, plus WeChat's 48-hour check
        assert created
        assert len(sql) == budget, "\n".join(sql)
        assert Delivery.objects.filter(message=message, status="queued").exists()


def test_a_messaging_channel_key_opens_no_widget(acme):
    # given a Telegram channel (its key is in its callback URL)
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "telegram", "https://api.example.com")
    client = Client(HTTP_HOST="acme.localhost", raise_request_exception=False)

    # when a widget tries to start a session with that key
    response = client.post(
        "/api/v1/widget/session",
        data=json.dumps({"channel": channel.public_key}),
        content_type="application/json",
    )

    # then there is no such widget channel, and the demo page does not offer it
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert channel.public_key not in client.get("/").content.decode()


def test_erasing_a_telegram_customer_forgets_their_chat_id(acme):
    # given a Telegram customer with a conversation, and an event of theirs not handled yet
    desk, channel, conversation_id = _chat(acme, "telegram")
    with schema_context("acme"):
        visitor = Visitor.objects.get(sessions__conversation_id=conversation_id)
        visitor.external_id = "424242"
        visitor.save(update_fields=["external_id"])
        pending = ChannelEvent.objects.create(
            channel=channel,
            external_id=unique("u"),
            payload={"message": {"chat": {"id": 424242}, "text": "my address is …"}},
        )
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True,
            is_superuser=True,
        )  # fmt: skip

        # when an administrator exports, then erases the customer
        exported = privacy.visitor_export(user=boss, visitor_id=visitor.pk)
        result = privacy.visitor_erase(user=boss, visitor_id=visitor.pk)

        # then the export named the chat, and the erasure forgot it and the pending payload
        assert exported["channels"] == {"kind": "telegram", "external_id": "424242"}
        assert result["channels"] == 2
        assert Visitor.objects.get(pk=visitor.pk).external_id == ""
        pending.refresh_from_db()
        assert pending.payload == {}
    assert desk.agents
