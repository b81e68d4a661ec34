"""The visitor panel: device from the user agent, page trail, tags, notes, past conversations."""

from __future__ import annotations

import json

from django.test import Client
from django_tenants.utils import schema_context

from kefu import senders
from kefu.models import RoutingRule, Session, VisitorNote, VisitorTag, Workgroup
from kefu.services import agents as kefu_agents
from kefu.services import events as kefu_events
from kefu.services import messages, sessions
from kefu.services import visitors as kefu_visitors
from org.models import User
from tests.conftest import PASSWORD, agent_client, make_agent, make_desk, make_visitor, unique

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)


def test_the_panel_shows_device_trail_tags_notes_and_past_conversations(acme):
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    web = Client(HTTP_HOST="acme.localhost", HTTP_USER_AGENT=IPHONE, REMOTE_ADDR="203.0.113.9")
    # the visitor opens two pages with the widget on them
    first = web.post(
        "/api/v1/widget/session",
        json.dumps({
            "channel": desk.channel.public_key, "page_url": "https://shop.example/",
            "page_title": "Shop", "referrer": "https://search.example/?q=shoes",
        }),
        content_type="application/json",
    ).json()  # fmt: skip
    web.post(
        "/api/v1/widget/session",
        json.dumps({
            "channel": desk.channel.public_key, "token": first["token"],
            "page_url": "https://shop.example/pricing", "page_title": "Pricing",
        }),
        content_type="application/json",
    )  # fmt: skip
    visitor_id = first["visitor"]["id"]
    with schema_context("acme"):
        from kefu.models import Visitor

        visitor = Visitor.objects.get(pk=visitor_id)
        # an earlier conversation, rated, then a current one
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        old = Session.objects.get(visitor=visitor)
        sessions.session_close(session_id=old.pk, closed_by=senders.visitor_sender(visitor))
        Session.objects.filter(pk=old.pk).update(csat_score=5)
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="again", client_msg_id=unique("c")
        )

    client = agent_client(agent)
    # when the agent tags the visitor (twice the same, in another case) and writes a note
    r = client.post(
        f"/api/v1/kefu/visitors/{visitor_id}/tags",
        json.dumps({"name": "VIP"}),
        content_type="application/json",
    )
    assert (r.status_code, r.json()) == (201, {"tags": ["VIP"]})
    client.post(
        f"/api/v1/kefu/visitors/{visitor_id}/tags",
        json.dumps({"name": "vip"}),
        content_type="application/json",
    )
    client.post(
        f"/api/v1/kefu/visitors/{visitor_id}/tags",
        json.dumps({"name": "wholesale"}),
        content_type="application/json",
    )
    note = client.post(
        f"/api/v1/kefu/visitors/{visitor_id}/notes",
        json.dumps({"text": "Prefers e-mail"}),
        content_type="application/json",
    )
    assert note.status_code == 201
    removed = client.delete(f"/api/v1/kefu/visitors/{visitor_id}/tags/wholesale")
    assert removed.json() == {"tags": ["VIP"]}

    # then the panel shows it all
    panel = client.get(f"/api/v1/kefu/visitors/{visitor_id}").json()
    assert (panel["browser"], panel["os"], panel["device"]) == (
        "Mobile Safari 17",
        "iOS 17",
        "iPhone",
    )
    assert panel["ip_address"] == "203.0.113.9"
    assert panel["referrer"] == "https://search.example/?q=shoes"
    assert [(t["url"], t["title"]) for t in panel["trail"]] == [
        ("https://shop.example/pricing", "Pricing"),
        ("https://shop.example/", "Shop"),
    ]
    assert panel["tags"] == ["VIP"]
    assert [(n["text"], n["author"]) for n in panel["notes"]] == [("Prefers e-mail", agent.name)]
    assert [(c["status"], c["csat"]) for c in panel["conversations"]] == [
        ("open", None),
        ("closed", 5),
    ]


def test_a_tag_routes_the_visitors_next_conversation(acme):
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        vip_desk = Workgroup.objects.create(name=unique("vip"))
        vip_agent = make_agent()
        vip_desk.agents.add(vip_agent)
        RoutingRule.objects.create(
            channel=desk.channel, attribute="tag", operator="equals", value="vip",
            workgroup=vip_desk,
        )  # fmt: skip
        visitor, _ = kefu_visitors.visitor_start(channel=desk.channel)
    client = agent_client(desk.agents[0])
    client.post(
        f"/api/v1/kefu/visitors/{visitor.pk}/tags",
        json.dumps({"name": "VIP"}),
        content_type="application/json",
    )
    with schema_context("acme"):
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("c")
        )
        assert Session.objects.get(visitor=visitor).agent_id == vip_agent.pk


