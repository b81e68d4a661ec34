"""Custom attributes (issue 13) on contacts and conversations — checked against the tenant's
definitions in the API and in Weiyu.identify, used by routing rules, the inbox's views, saved
views, the export and the contacts API — and merging two contacts, by hand or when an anonymous
visitor identifies as a known customer on another browser."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from im.models import Participant
from kefu.models import AttributeDefinition, Channel, RoutingRule, Session, Visitor, Workgroup
from kefu.services import contacts, messages
from kefu.services import visitors as visitor_services
from org.models import AuditEntry, User
from tests.conftest import agent_client, make_agent, make_desk, make_visitor, unique
from weiyu.realtime import capture_events


@pytest.fixture
def defined(acme):
    """Contact attributes plan (a list), orders (a number), vip (true/false), renewal (a date)
    and a conversation attribute order_no (text)."""
    with schema_context("acme"):
        for key, kind, applies_to, options in (
            ("plan", "list", "contact", "free\npro\nvip"),
            ("orders", "number", "contact", ""),
            ("vip", "boolean", "contact", ""),
            ("renewal", "date", "contact", ""),
            ("order_no", "text", "conversation", ""),
        ):
            AttributeDefinition.objects.update_or_create(
                applies_to=applies_to,
                key=key,
                defaults={"name": key.title(), "kind": kind, "options": options},
            )


def _write(visitor: Visitor, text: str) -> Session:
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
        )
        return Session.objects.filter(visitor=visitor).latest("pk")


def test_agents_read_and_write_contact_attributes_of_their_kind(acme, defined):
    desk = make_desk(acme)
    visitor, _ = make_visitor(desk)
    client = agent_client(desk.agents[0])
    url = f"/api/v1/kefu/visitors/{visitor.pk}/attributes"
    # the definitions, for the panel
    defs = client.get("/api/v1/kefu/attributes").json()
    assert {d["key"] for d in defs["contact"]} >= {"plan", "orders", "vip", "renewal"}
    assert next(d for d in defs["contact"] if d["key"] == "plan")["options"] == [
        "free",
        "pro",
        "vip",
    ]
    # when an agent sets values of each kind (numbers and booleans may come as text)
    body = {"plan": "vip", "orders": "12", "vip": True, "renewal": "2027-01-31"}
    response = client.patch(url, {"attributes": body}, "application/json")
    # then they are stored typed, and the visitor panel shows them
    assert response.status_code == 200, response.content
    assert response.json()["attributes"] == {
        "plan": "vip",
        "orders": 12,
        "vip": True,
        "renewal": "2027-01-31",
    }
    panel = client.get(f"/api/v1/kefu/visitors/{visitor.pk}").json()
    assert panel["attributes"]["plan"] == "vip"
    # values of the wrong kind, and keys nobody defined, are refused with the field
    for bad, field in (
        ({"plan": "platinum"}, "attributes.plan"),
        ({"orders": "many"}, "attributes.orders"),
        ({"vip": "yes"}, "attributes.vip"),
        ({"renewal": "31/01/2027"}, "attributes.renewal"),
        ({"colour": "red"}, "attributes.colour"),
        ({"order_no": "A-1"}, "attributes.order_no"),  # a conversation attribute
    ):
        response = client.patch(url, {"attributes": bad}, "application/json")
        assert response.status_code == 400, bad
        assert response.json()["field"] == field
    # null removes a value
    response = client.patch(url, {"attributes": {"vip": None}}, "application/json")
    assert "vip" not in response.json()["attributes"]
    # visitors cannot use the agents' API
    assert Client(HTTP_HOST="acme.localhost").get(url).status_code in (401, 403)


def test_identify_sets_defined_contact_attributes_and_routing_rules_use_them(acme, defined):
    # given a channel whose rule sends plan = vip to a VIP workgroup
    desk = make_desk(acme)
    with schema_context("acme"):
        vip_group = Workgroup.objects.create(name=unique("vip"))
        vip_agent = make_agent(name="vipdesk")
        vip_group.agents.add(vip_agent)
        rule = RoutingRule(
            channel=desk.channel,
            attribute="contact_attribute",
            attribute_key="plan",
            operator="equals",
            value="VIP",
            workgroup=vip_group,
        )
        rule.full_clean()
        rule.save()
        # a rule must name a defined contact attribute
        bad = RoutingRule(
            channel=desk.channel,
            attribute="contact_attribute",
            attribute_key="nope",
            value="x",
            workgroup=vip_group,
        )
        with pytest.raises(Exception, match="attribute"):
            bad.full_clean()
    widget = Client(HTTP_HOST="acme.localhost")
    start = widget.post(
        "/api/v1/widget/session", {"channel": desk.channel.public_key}, "application/json"
    ).json()
    # a value outside the list is refused
    answer = widget.post(
        "/api/v1/widget/identify",
        {"token": start["token"], "identity": {"id": "c-1", "attributes": {"plan": "gold"}}},
        "application/json",
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "attributes.plan"
    # when the host page identifies a VIP customer, who then writes
    answer = widget.post(
        "/api/v1/widget/identify",
        {
            "token": start["token"],
            "identity": {"id": "c-1", "attributes": {"plan": "vip", "orders": 3}},
        },
        "application/json",
    )
    assert answer.status_code == 200, answer.content
    with schema_context("acme"):
        vip = Visitor.objects.get(pk=answer.json()["visitor"]["id"])
        assert vip.attributes == {"plan": "vip", "orders": 3}
    vip_session = _write(vip, "I need help with my VIP order")
    # then the conversation goes to the VIP workgroup; an anonymous visitor's does not
    assert vip_session.workgroup_id == vip_group.pk
    other, _ = make_visitor(desk)
    assert _write(other, "hello").workgroup_id == desk.workgroup.pk


def test_conversation_attributes_filters_saved_views_and_contacts(acme, defined):
    desk = make_desk(acme)
    agent = desk.agents[0]
    vip, _ = make_visitor(desk)
    plain, _ = make_visitor(desk)
    with schema_context("acme"):
        visitor_services.contact_attributes_set(
            user=agent, visitor_id=vip.pk, values={"plan": "vip"}
        )
    vip_session = _write(vip, "vip here")
    plain_session = _write(plain, "plain here")
    client = agent_client(agent)
    url = f"/api/v1/kefu/conversations/{vip_session.conversation_id}/attributes"
    # the agent sets a conversation attribute; the workgroup's agents hear of it
    with schema_context("acme"), capture_events() as events:
        response = client.patch(url, {"attributes": {"order_no": "A-1001"}}, "application/json")
    assert response.status_code == 200, response.content
    assert response.json()["attributes"] == {"order_no": "A-1001"}
    sent = [e for e, _keys in events if e["type"] == "conversation.attributes"]
    assert sent == [
        {
            "type": "conversation.attributes",
            "conversation_id": vip_session.conversation_id,
            "attributes": {"order_no": "A-1001"},
        }
    ]
    # a stranger (another workgroup) cannot read or write it
    with schema_context("acme"):
        stranger = make_agent(name="stranger")
    assert agent_client(stranger).get(url).status_code == 404
    # the list's views filter by a contact or a conversation attribute
    rows = client.get("/api/v1/kefu/conversations?view=open&attribute=plan=vip").json()
    assert [r["conversation_id"] for r in rows["conversations"]] == [vip_session.conversation_id]
    rows = client.get("/api/v1/kefu/conversations?view=open&attribute=order_no=A-1001").json()
    assert [r["conversation_id"] for r in rows["conversations"]] == [vip_session.conversation_id]
    assert rows["conversations"][0]["attributes"] == {"order_no": "A-1001"}
    rows = client.get("/api/v1/kefu/conversations?view=open&attribute=plan=").json()
    assert plain_session.conversation_id in [r["conversation_id"] for r in rows["conversations"]]
    assert vip_session.conversation_id not in [r["conversation_id"] for r in rows["conversations"]]
    for bad in ("plan", "nope=1", "plan=gold"):
        response = client.get(f"/api/v1/kefu/conversations?view=open&attribute={bad}")
        assert response.status_code == 400, bad
        assert response.json()["field"] == "attribute"
    # a saved view keeps the filter and counts by it
    saved = client.post(
        "/api/v1/kefu/saved-views",
        {"name": "VIPs", "filters": {"view": "open", "attribute": "plan=vip"}},
        "application/json",
    )
    assert saved.status_code == 201, saved.content
    counts = client.get("/api/v1/kefu/views").json()
    assert next(s for s in counts["saved"] if s["name"] == "VIPs")["count"] == 1
    # the contacts API filters by attribute too
    found = client.get("/api/v1/kefu/contacts?attribute=plan=vip").json()["contacts"]
    assert vip.pk in [c["id"] for c in found]
    assert plain.pk not in [c["id"] for c in found]
    assert all(c["attributes"]["plan"] == "vip" for c in found)


def test_an_agent_merges_two_contacts(acme, defined):
    desk = make_desk(acme)
    agent = desk.agents[0]
    kept, _ = make_visitor(desk)
    other, other_token = make_visitor(desk)
    with schema_context("acme"):
        Visitor.objects.filter(pk=other.pk).update(email="ann@example.com")
        visitor_services.contact_attributes_set(
            user=agent, visitor_id=kept.pk, values={"plan": "pro"}
        )
        visitor_services.contact_attributes_set(
            user=agent, visitor_id=other.pk, values={"plan": "free", "orders": 4}
        )
        visitor_services.note_add(user=agent, visitor_id=other.pk, text="Prefers e-mail")
        visitor_services.tag_add(user=agent, visitor_id=other.pk, name="wholesale")
    old = _write(other, "an old question")
    with schema_context("acme"):
        Session.objects.filter(pk=old.pk).update(status="closed")
    _write(kept, "a new question")
    client = agent_client(agent)
    # the agent finds the other contact by e-mail
    found = client.get(f"/api/v1/kefu/contacts?q=ann@exa&exclude={kept.pk}").json()["contacts"]
    assert [c["id"] for c in found] == [other.pk]
    assert client.get("/api/v1/kefu/contacts?q=a").status_code == 400
    # when the agent merges it into the kept one
    response = client.post(
        f"/api/v1/kefu/visitors/{kept.pk}/merge", {"other_id": other.pk}, "application/json"
    )
    # then the kept contact has both conversations, the notes, tags, e-mail and attributes
    assert response.status_code == 200, response.content
    panel = response.json()
    assert {c["conversation_id"] for c in panel["conversations"]} >= {old.conversation_id}
    assert len(panel["conversations"]) == 2
    assert [n["text"] for n in panel["notes"]] == ["Prefers e-mail"]
    assert panel["tags"] == ["wholesale"]
    assert panel["attributes"] == {"plan": "pro", "orders": 4}  # the kept one's value wins
    with schema_context("acme"):
        assert Visitor.objects.get(pk=kept.pk).email == "ann@example.com"
        assert Visitor.objects.get(pk=other.pk).merged_into_id == kept.pk
        # the kept contact is a member of the moved conversation (its widget lists it)
        assert Participant.objects.filter(
            conversation_id=old.conversation_id, member_key=kept.member_key
        ).exists()
        # the audit log says who merged whom
        entry = AuditEntry.objects.filter(additional_data__event="merge").latest("timestamp")
        assert entry.additional_data["merged"] == other.pk
        assert entry.actor_id == agent.pk
        # a browser holding the other's token is the kept contact now
        assert visitor_services.visitor_from_token(other_token).pk == kept.pk
    # merging again, or a contact into itself, is refused
    again = client.post(
        f"/api/v1/kefu/visitors/{kept.pk}/merge", {"other_id": other.pk}, "application/json"
    )
    assert again.status_code == 409
    same = client.post(
        f"/api/v1/kefu/visitors/{kept.pk}/merge", {"other_id": kept.pk}, "application/json"
    )
    assert same.status_code == 400
    # a contact of another channel (its token and customer id belong there) is not offered
    # nor merged
    elsewhere_desk = make_desk(acme)
    elsewhere, _ = make_visitor(elsewhere_desk)
    with schema_context("acme"):
        Visitor.objects.filter(pk=elsewhere.pk).update(email="ann@example.com")
    found = client.get(f"/api/v1/kefu/contacts?q=ann@exa&exclude={kept.pk}").json()["contacts"]
    assert elsewhere.pk not in [c["id"] for c in found]
    response = client.post(
        f"/api/v1/kefu/visitors/{kept.pk}/merge", {"other_id": elsewhere.pk}, "application/json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "other_id"


def test_an_anonymous_visitor_identifying_on_a_second_browser_joins_the_contact(acme):
    # given a verified channel and a known customer who chatted on a laptop
    desk = make_desk(acme)
    with schema_context("acme"):
        secret = visitor_services.channel_identity_secret_rotate(channel=desk.channel)
        Channel.objects.filter(pk=desk.channel.pk).update(identity_required=True)
    mac = visitor_services.identity_hmac(secret=secret, external_id="cust-42")
    laptop, _token = make_visitor(desk)
    with schema_context("acme"):
        contact, _ = visitor_services.visitor_identify(
            visitor=laptop, identity={"id": "cust-42"}, hmac_hex=mac
        )
    first = _write(contact, "from the laptop")
    with schema_context("acme"):
        Session.objects.filter(pk=first.pk).update(status="closed")
    # when an anonymous visitor on a phone writes, then the shop identifies them
    phone, _ = make_visitor(desk)
    second = _write(phone, "from the phone, before signing in")
    with schema_context("acme"):
        same, _token = visitor_services.visitor_identify(
            visitor=Visitor.objects.get(pk=phone.pk), identity={"id": "cust-42"}, hmac_hex=mac
        )
        # then the phone is the contact, and its conversation is in the contact's history
        assert same.pk == contact.pk
        assert Session.objects.get(pk=second.pk).visitor_id == contact.pk
        assert set(Session.objects.filter(visitor=contact).values_list("pk", flat=True)) == {
            first.pk,
            second.pk,
        }
        assert Visitor.objects.get(pk=phone.pk).merged_into_id == contact.pk
        assert Participant.objects.filter(
            conversation_id=second.conversation_id, member_key=contact.member_key
        ).exists()
        assert contacts.contact_final(Visitor.objects.get(pk=phone.pk)).pk == contact.pk


def test_the_back_office_merges_two_selected_visitors(acme, defined):
    desk = make_desk(acme)
    anonymous, _ = make_visitor(desk)
    known, _ = make_visitor(desk)
    with schema_context("acme"):
        Visitor.objects.filter(pk=known.pk).update(external_id=unique("crm-"))
        admin = User.objects.get(username="bob")
    old = _write(anonymous, "asked before signing up")
    url = reverse("admin:kefu_visitor_changelist")
    # one visitor alone cannot be merged
    response = agent_client(admin).post(
        url, {"action": "merge_contacts", "_selected_action": [known.pk]}, follow=True
    )
    assert "Select exactly two visitors" in response.content.decode()
    # when the admin selects both and merges them
    response = agent_client(admin).post(
        url,
        {"action": "merge_contacts", "_selected_action": [anonymous.pk, known.pk]},
        follow=True,
    )
    # then the one with a customer id is kept and has the conversation
    assert response.status_code == 200
    assert "was merged into" in response.content.decode()
    with schema_context("acme"):
        assert Visitor.objects.get(pk=anonymous.pk).merged_into_id == known.pk
        assert Session.objects.get(pk=old.pk).visitor_id == known.pk
