"""Webhook endpoints through the API (an API key or a session) and the back office, the secret
shown once and encrypted at rest, and which services record which events (docs/webhooks.md).
Deliveries themselves are tested against a real receiver in tests/org/test_webhooks.py."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from kefu.csat import csat_submit
from kefu.models import Channel, Session
from kefu.senders import agent_sender
from kefu.services import messages, sessions
from org import apikeys
from org.models import ApiKey, User
from org.webhooks import services
from org.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.conftest import agent_client, make_agent, make_desk, make_visitor, unique
from tests.waits import wait_until
from tickets.services.tickets import ticket_create, ticket_update

HOST = "acme.localhost"
HOOK = "http://127.0.0.1:9/hook"  # never called here: the tests look at what is recorded


@pytest.fixture(autouse=True)
def _loopback_allowed():
    with override_settings(WEIYU_OUTBOUND_ALLOW="127.0.0.1:9"):
        yield
    for schema in ("acme", "globex"):
        with schema_context(schema):
            for endpoint in WebhookEndpoint.objects.all():
                services.endpoint_delete(endpoint=endpoint)


def _api(scopes: list[str], user: User | None = None) -> Client:
    with schema_context("acme"):
        _key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=user or User.objects.get(username="bob"),
            name=unique("crm"),
            scopes=scopes,
        )
    return Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT_LANGUAGE="en")


def test_api_key_subscribes_and_the_secret_is_shown_once_and_encrypted(acme) -> None:
    # given a system key of an administrator with org:write
    client = _api(["org:write"])
    # when it subscribes a URL
    answer = client.post(
        "/api/v1/org/webhooks",
        {"url": HOOK, "events": ["ticket.created", "message.created"], "description": "CRM"},
        content_type="application/json",
    )
    # then the answer carries the secret, once
    assert answer.status_code == 201, answer.content
    body = answer.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert body["events"] == ["message.created", "ticket.created"]  # in the catalogue's order
    listed = client.get("/api/v1/org/webhooks").json()["endpoints"]
    assert [e["url"] for e in listed] == [HOOK]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"/api/v1/org/webhooks/{body['id']}").json()
    # and the column holds a Fernet token, not the secret
    with schema_context("acme"), connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhookendpoint WHERE id = %s", [body["id"]])
        stored = cursor.fetchone()[0]
        assert stored.startswith("gA")
        assert secret not in stored
        assert WebhookEndpoint.objects.get(pk=body["id"]).secret == secret
    # when the secret is rotated, a new one is shown
    rotated = client.post(f"/api/v1/org/webhooks/{body['id']}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != secret
    # and an update, then a delete
    patched = client.patch(
        f"/api/v1/org/webhooks/{body['id']}",
        {"events": ["sla.breached"], "is_active": False},
        content_type="application/json",
    )
    assert patched.status_code == 200
    assert patched.json()["events"] == ["sla.breached"]
    assert patched.json()["is_active"] is False
    assert client.delete(f"/api/v1/org/webhooks/{body['id']}").status_code == 204
    assert client.get(f"/api/v1/org/webhooks/{body['id']}").status_code == 404


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "http://127.0.0.1:8000/admin", "events": ["ticket.created"]}, "url"),
        ({"url": "http://169.254.169.254/latest", "events": ["ticket.created"]}, "url"),
        ({"url": "ftp://example.com/x", "events": ["ticket.created"]}, "url"),
        ({"url": HOOK, "events": ["ticket.deleted"]}, "events"),
        ({"url": HOOK, "events": []}, "events"),
        ({"url": HOOK, "events": "ticket.created"}, "events"),
        ({"url": 5, "events": ["ticket.created"]}, "url"),
        ({"url": HOOK, "events": ["ticket.created"], "description": "x" * 201}, "description"),
    ],
)
def test_bad_subscriptions_are_400_with_the_field(acme, payload, field) -> None:
    answer = _api(["org:write"]).post(
        "/api/v1/org/webhooks", payload, content_type="application/json"
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["field"] == field


def test_only_administrators_with_the_org_scope_manage_webhooks(acme) -> None:
    # a read-only key lists but cannot subscribe
    reader = _api(["org:read"])
    assert reader.get("/api/v1/org/webhooks").status_code == 200
    denied = reader.post(
        "/api/v1/org/webhooks",
        {"url": HOOK, "events": ["ticket.created"]},
        content_type="application/json",
    )
    assert denied.status_code == 403
    # an agent, signed in, is refused
    with schema_context("acme"):
        agent = make_agent()
    refused = agent_client(agent).get("/api/v1/org/webhooks")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    # a body that is not an object
    bad = _api(["org:write"]).post("/api/v1/org/webhooks", "[1]", content_type="application/json")
    assert bad.status_code == 400


def test_another_tenants_endpoint_is_not_found(acme, globex) -> None:
    with schema_context("globex"):
        theirs, _secret = services.endpoint_create(url=HOOK, events=["ticket.created"])
    client = _api(["org:write"])
    assert client.get(f"/api/v1/org/webhooks/{theirs.pk}").status_code in (404,)
    assert client.delete(f"/api/v1/org/webhooks/{theirs.pk}").status_code == 404
    with schema_context("globex"):
        assert WebhookEndpoint.objects.filter(pk=theirs.pk).exists()


def test_back_office_shows_the_secret_once(acme) -> None:
    # given the tenant's administrator in the back office
    with schema_context("acme"):
        admin = agent_client(User.objects.get(username="bob"))
    # when they add an endpoint
    page = admin.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"url": HOOK, "description": "ERP", "events": ["ticket.created"], "is_active": "on"},
    )
    # then the page after saving shows the secret, and no page shows it again
    assert page.status_code == 200, page.content[:2000]
    with schema_context("acme"):
        endpoint = WebhookEndpoint.objects.get(description="ERP")
    assert b'id="webhook-secret"' in page.content
    assert endpoint.secret.encode() in page.content
    assert "no-store" in page["Cache-Control"]
    change = admin.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
    assert change.status_code == 200
    assert endpoint.secret.encode() not in change.content
    listing = admin.get("/admin/webhooks/webhookendpoint/")
    assert HOOK.encode() in listing.content
    # and a private address is refused by the form
    refused = admin.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"url": "http://10.0.0.5/hook", "events": ["ticket.created"], "is_active": "on"},
    )
    assert refused.status_code == 200
    assert b"10.0.0.5" in refused.content
    assert b"errorlist" in refused.content
    # an agent does not see webhooks in the back office
    with schema_context("acme"):
        agent = make_agent()
        User.objects.filter(pk=agent.pk).update(is_staff=True)
    assert agent_client(agent).get("/admin/webhooks/webhookendpoint/").status_code in (302, 403)


def _types(since: int) -> list[str]:
    return list(
        WebhookEvent.objects.filter(pk__gt=since).order_by("id").values_list("type", flat=True)
    )


def test_services_record_their_events_only_when_subscribed(acme) -> None:
    # given no endpoint: a conversation records nothing
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        start = WebhookEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="quiet", client_msg_id=unique("c")
        )
        assert _types(start) == []
        # given an endpoint for everything
        endpoint, _secret = services.endpoint_create(url=HOOK, events=list(services.EVENTS))
        Channel.objects.filter(pk=desk.channel.pk).update(csat_enabled=True)
    visitor2, _token = make_visitor(desk)
    with schema_context("acme"):
        # when a visitor chats, is served, the chat closes and is rated, and a ticket follows
        message, _ = messages.visitor_message_send(
            visitor=visitor2, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
        cid = message.conversation_id
        session = wait_until(
            lambda: Session.objects.filter(conversation_id=cid, agent__isnull=False).first()
        )
        agent = desk.agents[0]
        sessions.session_close(session_id=session.pk, closed_by=agent_sender(agent))
        csat_submit(visitor=visitor2, conversation_id=cid, score=5, comment="great")
        ticket = ticket_create(subject="Refund", body="please", source="api", creator=agent)
        ticket_update(ticket_id=ticket.pk, actor=agent, changes={"priority": "high"})
        # then each change recorded its event, in order, with a delivery to the endpoint
        types = _types(start)
        assert types[:2] == ["contact.created", "conversation.created"]
        assert types.index("conversation.assigned") < types.index("conversation.closed")
        assert types.index("conversation.closed") < types.index("csat.submitted")
        assert "message.created" in types
        assert types[-2:] == ["ticket.created", "ticket.updated"]
        rated = WebhookEvent.objects.filter(type="csat.submitted", pk__gt=start).get()
        assert rated.data["conversation"]["csat"] == {"score": 5, "comment": "great"}
        assert rated.key == f"conversation:{cid}"
        created = WebhookEvent.objects.filter(type="ticket.created", pk__gt=start).get()
        assert created.data["ticket"]["subject"] == "Refund"
        assert created.key == f"ticket:{ticket.pk}"
        hello = next(
            e
            for e in WebhookEvent.objects.filter(type="message.created", pk__gt=start)
            if e.data["message"]["content"] == "hello"
        )
        assert hello.data["message"]["sender"]["type"] == "visitor"
        assert WebhookDelivery.objects.filter(
            endpoint=endpoint, event__pk__gt=start
        ).count() == len(types)


def test_delivery_log_and_replay_through_the_api(acme) -> None:
    # given an endpoint and one recorded event
    client = _api(["org:write"])
    endpoint_id = client.post(
        "/api/v1/org/webhooks",
        {"url": HOOK, "events": ["ticket.created"]},
        content_type="application/json",
    ).json()["id"]
    with schema_context("acme"):
        ticket_create(
            subject="Log", body="b", source="api", creator=User.objects.get(username="bob")
        )
    # when the log is read
    answer = client.get(f"/api/v1/org/webhooks/{endpoint_id}/deliveries")
    assert answer.status_code == 200
    deliveries = answer.json()["deliveries"]
    assert [d["event"]["type"] for d in deliveries] == ["ticket.created"]
    first = deliveries[0]
    # and a delivery is replayed
    replay = client.post(f"/api/v1/org/webhooks/deliveries/{first['id']}/replay")
    assert replay.status_code == 202
    assert replay.json()["replay_of"] == first["id"]
    assert replay.json()["event"]["id"] == first["event"]["id"]
    bad = client.get(f"/api/v1/org/webhooks/{endpoint_id}/deliveries?status=lost")
    assert bad.status_code == 400
    assert bad.json()["field"] == "status"
    # a disabled endpoint is not replayed to
    client.patch(
        f"/api/v1/org/webhooks/{endpoint_id}",
        {"is_active": False},
        content_type="application/json",
    )
    refused = client.post(f"/api/v1/org/webhooks/deliveries/{first['id']}/replay")
    assert refused.status_code == 409
    assert client.post("/api/v1/org/webhooks/deliveries/999999/replay").status_code == 404
