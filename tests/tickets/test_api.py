"""The tickets REST API over HTTP (docs/api.md §6): staff endpoints with the session cookie,
widget endpoints with the visitor's token; errors are JSON with a code; nobody reaches a ticket
they may not see, nor another tenant's."""

from __future__ import annotations

import json

from django.test import Client
from django_tenants.utils import schema_context

from kefu.services.visitors import visitor_start
from tenants.models import Tenant
from tests.conftest import session_cookie
from tickets.models import Notification, Ticket


def _browser(user, schema: str = "acme") -> Client:
    client = Client(HTTP_HOST=f"{schema}.localhost", HTTP_ACCEPT_LANGUAGE="en")
    name, value = (
        session_cookie(Tenant.objects.get(schema_name=schema), user).decode().split("=", 1)
    )
    client.cookies[name] = value
    return client


def _post(client: Client, path: str, body) -> tuple[int, dict]:
    r = client.post(path, json.dumps(body), content_type="application/json")
    return r.status_code, r.json() if r.content else {}


def _patch(client: Client, path: str, body) -> tuple[int, dict]:
    r = client.patch(path, json.dumps(body), content_type="application/json")
    return r.status_code, r.json()


def test_agents_create_list_reply_and_change_tickets(desk):
    agent = _browser(desk.agent)
    status, ticket = _post(
        agent,
        "/api/v1/tickets",
        {
            "subject": "VPN down",
            "body": "Since 9:00",
            "priority": "urgent",
            "workgroup_id": desk.workgroup.pk,
            "requester_user_id": desk.staff.pk,
            "tags": ["Network", "vpn"],
        },
    )
    assert status == 201
    assert ticket["status"] == "new"
    assert ticket["tags"] == ["network", "vpn"]
    assert ticket["requester"]["name"] == desk.staff.name
    assert [c["kind"] for c in ticket["sla"]] == ["first_response", "resolution"]
    assert ticket["sla_state"] == "ok"
    assert ticket["comments"][0]["body"] == "Since 9:00"
    status, comment = _post(agent, f"/api/v1/tickets/{ticket['id']}/comments", {"body": "On it"})
    assert status == 201
    assert comment["public"] is True
    status, changed = _patch(
        agent,
        f"/api/v1/tickets/{ticket['id']}",
        {"status": "pending", "assignee_id": desk.other.pk},
    )
    assert status == 200
    assert changed["status"] == "pending"
    assert changed["assignee"]["id"] == desk.other.pk
    assert {c["state"] for c in changed["sla"]} == {"met", "paused"}
    status, watched = _post(agent, f"/api/v1/tickets/{ticket['id']}/watch", {"watching": False})
    assert status == 200
    assert desk.agent.pk not in [w["id"] for w in watched["watchers"]]
    watching = agent.get("/api/v1/tickets?view=watching").json()["tickets"]
    assert ticket["id"] not in [t["id"] for t in watching]
    status, body = _post(agent, f"/api/v1/tickets/{ticket['id']}/watch", {"watching": "yes"})
    assert status == 400
    assert body["field"] == "watching"
    listing = agent.get("/api/v1/tickets?view=pending&q=VPN").json()
    assert ticket["id"] in [t["id"] for t in listing["tickets"]]
    # the new assignee was told
    other = _browser(desk.other)
    notes = other.get("/api/v1/tickets/notifications?unread=1").json()
    assert any(n["ticket"]["id"] == ticket["id"] for n in notes["notifications"])
    status, marked = _post(other, "/api/v1/tickets/notifications/read", {})
    assert status == 200
    assert marked["marked"] >= 1
    with schema_context("acme"):
        assert not Notification.objects.filter(recipient=desk.other, read_at__isnull=True).exists()


def test_bad_requests_get_json_errors(desk):
    agent = _browser(desk.agent)
    status, body = _post(agent, "/api/v1/tickets", {"subject": "", "body": "x"})
    assert status == 400
    assert body["error"] == "invalid"
    assert body["field"] == "subject"
    assert agent.get("/api/v1/tickets?view=everything").status_code == 400
    assert agent.get("/api/v1/tickets/999999").status_code == 404
    status, t = _post(agent, "/api/v1/tickets", {"subject": "s", "body": "b"})
    status, body = _patch(agent, f"/api/v1/tickets/{t['id']}", {"status": "closed"})
    assert status == 409
    assert body["error"] == "conflict"
    status, body = _patch(agent, f"/api/v1/tickets/{t['id']}", {"number": 1})
    assert status == 400
    assert body["field"] == "number"
    status, body = _post(
        agent,
        "/api/v1/tickets/bulk",
        {"ticket_ids": [t["id"], 999999], "changes": {"priority": "high"}},
    )
    assert status == 200
    assert body["updated"] == [t["id"]]
    assert body["failed"][0]["code"] == "not_found"


def test_other_staff_see_only_their_own_tickets_and_cannot_change_them(desk):
    agent, staff = _browser(desk.agent), _browser(desk.staff)
    _s, theirs = _post(
        agent,
        "/api/v1/tickets",
        {"subject": "Internal", "body": "x", "requester_user_id": desk.other.pk},
    )
    _s, mine = _post(staff, "/api/v1/tickets", {"subject": "My laptop", "body": "broken"})
    assert staff.get(f"/api/v1/tickets/{theirs['id']}").status_code == 404
    assert staff.get(f"/api/v1/tickets/{mine['id']}").status_code == 200
    status, body = _patch(staff, f"/api/v1/tickets/{mine['id']}", {"status": "solved"})
    assert status == 403
    assert body["error"] == "forbidden"
    assert Client(HTTP_HOST="acme.localhost").get("/api/v1/tickets").status_code in (401, 403)


