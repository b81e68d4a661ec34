"""The widget's pre-chat form, and a conversation transcript e-mailed by a real Celery worker
to a real SMTP server (aiosmtpd) — internal notes never in it."""

from __future__ import annotations

import json

from django.test import Client
from django_tenants.utils import schema_context

from im.models import Participant
from kefu.models import Channel, Session
from kefu.services import messages as kefu_messages
from kefu.services import visitors
from tests.conftest import make_desk, unique
from tests.waits import wait_until


def _post(path: str, body: dict) -> tuple[int, dict]:
    r = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en").post(
        path, json.dumps(body), content_type="application/json"
    )
    return r.status_code, r.json()


def test_the_pre_chat_form_asks_for_what_the_channel_wants(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(prechat_fields="name, email")
    status, session = _post("/api/v1/widget/session", {"channel": desk.channel.public_key})
    assert status == 200
    assert session["prechat"] == ["name", "email"]
    assert session["visitor"]["profile_done"] is False
    token = session["token"]

    status, body = _post("/api/v1/widget/profile", {"token": token, "name": "Li Lei"})
    assert (status, body["error"], body["field"]) == (400, "invalid", "email")
    status, body = _post(
        "/api/v1/widget/profile", {"token": token, "name": "Li Lei", "email": "not-an-address"}
    )
    assert (status, body["field"]) == (400, "email")
    status, body = _post(
        "/api/v1/widget/profile",
        {"token": token, "name": "Li Lei", "email": "li.lei@example.com", "phone": "+86 138 0000"},
    )
    assert status == 200
    assert body["visitor"]["name"] == "Li Lei"
    assert body["visitor"]["email"] == "li.lei@example.com"
    assert body["visitor"]["profile_done"] is True
    # the chat shows the name to agents from now on
    with schema_context("acme"):
        visitor = visitors.visitor_from_token(token)
        kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        assert Participant.objects.get(member_key=visitor.member_key).name == "Li Lei"
    # and a returning visitor is not asked again
    status, again = _post(
        "/api/v1/widget/session", {"channel": desk.channel.public_key, "token": token}
    )
    assert again["visitor"]["profile_done"] is True
    status, body = _post("/api/v1/widget/profile", {"token": "forged", "name": "x"})
    assert status == 401


def test_the_visitor_gets_the_transcript_by_email(acme, smtp, mail_worker):
    _port, inbox = smtp
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    status, session = _post(
        "/api/v1/widget/session", {"channel": desk.channel.public_key, "language": "en"}
    )
    token = session["token"]
    with schema_context("acme"):
        visitor = visitors.visitor_from_token(token)
        kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="Where is order 42?", client_msg_id="t1"
        )
        cid = Session.objects.get(visitor=visitor).conversation_id
        kefu_messages.agent_message_send(user=agent, conversation_id=cid, content="It ships today.")
        kefu_messages.agent_message_send(
            user=agent, conversation_id=cid, content="late again, sigh", internal=True
        )
    status, body = _post(
        "/api/v1/widget/transcript",
        {"token": token, "conversation_id": cid, "email": "li.lei@example.com"},
    )
    assert (status, body) == (202, {"email": "li.lei@example.com"})
    wait_until(lambda: inbox.messages, what="the transcript mail")
    assert len(inbox.messages) == 1
    recipients, mail = inbox.messages[0]
    assert recipients == ["li.lei@example.com"]
    assert mail["Subject"] == f"Your conversation with {desk.channel.name}"
    text = mail.get_content()
    assert "You: Where is order 42?" in text
    assert f"{agent.name}: It ships today." in text
    # the automatic lines too are in the visitor's language (stored in the tenant's Chinese)
    assert f"{agent.name} is now serving you." in text
    assert "正在为您服务" not in text
    assert "sigh" not in text
    # asking again at once is refused; someone else's conversation or a bad address too
    status, body = _post("/api/v1/widget/transcript", {"token": token, "conversation_id": cid})
    assert (status, body["error"]) == (409, "conflict")
    _s, other = _post("/api/v1/widget/session", {"channel": desk.channel.public_key})
    status, _b = _post(
        "/api/v1/widget/transcript",
        {"token": other["token"], "conversation_id": cid, "email": "x@example.com"},
    )
    assert status == 404
    status, body = _post(
        "/api/v1/widget/transcript", {"token": other["token"], "conversation_id": cid}
    )
    assert (status, body["field"]) == (400, "email")
