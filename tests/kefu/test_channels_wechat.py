"""A WeChat Official Account as a channel (kefu.channels.wechat): the server-URL check, signed
plain and encrypted (AES, WXBizMsgCrypt) callbacks, text/image/voice/subscribe in, customer-
service messages out through a cached access token, the 48-hour window, the follower's profile —
against a local fake of the WeChat API (tests/fake_vendors.py)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone, translation
from django.utils.translation import gettext
from django_tenants.utils import schema_context

from im.models import Message
from kefu.channels import wechat
from kefu.models import ChannelAccount, ChannelEvent, Delivery, Session, Visitor
from kefu.services import messages
from tests.channels import (
    WX_AES_KEY,
    WX_APPID,
    messaging_channel,
    visitor_session,
    wx_signed_query,
)
from tests.conftest import make_desk, unique
from tests.fake_vendors import PNG
from tests.waits import wait_until
from weiyu.errors import ServiceError

HOST = "acme.localhost"
_msg_ids = iter(range(6_000_000_000, 7_000_000_000, 13))


def _xml(openid: str, msg_type: str = "text", **fields: str) -> str:
    body = {
        "ToUserName": "gh_account",
        "FromUserName": openid,
        "CreateTime": str(int(time.time())),
        "MsgType": msg_type,
        **fields,
    }
    if msg_type != "event" and "MsgId" not in body:
        body["MsgId"] = str(next(_msg_ids))
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in body.items())
    return f"<xml>{inner}</xml>"


def _post(channel, xml: str, query: dict | None = None):
    client = Client(HTTP_HOST=HOST, raise_request_exception=False)
    query = query if query is not None else wx_signed_query()
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return client.post(f"/hooks/wechat_mp/{channel.public_key}?{qs}", xml, "text/xml")


def _post_encrypted(channel, xml: str, *, forge: bool = False):
    encrypted = wechat.encrypt(xml=xml.encode(), encoding_aes_key=WX_AES_KEY, app_id=WX_APPID)
    query = wx_signed_query()
    query["encrypt_type"] = "aes"
    signed = wx_signed_query(encrypted, timestamp=query["timestamp"], nonce=query["nonce"])
    query["msg_signature"] = "0" * 40 if forge else signed["signature"]
    envelope = f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return _post(channel, envelope, query)


def _openid() -> str:
    return unique("oWx-follower-")


def _assigned(channel, openid: str) -> Session:
    return wait_until(
        lambda: (s := visitor_session("acme", channel, openid)) and s.agent_id and s,
        what="the follower assigned to the agent",
    )


def _reply(agent, conversation_id: int, content: str) -> Message:
    with schema_context("acme"):
        return messages.agent_message_send(
            user=agent, conversation_id=conversation_id, content=content, client_msg_id=unique("c")
        )[0]


def _sent_texts(vendors, openid: str) -> list[str]:
    return [
        c.json["text"]["content"]
        for c in vendors.sent("/message/custom/send")
        if c.json["touser"] == openid and c.json["msgtype"] == "text"
    ]


def test_the_server_url_check_echoes_only_a_signed_request(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    client = Client(HTTP_HOST=HOST, raise_request_exception=False)
    url = f"/hooks/wechat_mp/{channel.public_key}"

    good = client.get(url, {**wx_signed_query(), "echostr": "echo-123"})
    forged = client.get(url, {**wx_signed_query(), "signature": "f" * 40, "echostr": "x"})

    assert (good.status_code, good.content) == (200, b"echo-123")
    assert forged.status_code == 403
    assert forged.json()["error"] == "forbidden"


def test_a_follower_message_reaches_an_agent_and_the_reply_reaches_wechat(
    acme, vendors, channel_worker
):
    # given an official account served by an online agent
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    tokens_before = len(vendors.sent("/cgi-bin/token"))

    # when WeChat posts a follower's text (plain mode)
    response = _post(channel, _xml(openid, Content="我的订单到哪里了？"))

    # then WeChat gets "success", the follower is routed to the agent under their WeChat name
    assert (response.status_code, response.content) == (200, b"success")
    session = _assigned(channel, openid)
    assert session.agent_id == desk.agents[0].pk
    with schema_context("acme"):
        assert Visitor.objects.get(pk=session.visitor_id).name == "小明"
        texts = list(
            Message.objects.filter(
                conversation_id=session.conversation_id, sender_type="visitor"
            ).values_list("content", flat=True)
        )
    assert texts == ["我的订单到哪里了？"]

    # when the agent replies twice
    _reply(desk.agents[0], session.conversation_id, "今天发货。")
    _reply(desk.agents[0], session.conversation_id, "单号稍后发您。")

    # then both go out as customer-service text messages after the line saying who serves
    # the follower (in Chinese: WeChat gives no language), with one access token fetched
    wait_until(lambda: len(_sent_texts(vendors, openid)) == 3, what="three custom/send calls")
    assert _sent_texts(vendors, openid) == [
        f"客服 {desk.agents[0].name} 正在为您服务。",
        "今天发货。",
        "单号稍后发您。",
    ]
    assert len(vendors.sent("/cgi-bin/token")) - tokens_before <= 1
    info = [c for c in vendors.sent("/cgi-bin/user/info") if c.query["openid"] == openid]
    assert len(info) == 1


def test_an_expired_access_token_is_refreshed_and_the_send_goes_through(
    acme, vendors, channel_worker
):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    _post(channel, _xml(openid, Content="hi"))
    session = _assigned(channel, openid)
    wait_until(lambda: vendors.valid_tokens, what="a token fetched for the profile")
    wait_until(lambda: _sent_texts(vendors, openid), what="the 'now serving you' line sent")

    # when WeChat stops accepting the cached token (errcode 40001)
    vendors.expire_token()
    reply = _reply(desk.agents[0], session.conversation_id, "after the refresh")

    # then a new token is fetched and the message is sent with it
    with schema_context("acme"):
        wait_until(lambda: Delivery.objects.get(message_id=reply.pk).status == "sent")
    calls = [
        c
        for c in vendors.sent("/message/custom/send")
        if c.json["touser"] == openid and c.json["text"]["content"] == "after the refresh"
    ]
    assert len(calls) == 2
    assert calls[0].query["access_token"] not in vendors.valid_tokens
    assert calls[1].query["access_token"] in vendors.valid_tokens


def test_encrypted_mode_is_decrypted_and_a_forged_msg_signature_refused(
    acme, vendors, channel_worker
):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url, aes=True)
    openid = _openid()

    forged = _post_encrypted(channel, _xml(openid, Content="forged"), forge=True)
    good = _post_encrypted(channel, _xml(openid, Content="加密的消息"))

    assert forged.status_code == 403
    assert forged.json()["error"] == "forbidden"
    assert (good.status_code, good.content) == (200, b"success")
    session = _assigned(channel, openid)
    with schema_context("acme"):
        assert list(
            Message.objects.filter(
                conversation_id=session.conversation_id, sender_type="visitor"
            ).values_list("content", flat=True)
        ) == ["加密的消息"]


def test_a_message_for_another_appid_is_refused(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url, aes=True)
    encrypted = wechat.encrypt(
        xml=_xml(_openid(), Content="x").encode(), encoding_aes_key=WX_AES_KEY, app_id="wxOTHER"
    )
    with translation.override("en"), pytest.raises(Exception, match="another AppID"):
        wechat.decrypt(encrypted=encrypted, encoding_aes_key=WX_AES_KEY, app_id=WX_APPID)
    assert channel.kind == "wechat_mp"


def test_forged_signatures_and_bad_xml_are_refused_and_nothing_is_stored(acme, vendors):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    forged = {**wx_signed_query(), "signature": "0" * 40}

    refused = _post(channel, _xml(_openid(), Content="hi"), forged)
    unsigned = _post(channel, _xml(_openid(), Content="hi"), {})
    bomb = _post(
        channel,
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><xml><Content>&a;</Content></xml>',
    )
    not_xml = _post(channel, "hello")

    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert unsigned.status_code == 403
    assert (bomb.status_code, bomb.json()["error"]) == (400, "invalid")
    assert (not_xml.status_code, not_xml.json()["error"]) == (400, "invalid")
    with schema_context("acme"):
        assert not ChannelEvent.objects.filter(channel=channel).exists()


def test_a_retried_callback_is_stored_once(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    xml = _xml(openid, Content="只一次")

    # WeChat retries a callback it got no answer to within 5 seconds, three times
    assert [_post(channel, xml).status_code for _ in range(3)] == [200, 200, 200]

    session = _assigned(channel, openid)
    with schema_context("acme"):
        wait_until(lambda: ChannelEvent.objects.get(channel=channel).handled_at)
        assert (
            Message.objects.filter(
                conversation_id=session.conversation_id, content="只一次"
            ).count()
            == 1
        )


def test_images_voice_and_subscribe_events_come_in(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()

    # when a new follower subscribes, then sends a picture and a voice clip
    _post(channel, _xml(openid, "event", Event="subscribe"))
    wait_until(lambda: "Welcome!" in _sent_texts(vendors, openid), what="the welcome text")
    _post(channel, _xml(openid, "image", PicUrl="http://mmbiz/x.jpg", MediaId="IMG-1"))
    _post(channel, _xml(openid, "voice", MediaId="VOICE-1", Format="amr", Recognition="你好"))

    # then the follower exists with the profile name, and both files are in the conversation
    session = _assigned(channel, openid)
    with schema_context("acme"):
        visitor = Visitor.objects.get(pk=session.visitor_id)
        assert visitor.name == "小明"
        found = wait_until(
            lambda: (
                list(
                    Message.objects.filter(
                        conversation_id=session.conversation_id, sender_type="visitor"
                    ).select_related("attachment")
                )
                if Message.objects.filter(
                    conversation_id=session.conversation_id, sender_type="visitor"
                ).count()
                == 2
                else None
            ),
            what="the image and the voice message",
        )
        image, voice = sorted(found, key=lambda m: m.seq)
        assert image.msg_type == "image"
        with image.attachment.file.open("rb") as fh:
            assert fh.read() == PNG
        assert voice.attachment.name == "voice.amr"
        assert voice.content == "你好"
    assert {c.query["media_id"] for c in vendors.sent("/cgi-bin/media/get")} >= {"IMG-1", "VOICE-1"}


def test_an_image_reply_is_uploaded_then_sent_by_media_id(acme, vendors, channel_worker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from im.attachments import attachment_upload

    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    _post(channel, _xml(openid, Content="照片呢？"))
    session = _assigned(channel, openid)
    with schema_context("acme"):
        upload = attachment_upload(
            conversation_id=session.conversation_id,
            uploader_key=agent.member_key,
            upload=SimpleUploadedFile("p.png", PNG),
            kind="image",
        )
        messages.agent_message_send(
            user=agent,
            conversation_id=session.conversation_id,
            msg_type="image",
            attachment_id=upload.pk,
            client_msg_id=unique("c"),
        )
    call = wait_until(
        lambda: [
            c
            for c in vendors.sent("/message/custom/send")
            if c.json["touser"] == openid and c.json["msgtype"] == "image"
        ],
        what="an image custom message",
    )[0]
    assert call.json["image"] == {"media_id": "MEDIA-UP-1"}
    uploads = vendors.sent("/cgi-bin/media/upload")
    assert any(c.files.get("media") == ("p.png", PNG) for c in uploads)


def test_a_reply_after_48_hours_is_refused_with_a_clear_error(acme, vendors, channel_worker):
    # given a follower whose last message is 49 hours old
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    _post(channel, _xml(openid, Content="hello"))
    session = _assigned(channel, openid)
    with schema_context("acme"), translation.override("en"):
        Session.objects.filter(pk=session.pk).update(
            last_visitor_at=timezone.now() - dt.timedelta(hours=49)
        )
        before = Message.objects.filter(conversation_id=session.conversation_id).count()

        # when the agent replies
        with pytest.raises(ServiceError) as refused:
            messages.agent_message_send(
                user=desk.agents[0],
                conversation_id=session.conversation_id,
                content="Sorry for the wait",
                client_msg_id=unique("c"),
            )

        # then the reply is refused, nothing stored; an internal note still works
        assert refused.value.code == "reply_window_closed"
        assert "48 hours" in refused.value.message
        assert Message.objects.filter(conversation_id=session.conversation_id).count() == before
        messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=session.conversation_id,
            content="note for colleagues",
            internal=True,
            client_msg_id=unique("c"),
        )


def test_wechat_refusing_a_send_shows_not_delivered(acme, vendors, channel_worker):
    desk = make_desk(acme, agents=1)
    channel = messaging_channel(desk, "wechat_mp", vendors.base_url)
    openid = _openid()
    _post(channel, _xml(openid, Content="hello"))
    session = _assigned(channel, openid)
    vendors.refuse = True
    try:
        reply = _reply(desk.agents[0], session.conversation_id, "late")
        with schema_context("acme"):
            delivery = wait_until(
                lambda: Delivery.objects.filter(message_id=reply.pk, status="failed").first()
            )
    finally:
        vendors.refuse = False
    # the reason is stored in the tenant's default language, as system lines are
    with translation.override(settings.LANGUAGE_CODE):
        reason = gettext("more than 48 hours since the follower's last message")
    assert delivery.attempts == 1
    assert "45015" in delivery.error
    assert reason in delivery.error
    with schema_context("acme"):
        assert "45015" in ChannelAccount.objects.get(channel=channel).last_error
