"""The HTTP side of a tenant: widget session API, widget loader and frame, inbox pages, and the two
admin sites (tenant back office on ``acme.localhost``, platform admin on ``localhost``)."""

from __future__ import annotations

import html
import json
import re
import uuid

import pytest
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from kefu.models import Channel, Visitor
from kefu.services import messages, visitors
from org.models import User
from tests.conftest import PASSWORD, make_desk, make_visitor
from weiyu.realtime import capture_events

HOST = "acme.localhost"
SESSION_API = "/api/v1/widget/session"


def _client(host: str = HOST) -> Client:
    """A browser on ``host`` that sees server errors as responses (as a real one would)."""
    return Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)


def _post_json(client: Client, body: object) -> tuple[int, dict]:
    response = client.post(SESSION_API, data=json.dumps(body), content_type="application/json")
    assert response["Content-Type"].startswith("application/json")
    return response.status_code, response.json()


def _config(html: str) -> dict:
    """The page's ``json_script`` configuration block."""
    match = re.search(r'<script id="weiyu-config" type="application/json">(.*?)</script>', html)
    assert match, "no weiyu-config block"
    return json.loads(match.group(1))


# --- widget session API ----------------------------------------------------------------------


def test_widget_session_creates_a_visitor_with_a_token(acme):
    # given a widget channel
    desk = make_desk(acme, agents=1)
    channel = desk.channel

    # when the widget on a page starts a session
    status, body = _post_json(
        _client(),
        {
            "channel": channel.public_key,
            "page_url": "https://shop.example/pricing",
            "referrer": "https://search.example/?q=acme",
            "language": "en-GB",
        },
    )

    # then it gets a token, its visitor and the channel's look
    assert status == 200
    visitor = body["visitor"]
    assert visitor["key"] == f"v:{visitor['id']}"
    assert visitor["name"] == f"Visitor {visitor['id'] % 10000:04d}"
    assert body["channel"] == {
        "key": channel.public_key,
        "name": channel.name,
        "title": channel.name,  # no title set: the name is shown
        "welcome_text": "Hi",
        "color": "#1f6feb",
        "mode": "agent",
    }
    assert body["robot"] is None  # a human-only channel
    assert body["ws_path"] == "/ws/visitor/"
    with schema_context("acme"):
        stored = visitors.visitor_from_token(body["token"])
        assert stored.pk == visitor["id"]
        assert (stored.page_url, stored.referrer, stored.language) == (
            "https://shop.example/pricing",
            "https://search.example/?q=acme",
            "en-GB",
        )
        assert stored.channel_id == channel.pk


def test_widget_session_resumes_the_visitor_of_a_token(acme):
    # given a visitor who chatted earlier on the channel
    desk = make_desk(acme, agents=1)
    client = _client()
    _status, first = _post_json(client, {"channel": desk.channel.public_key})
    with schema_context("acme"):
        count = Visitor.objects.filter(channel=desk.channel).count()

    # when the widget comes back on another page with the stored token
    status, again = _post_json(
        client,
        {"channel": desk.channel.public_key, "token": first["token"], "page_url": "/checkout"},
    )

    # then it is the same visitor, now seen on the new page
    assert status == 200
    assert again["visitor"] == first["visitor"]
    with schema_context("acme"):
        assert Visitor.objects.filter(channel=desk.channel).count() == count
        assert Visitor.objects.get(pk=first["visitor"]["id"]).page_url == "/checkout"
        assert visitors.visitor_from_token(again["token"]).pk == first["visitor"]["id"]


def test_widget_session_with_a_token_of_another_channel_or_garbage_gets_a_new_visitor(acme):
    # given a visitor of one channel, and another channel of the same tenant
    first_desk = make_desk(acme, agents=1)
    other_desk = make_desk(acme, agents=1)
    _visitor, token = make_visitor(first_desk)

    # when the other channel's widget is started with that token, or with garbage
    for stale in (token, "not-a-token", token[:-2] + "xx"):
        status, body = _post_json(
            _client(), {"channel": other_desk.channel.public_key, "token": stale}
        )

        # then a new visitor of that channel is created
        assert status == 200
        assert body["token"] != stale
        with schema_context("acme"):
            fresh = Visitor.objects.get(pk=body["visitor"]["id"])
            assert fresh.channel_id == other_desk.channel.pk


def test_widget_session_with_malformed_json_is_a_400_json_error(acme):
    # given a channel
    desk = make_desk(acme, agents=1)

    # when the body is not JSON
    response = _client().post(
        SESSION_API, data='{"channel": "' + desk.channel.public_key, content_type="application/json"
    )

    # then the answer is 400 in the API's JSON error shape
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) >= {"error", "detail"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[1, 2]", id="not-an-object"),
    ],
)
def test_widget_session_with_a_malformed_body_is_400_invalid(acme, body):
    # when the widget session API gets a body that is not a JSON object
    response = _client().post(SESSION_API, data=body, content_type="application/json")

    # then it answers as the protocol says
    assert (response.status_code, response.json()["error"]) == (400, "invalid")


