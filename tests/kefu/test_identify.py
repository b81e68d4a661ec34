"""Known customers (Weiyu.identify, docs/protocol.md "Known customers"): the HMAC of the
customer's id under the channel's secret, one contact per customer across browsers, an anonymous
visitor becoming the contact, and bad input refused."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import AttributeDefinition, Channel, Visitor
from kefu.services import messages
from kefu.services.visitors import channel_identity_secret_rotate, identity_hmac
from tests.conftest import make_desk, unique

HOST = "acme.localhost"


_browsers = itertools.count(1)


def _widget() -> Client:
    # each browser from an address of its own: the module starts more widget sessions than
    # one address may in a minute (org.limits.session_start), which is not what it tests
    n = next(_browsers)
    return Client(
        HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=f"10.13.{n // 250}.{n % 250 + 1}"
    )


def _session(client: Client, channel: Channel) -> dict:
    answer = client.post(
        "/api/v1/widget/session", {"channel": channel.public_key}, content_type="application/json"
    )
    assert answer.status_code == 200, answer.content
    return answer.json()


def _identify(client: Client, token: str, identity: dict, hmac: str | None) -> tuple[int, dict]:
    body = {"token": token, "identity": identity}
    if hmac is not None:
        body["hmac"] = hmac
    answer = client.post("/api/v1/widget/identify", body, content_type="application/json")
    return answer.status_code, answer.json()


@pytest.fixture
def verified(acme):
    """A desk whose channel requires verified identities, and its secret."""
    desk = make_desk(acme)
    with schema_context("acme"):
        secret = channel_identity_secret_rotate(channel=desk.channel)
        Channel.objects.filter(pk=desk.channel.pk).update(identity_required=True)
        # Weiyu.identify's attributes are checked against the tenant's definitions
        AttributeDefinition.objects.get_or_create(
            applies_to="contact", key="plan", defaults={"name": "Plan", "kind": "text"}
        )
        desk.channel.refresh_from_db()
    return desk, secret


def test_two_browsers_of_one_customer_share_one_contact_and_history(verified) -> None:
    desk, secret = verified
    customer = unique("cust-")
    mac = identity_hmac(secret=secret, external_id=customer)
    # given a visitor on a laptop who writes, then logs in on the shop
    laptop = _widget()
    anonymous = _session(laptop, desk.channel)
    with schema_context("acme"):
        first, _ = messages.visitor_message_send(
            visitor=Visitor.objects.get(pk=anonymous["visitor"]["id"]),
            conversation_id=None,
            content="from the laptop",
            client_msg_id=unique("c"),
        )
    status, on_laptop = _identify(
        laptop,
        anonymous["token"],
        {
            "id": customer,
            "name": "Ann Lee",
            "email": "ann@example.com",
            "attributes": {"plan": "pro"},
        },
        mac,
    )
    # then the anonymous visitor became the contact (same visitor, same history)
    assert status == 200, on_laptop
    assert on_laptop["visitor"]["id"] == anonymous["visitor"]["id"]
    assert on_laptop["visitor"]["name"] == "Ann Lee"
    # when the same customer opens the widget on a phone and is identified
    phone = _widget()
    fresh = _session(phone, desk.channel)
    assert fresh["visitor"]["id"] != anonymous["visitor"]["id"]
    status, on_phone = _identify(phone, fresh["token"], {"id": customer}, mac.upper())
    # then the phone is the same contact, with the laptop's conversation
    assert status == 200, on_phone
    assert on_phone["visitor"]["id"] == anonymous["visitor"]["id"]
    with schema_context("acme"):
        assert first.conversation.kefu_session.visitor_id == on_phone["visitor"]["id"]
        contact = Visitor.objects.get(pk=anonymous["visitor"]["id"])
        assert contact.external_id == customer
        assert contact.email == "ann@example.com"
        assert contact.attributes == {"plan": "pro"}
        assert Visitor.objects.filter(channel=desk.channel, external_id=customer).count() == 1


def test_a_forged_or_missing_hmac_is_refused(verified) -> None:
    desk, secret = verified
    client = _widget()
    token = _session(client, desk.channel)["token"]
    victim = unique("victim-")
    forged = identity_hmac(secret="not-the-secret", external_id=victim)
    for hmac in (forged, None, "", "zz"):
        status, body = _identify(client, token, {"id": victim}, hmac)
        assert status == 403, (hmac, body)
        assert body["error"] == "forbidden"
        assert body["field"] == "hmac"
    # an HMAC of another id does not open this one
    other = identity_hmac(secret=secret, external_id=victim + "x")
    assert _identify(client, token, {"id": victim}, other)[0] == 403
    with schema_context("acme"):
        assert not Visitor.objects.filter(external_id=victim).exists()


def test_without_verification_only_this_browser_gets_the_profile(acme) -> None:
    # given a channel without identity verification
    desk = make_desk(acme)
    first, second = _widget(), _widget()
    one = _session(first, desk.channel)
    two = _session(second, desk.channel)
    customer = unique("plain-")
    # when both browsers name the same id without an HMAC
    status, a = _identify(first, one["token"], {"id": customer, "name": "Bo"}, None)
    status2, b = _identify(second, two["token"], {"id": customer, "name": "Eve"}, None)
    # then each keeps its own visitor: nobody takes over a history by naming an id
    assert (status, status2) == (200, 200)
    assert a["visitor"]["id"] == one["visitor"]["id"]
    assert b["visitor"]["id"] == two["visitor"]["id"]
    assert a["visitor"]["name"] == "Bo"
    with schema_context("acme"):
        assert not Visitor.objects.filter(external_id=customer).exists()


@pytest.mark.parametrize(
    ("identity", "field"),
    [
        ("ann", "identity"),
        ({}, "id"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": True}, "id"),
        ({"id": "a", "email": "not an address"}, "email"),
        ({"id": "a", "name": "n" * 101}, "name"),
        ({"id": "a", "attributes": ["x"]}, "attributes"),
        ({"id": "a", "attributes": {"k": {"nested": 1}}}, "attributes.k"),
        ({"id": "a", "attributes": {"plan": {"nested": 1}}}, "attributes.plan"),
        ({"id": "a", "attributes": {f"k{i}": i for i in range(51)}}, "attributes"),
    ],
)
def test_bad_identities_are_400_with_the_field(verified, identity, field) -> None:
    desk, secret = verified
    client = _widget()
    token = _session(client, desk.channel)["token"]
    status, body = _identify(client, token, identity, identity_hmac(secret=secret, external_id="a"))
    assert status == 400, body
    assert body["field"] == field


def test_identified_contact_in_webhooks_back_office_and_erasure(verified) -> None:
    from django.test import override_settings

    from kefu.privacy import visitor_erase
    from org.models import User
    from org.webhooks import services as webhooks
    from org.webhooks.models import WebhookEndpoint, WebhookEvent
    from tests.conftest import agent_client

    desk, secret = verified
    customer = unique("crm-")
    with schema_context("acme"), override_settings(WEIYU_OUTBOUND_ALLOW="127.0.0.1:9"):
        endpoint, _secret = webhooks.endpoint_create(
            url="http://127.0.0.1:9/hook", events=["contact.updated"]
        )
    try:
        # given a webhook for contact changes, when a browser identifies the customer
        client = _widget()
        token = _session(client, desk.channel)["token"]
        mac = identity_hmac(secret=secret, external_id=customer)
        status, body = _identify(client, token, {"id": customer, "name": "Kim"}, mac)
        assert status == 200
        # then the contact.updated event carries the customer id
        with schema_context("acme"):
            event = WebhookEvent.objects.filter(type="contact.updated").order_by("-id").first()
            assert event.data["contact"]["external_id"] == customer
            assert event.data["contact"]["name"] == "Kim"
            bob = User.objects.get(username="bob")
        # and the back office finds the contact by it
        listing = agent_client(bob).get(f"/admin/kefu/visitor/?q={customer}")
        assert listing.status_code == 200
        assert customer.encode() in listing.content
        # and erasing the visitor's personal data forgets the customer id
        with schema_context("acme"):
            visitor_erase(user=bob, visitor_id=body["visitor"]["id"])
            assert not Visitor.objects.filter(external_id=customer).exists()
    finally:
        with schema_context("acme"):
            webhooks.endpoint_delete(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))


def test_identify_needs_a_visitor_token(verified) -> None:
    status, body = _identify(_widget(), "forged", {"id": "a"}, "00")
    assert status == 401
    assert body["error"] == "invalid_token"


def test_the_secret_is_encrypted_at_rest(verified) -> None:
    desk, secret = verified
    from django.db import connection

    with schema_context("acme"), connection.cursor() as cursor:
        cursor.execute("SELECT identity_secret FROM kefu_channel WHERE id = %s", [desk.channel.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("gA")
    assert secret not in stored