def test_another_tenants_session_reaches_nothing(desk, globex):
    agent = _browser(desk.agent)
    _s, t = _post(agent, "/api/v1/tickets", {"subject": "acme only", "body": "x"})
    from tests.conftest import make_agent

    with schema_context("globex"):
        outsider = make_agent(name="mallory", status="offline")
    foreign = _browser(outsider, "globex")
    assert foreign.get(f"/api/v1/tickets/{t['id']}").status_code == 404


def test_the_widget_leaves_messages_and_follows_replies_with_its_token(desk):
    with schema_context("acme"):
        _visitor, token = visitor_start(channel=desk.channel, language="en")
        _other, other_token = visitor_start(channel=desk.channel, language="en")
    web = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    status, ticket = _post(
        web, "/api/v1/widget/tickets", {"token": token, "body": "Refund please", "email": "a@b.co"}
    )
    assert status == 201
    assert ticket["subject"] == "Refund please"
    assert ticket["comments"][0]["mine"] is True
    status, body = _post(
        web, "/api/v1/widget/tickets", {"token": token, "body": "x", "email": "nope"}
    )
    assert status == 400
    assert body["field"] == "email"
    status, body = _post(web, "/api/v1/widget/tickets", {"token": "forged", "body": "x"})
    assert status == 401
    assert body["error"] == "invalid_token"
    # an internal note never reaches the visitor; a public reply does
    agent = _browser(desk.agent)
    _post(agent, f"/api/v1/tickets/{ticket['id']}/comments", {"body": "VIP", "public": False})
    _post(agent, f"/api/v1/tickets/{ticket['id']}/comments", {"body": "Refunded."})
    seen = web.get("/api/v1/widget/tickets", HTTP_X_VISITOR_TOKEN=token).json()["tickets"][0]
    assert [(c["body"], c["mine"]) for c in seen["comments"]] == [
        ("Refund please", True),
        ("Refunded.", False),
    ]
    # another visitor sees nothing of it and cannot write on it
    assert (
        web.get("/api/v1/widget/tickets", HTTP_X_VISITOR_TOKEN=other_token).json()["tickets"] == []
    )
    status, _b = _post(
        web, f"/api/v1/widget/tickets/{ticket['id']}/comments", {"token": other_token, "body": "hi"}
    )
    assert status == 404
    status, again = _post(
        web, f"/api/v1/widget/tickets/{ticket['id']}/comments", {"token": token, "body": "Thanks"}
    )
    assert status == 201
    assert again["comments"][-1]["body"] == "Thanks"
    with schema_context("acme"):
        assert Ticket.objects.get(pk=ticket["id"]).requester_email == "a@b.co"


def test_files_on_comments_reach_only_who_may_read_them(desk):
    from django.core.files.uploadedfile import SimpleUploadedFile

    with schema_context("acme"):
        _visitor, token = visitor_start(channel=desk.channel, language="en")
    web = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    _s, ticket = _post(web, "/api/v1/widget/tickets", {"token": token, "body": "Broken screen"})
    # the visitor attaches a photo to a reply
    photo = _png()
    up = web.post(
        f"/api/v1/widget/tickets/{ticket['id']}/attachments",
        {
            "token": token,
            "file": SimpleUploadedFile("screen.png", photo, "image/png"),
            "kind": "image",
        },
    )
    assert up.status_code == 201
    status, body = _post(
        web,
        f"/api/v1/widget/tickets/{ticket['id']}/comments",
        {"token": token, "body": "See photo", "attachment_ids": [up.json()["id"]]},
    )
    assert status == 201
    # the agent sees it, attaches a public invoice and a private note file
    agent = _browser(desk.agent)
    detail = agent.get(f"/api/v1/tickets/{ticket['id']}").json()
    shown = detail["comments"][-1]["attachments"][0]
    assert shown["name"] == "screen.png"
    assert b"".join(agent.get(shown["url"]).streaming_content) == photo
    public = agent.post(
        f"/api/v1/tickets/{ticket['id']}/attachments",
        {"file": SimpleUploadedFile("invoice.txt", b"INVOICE 42", "text/plain")},
    ).json()
    private = agent.post(
        f"/api/v1/tickets/{ticket['id']}/attachments",
        {"file": SimpleUploadedFile("notes.txt", b"internal", "text/plain")},
    ).json()
    _post(
        agent,
        f"/api/v1/tickets/{ticket['id']}/comments",
        {"body": "Invoice", "attachment_ids": [public["id"]]},
    )
    _post(
        agent,
        f"/api/v1/tickets/{ticket['id']}/comments",
        {"body": "note", "public": False, "attachment_ids": [private["id"]]},
    )
    # a file goes on one comment only
    status, body = _post(
        agent,
        f"/api/v1/tickets/{ticket['id']}/comments",
        {"body": "again", "attachment_ids": [public["id"]]},
    )
    assert status == 400
    assert body["field"] == "attachment_ids"
    # the visitor downloads the public file with the token, never the note's
    seen = web.get("/api/v1/widget/tickets", HTTP_X_VISITOR_TOKEN=token).json()["tickets"][0]
    invoice = seen["comments"][-1]["attachments"][0]
    got = web.get(f"{invoice['url']}?token={token}")
    assert got.status_code == 200
    assert b"".join(got.streaming_content) == b"INVOICE 42"
    assert got["Content-Disposition"].startswith("attachment")
    assert (
        web.get(f"/api/v1/widget/tickets/attachments/{private['id']}?token={token}").status_code
        == 404
    )
    assert web.get(f"{invoice['url']}?token=forged").status_code == 401
    # staff who cannot see the ticket get nothing
    assert (
        _browser(desk.staff).get(f"/api/v1/tickets/attachments/{public['id']}").status_code == 404
    )


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(out, "PNG")
    return out.getvalue()