def test_bad_visitor_requests_are_refused(acme):
    desk = make_desk(acme, agents=1)
    client = agent_client(desk.agents[0])
    assert client.get("/api/v1/kefu/visitors/999999999").status_code == 404
    with schema_context("acme"):
        visitor, _ = kefu_visitors.visitor_start(channel=desk.channel)
    for body, field in [({"name": ""}, "name"), ({"name": "x" * 65}, "name")]:
        r = client.post(
            f"/api/v1/kefu/visitors/{visitor.pk}/tags",
            json.dumps(body),
            content_type="application/json",
        )
        assert (r.status_code, r.json()["error"], r.json()["field"]) == (400, "invalid", field)
    r = client.post(
        f"/api/v1/kefu/visitors/{visitor.pk}/notes",
        json.dumps({"text": "x" * 2001}),
        content_type="application/json",
    )
    assert r.status_code == 400


def test_the_panel_shows_an_approximate_location_with_a_geoip_database(acme, tmp_path, monkeypatch):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    from kefu import geo

    writer = MMDBWriter(
        ip_version=6, database_type="GeoLite2-City", languages=["en", "zh-CN"],
        description={"en": "test", "zh-CN": "test"}, ipv4_compatible=True,
    )  # fmt: skip
    writer.insert_network(
        IPSet(["203.0.113.0/24"]),
        {
            "country": {"iso_code": "CN", "names": {"en": "China", "zh-CN": "中国"}},
            "subdivisions": [{"names": {"en": "Zhejiang", "zh-CN": "浙江"}}],
            "city": {"names": {"en": "Hangzhou", "zh-CN": "杭州"}},
        },
    )
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        visitor, _ = kefu_visitors.visitor_start(channel=desk.channel, ip_address="203.0.113.50")
        elsewhere, _ = kefu_visitors.visitor_start(channel=desk.channel, ip_address="198.51.100.7")
    client = agent_client(desk.agents[0])
    # without a database: no location
    assert client.get(f"/api/v1/kefu/visitors/{visitor.pk}").json()["location"] is None
    monkeypatch.setenv("GEOIP_PATH", str(path))
    geo._reader.cache_clear()
    located = client.get(f"/api/v1/kefu/visitors/{visitor.pk}").json()["location"]
    assert located == {
        "country": "China", "country_code": "CN", "region": "Zhejiang", "city": "Hangzhou",
        "text": "Hangzhou, Zhejiang, China",
    }  # fmt: skip
    chinese = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="zh-hans")
    chinese.cookies = client.cookies
    assert chinese.get(f"/api/v1/kefu/visitors/{visitor.pk}").json()["location"]["text"] == (
        "杭州, 浙江, 中国"
    )
    assert client.get(f"/api/v1/kefu/visitors/{elsewhere.pk}").json()["location"] is None
    geo._reader.cache_clear()


def test_the_back_office_edits_tags_and_notes_through_the_services(acme, monkeypatch):
    # given a visitor served by an agent, with a note, and an admin
    desk = make_desk(acme, agents=1)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        agent = desk.agents[0]
        kefu_agents.agent_status_set(user=agent, status="online")
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hi", client_msg_id=unique("m")
        )
        old = kefu_visitors.note_add(user=agent, visitor_id=visitor.pk, text="first")
        tag = VisitorTag.objects.create(name=unique("vip"))
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, role="admin", is_staff=True
        )
        boss.is_superuser = True
        boss.save()
    published = []
    real = kefu_events.publish_event_on_commit
    monkeypatch.setattr(
        kefu_events,
        "publish_event_on_commit",
        lambda event, keys: published.append((event, keys)) or real(event, keys),
    )

    # when the admin saves the visitor with a tag, the note corrected and a new note
    form = {
        "name": visitor.name, "email": "v@example.com", "phone": "", "tags": [tag.pk],
        "notes-TOTAL_FORMS": "2", "notes-INITIAL_FORMS": "1", "notes-MIN_NUM_FORMS": "0",
        "notes-MAX_NUM_FORMS": "1000",
        "notes-0-id": old.pk, "notes-0-visitor": visitor.pk, "notes-0-text": "first, corrected",
        "notes-1-id": "", "notes-1-visitor": visitor.pk, "notes-1-text": "second",
        "page_views-TOTAL_FORMS": "0", "page_views-INITIAL_FORMS": "0",
        "page_views-MIN_NUM_FORMS": "0", "page_views-MAX_NUM_FORMS": "0",
    }  # fmt: skip
    saved = agent_client(boss).post(f"/admin/kefu/visitor/{visitor.pk}/change/", form)

    # then the changes are stored, the new note is the admin's
    assert saved.status_code == 302, saved.content[:2000]
    with schema_context("acme"):
        visitor.refresh_from_db()
        assert visitor.email == "v@example.com"
        assert list(visitor.tags.values_list("pk", flat=True)) == [tag.pk]
        notes = dict(VisitorNote.objects.filter(visitor=visitor).values_list("text", "author_id"))
    assert notes == {"first, corrected": agent.pk, "second": boss.pk}
    # and the agent serving the visitor was told each time, as from the inbox
    assert published
    assert {e["type"] for e, _keys in published} == {"visitor.updated"}
    assert all(keys == [agent.member_key] for _e, keys in published)
