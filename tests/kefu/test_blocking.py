"""Blocking visitors (KF-11): by visitor or by IP address/network, with an expiry; a blocked
visitor cannot start a chat or send; agents block from a conversation, which closes it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu.models import BlockedVisitor, Session
from kefu.services import messages
from tests.conftest import agent_client, make_agent, make_desk, unique
from weiyu.errors import ServiceError


def _start(channel_key: str, token: str | None = None, ip: str = "198.51.100.20"):
    web = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip)
    body = {"channel": channel_key, **({"token": token} if token else {})}
    return web.post("/api/v1/widget/session", json.dumps(body), content_type="application/json")


def test_an_agent_blocks_a_visitor_from_the_conversation(acme):
    desk = make_desk(acme, agents=1)
    started = _start(desk.channel.public_key, ip="198.51.100.20").json()
    with schema_context("acme"):
        from kefu.models import Visitor

        visitor = Visitor.objects.get(pk=started["visitor"]["id"])
        first, _ = messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="spam spam", client_msg_id=unique("v")
        )
    agent = agent_client(desk.agents[0])
    outsider = agent_client(_outsider())
    body = {
        "conversation_id": first.conversation_id,
        "minutes": 60,
        "by_ip": True,
        "reason": "spam",
    }
    r = outsider.post("/api/v1/kefu/blocks", json.dumps(body), content_type="application/json")
    assert r.status_code == 404
    r = agent.post("/api/v1/kefu/blocks", json.dumps(body), content_type="application/json")
    assert r.status_code == 201
    block = r.json()
    assert block["network"] == "198.51.100.20"
    with schema_context("acme"):
        assert Session.objects.get(conversation_id=first.conversation_id).status == "closed"
        # the visitor cannot send any more
        with pytest.raises(ServiceError) as err:
            messages.visitor_message_send(
                visitor=visitor, conversation_id=None, content="hello?", client_msg_id=unique("v")
            )
        assert err.value.code == "forbidden"
    # nor start a chat again, with the token or as a new visitor from the same address
    again = _start(desk.channel.public_key, token=started["token"], ip="203.0.113.9")
    assert again.status_code == 403
    assert again.json()["error"] == "forbidden"
    assert _start(desk.channel.public_key, ip="198.51.100.20").status_code == 403
    assert _start(desk.channel.public_key, ip="203.0.113.10").status_code == 200
    # lifting the block lets them back
    assert agent.delete(f"/api/v1/kefu/blocks/{block['id']}").status_code == 204
    assert _start(desk.channel.public_key, token=started["token"]).status_code == 200


def test_networks_and_expiry(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        rule = BlockedVisitor.objects.create(network="192.0.2.0/24", reason="abuse")
    assert _start(desk.channel.public_key, ip="192.0.2.77").status_code == 403
    assert _start(desk.channel.public_key, ip="192.0.3.1").status_code == 200
    with schema_context("acme"):
        rule.expires_at = timezone.now() - dt.timedelta(minutes=1)
        rule.save()
    assert _start(desk.channel.public_key, ip="192.0.2.77").status_code == 200
    with schema_context("acme"):
        rule.delete()


def test_bad_block_requests(acme):
    desk = make_desk(acme, agents=1)
    agent = agent_client(desk.agents[0])
    for body, field in (
        ({"conversation_id": "x"}, "conversation_id"),
        ({"conversation_id": 1, "minutes": 0}, None),
    ):
        r = agent.post("/api/v1/kefu/blocks", json.dumps(body), content_type="application/json")
        assert r.status_code in (400, 404)
        if field:
            assert r.json()["field"] == field


def _outsider():
    with schema_context("acme"):
        return make_agent(name="nosy", status="offline")