def test_widget_session_for_an_unknown_or_inactive_channel_is_404_json(acme):
    # given a channel that was switched off
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(is_active=False)

    # when a widget starts a session with it, or with a key that never existed
    for key in (desk.channel.public_key, "no-such-key"):
        status, body = _post_json(_client(), {"channel": key})

        # then the answer is 404 not_found, naming the field
        assert status == 404
        assert body["error"] == "not_found"
        assert body["field"] == "channel"
        assert body["detail"] == "No such widget channel."


# --- widget loader and frame -------------------------------------------------------------------


def test_widget_loader_is_served_as_javascript(acme):
    response = _client().get("/widget.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "max-age=300" in response["Cache-Control"]
    assert b"data-channel" in response.content


def test_widget_frame_renders_the_channel_and_may_be_framed_by_any_site(acme):
    # given a channel with a title and a welcome text
    desk = make_desk(acme, agents=1)
    with schema_context("acme"):
        Channel.objects.filter(pk=desk.channel.pk).update(
            title="Ask Acme", welcome_text="We reply within minutes"
        )

    # when the loader opens the frame in English
    response = _client().get(
        "/widget/frame/",
        {"channel": desk.channel.public_key, "lang": "en", "page_url": "https://shop.example/"},
    )

    # then the chat UI is shown, with nothing forbidding it inside another site's page
    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    html = response.content.decode()
    assert '<html lang="en">' in html
    assert "Ask Acme" in html
    assert "We reply within minutes" in html
    config = _config(html)
    assert config["channel"] == desk.channel.public_key
    assert config["session_url"] == SESSION_API
    assert config["ws_path"] == "/ws/visitor/"
    assert config["page_url"] == "https://shop.example/"


def test_widget_frame_for_an_unknown_channel_is_not_found(acme):
    response = _client().get("/widget/frame/", {"channel": "no-such-key", "lang": "en"})

    assert response.status_code == 404


def test_demo_page_carries_the_snippet_of_the_first_active_channel(acme):
    # given acme's channels
    make_desk(acme, agents=1)
    with schema_context("acme"):
        first = Channel.objects.filter(is_active=True).order_by("id").first()

    # when the demo website is opened
    response = _client().get("/")

    # then it embeds the widget for that channel
    assert response.status_code == 200
    assert f'src="/widget.js" data-channel="{first.public_key}"' in response.content.decode()


# --- inbox -------------------------------------------------------------------------------------


def test_inbox_sends_anonymous_visitors_to_the_login_page(acme):
    response = _client().get("/inbox/")

    assert response.status_code == 302
    assert response["Location"] == "/inbox/login/?next=/inbox/"


def test_agent_logs_in_through_the_login_page_and_sees_the_inbox(acme):
    # given an agent of acme
    agent = make_desk(acme, agents=1).agents[0]
    client = _client()
    page = client.get("/inbox/login/")
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode()

    # when a wrong password is typed, then the right one
    wrong = client.post("/inbox/login/", {"username": agent.username, "password": "nope"})
    right = client.post(
        "/inbox/login/?next=/inbox/", {"username": agent.username, "password": PASSWORD}
    )

    # then the first is refused on the page, the second leads to the inbox
    assert wrong.status_code == 200
    assert 'role="alert"' in wrong.content.decode()
    assert right.status_code == 302
    assert right["Location"] == "/inbox/"
    inbox = client.get("/inbox/")
    assert inbox.status_code == 200
    html = inbox.content.decode()
    assert agent.name in html
    config = _config(html)
    assert config["ws_path"] == "/ws/agent/"
    assert config["user"] == {
        "id": agent.pk,
        "key": f"u:{agent.pk}",
        "name": agent.name,
        "is_agent": True,
        "is_admin": False,
        "language": "",
    }
    assert config["admin_url"] is None  # agents are not staff


def test_agent_of_one_tenant_cannot_log_in_on_another(acme):
    # given an agent of acme
    agent = make_desk(acme, agents=1).agents[0]

    # when the agent signs in on globex's host
    client = _client("globex.localhost")
    response = client.post("/inbox/login/", {"username": agent.username, "password": PASSWORD})

    # then globex does not know the agent
    assert response.status_code == 200
    assert client.get("/inbox/").status_code == 302


# --- tenant back office ------------------------------------------------------------------------


def _admin_client(host: str, username: str) -> Client:
    client = _client(host)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": PASSWORD}
    )
    assert response.status_code == 302, f"{username} could not sign in on {host}"
    return client


def test_tenant_admin_lists_the_customer_service_records(acme):
    # given a chat that took place in acme
    desk = make_desk(acme, agents=1)
    visitor, _ = make_visitor(desk)
    with schema_context("acme"), capture_events():
        message, _ = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content="Where is my parcel?",
            client_msg_id="adm-1",
        )
        messages.agent_message_send(
            user=desk.agents[0],
            conversation_id=message.conversation_id,
            content="On its way!",
            client_msg_id="adm-2",
        )
    client = _admin_client(HOST, "bob")

    # when the tenant administrator browses the back office
    pages = {
        path: client.get(path)
        for path in (
            "/admin/",
            "/admin/kefu/workgroup/",
            "/admin/kefu/channel/",
            "/admin/kefu/visitor/",
            "/admin/kefu/session/",
            "/admin/kefu/agentstate/",
            "/admin/im/conversation/",
            "/admin/im/message/",
            "/admin/org/user/",
            f"/admin/im/conversation/{message.conversation_id}/change/",
            f"/admin/kefu/channel/{desk.channel.pk}/change/",
        )
    }

    # then every page opens and shows this tenant's records
    assert {path: r.status_code for path, r in pages.items()} == dict.fromkeys(pages, 200)
    assert desk.workgroup.name in pages["/admin/kefu/workgroup/"].content.decode()
    assert desk.channel.name in pages["/admin/kefu/channel/"].content.decode()
    assert visitor.name in pages["/admin/kefu/visitor/"].content.decode()
    assert visitor.name in pages["/admin/kefu/session/"].content.decode()
    conversation = pages[f"/admin/im/conversation/{message.conversation_id}/change/"]
    assert "Where is my parcel?" in conversation.content.decode()
    assert "On its way!" in conversation.content.decode()
    channel_page = pages[f"/admin/kefu/channel/{desk.channel.pk}/change/"].content.decode()
    key = desk.channel.public_key
    # the embed snippet keeps the scheme and port the back office was reached with
    snippet = f'<script src="http://acme.localhost/widget.js" data-channel="{key}" async></script>'
    assert html.escape(snippet) in channel_page
    assert f'href="http://acme.localhost/?channel={key}"' in channel_page
    # and the platform's tables are not part of it
    assert client.get("/admin/tenants/tenant/").status_code == 404


def test_platform_admin_lists_tenants_and_domains_only(acme):
    # given a platform administrator (a user of the public schema)
    username = f"root_{uuid.uuid4().hex[:6]}"
    User.objects.create_superuser(username=username, password=PASSWORD, email="")
    client = _admin_client("localhost", username)

    # when they browse the platform admin
    tenants = client.get("/admin/tenants/tenant/")
    domains = client.get("/admin/tenants/domain/")

    # then tenants and domains are listed
    assert tenants.status_code == 200
    assert "acme" in tenants.content.decode()
    assert "globex" in tenants.content.decode()
    assert domains.status_code == 200
    assert "acme.localhost" in domains.content.decode()
    # and the tenants' customer-service tables are not there
    assert client.get("/admin/kefu/workgroup/").status_code == 404
    assert client.get("/admin/im/conversation/").status_code == 404
    # and a tenant administrator is not a platform administrator
    response = _client("localhost").post(
        "/admin/login/?next=/admin/", {"username": "bob", "password": PASSWORD}
    )
    assert response.status_code == 200  # the login form again, with an error


def test_embed_snippet_keeps_port_or_follows_the_public_url_setting(acme):
    # given a channel and its tenant admin
    desk = make_desk(acme, agents=1)
    url = f"/admin/kefu/channel/{desk.channel.pk}/change/"
    key = desk.channel.public_key

    def snippet_on(page: str) -> str:
        match = re.search(r'<code id="weiyu-snippet">(.*?)</code>', page)
        assert match, "no snippet on the page"
        return html.unescape(match.group(1))

    # when the back office is opened on a non-default port, the snippet keeps it
    client = _admin_client("acme.localhost:8443", "bob")
    page = client.get(url).content.decode()
    assert snippet_on(page) == (
        f'<script src="http://acme.localhost:8443/widget.js" data-channel="{key}" async></script>'
    )
    assert 'data-copy="weiyu-snippet"' in page  # the copy button
    # and with WEIYU_PUBLIC_URL the configured address wins, {domain} being the tenant's domain
    with override_settings(WEIYU_PUBLIC_URL="https://{domain}:9443"):
        page = client.get(url).content.decode()
    domain = acme.get_primary_domain().domain
    assert snippet_on(page) == (
        f'<script src="https://{domain}:9443/widget.js" data-channel="{key}" async></script>'
    )
    assert f'href="https://{domain}:9443/?channel={key}"' in page
