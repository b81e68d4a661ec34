"""A new company's first steps: its administrator lands on the getting-started checklist, makes
a first channel there, and each step is ticked by what happened in the tenant (a visitor, a
colleague, an FAQ item); the tenant's home page and the favicon."""

from __future__ import annotations

import re

from django.test import Client
from django_tenants.utils import schema_context

from kbase import services as kbase_services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from kefu.services.channels import channel_start
from kefu.services.visitors import visitor_start
from org.models import User
from tenants.services import tenant_create
from tests.conftest import PASSWORD, unique


def _new_company() -> tuple[str, str]:
    schema = unique("newco")
    tenant_create(
        name="Newco 新公司",
        schema_name=schema,
        domain=f"{schema}.localhost",
        admin_username="boss",
        admin_password=PASSWORD,
    )
    return schema, f"{schema}.localhost"


def _signed_in(host: str, username: str = "boss") -> Client:
    client = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en")
    response = client.post("/admin/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _states(html: str) -> dict[str, str]:
    return dict(re.findall(r'id="step-(\w+)" data-done="(\w+)"', html))


def test_a_new_administrator_is_walked_through_the_first_steps():
    schema, host = _new_company()
    client = _signed_in(host)

    # when the new administrator opens the back office, they land on the checklist
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/onboarding/"
    page = client.get("/admin/onboarding/").content.decode()
    assert _states(page) == {
        "channel": "false", "snippet": "false", "agents": "false", "faq": "false"
    }  # fmt: skip
    assert "0 of 4 are done" in page
    assert 'href="/admin/org/user/add/"' in page
    assert 'href="/admin/kbase/knowledgebase/add/"' in page
    # and once seen, the index shows the checklist above the apps instead
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "Get started: 0 of 4 done" in index.content.decode()

    # when they create a channel with a bad name, they are told why and nothing is made
    bad = client.post("/admin/onboarding/", {"name": "  "})
    assert bad.status_code == 400
    assert "A channel needs a name" in bad.content.decode()
    assert client.post("/admin/onboarding/", {"name": "x" * 101}).status_code == 400
    # and with a good one, the channel exists, served by a workgroup with them in it
    done = client.post("/admin/onboarding/", {"name": "Newco website"})
    assert done.status_code == 303
    with schema_context(schema):
        channel = Channel.objects.get()
        boss = User.objects.get(username="boss")
        assert channel.name == "Newco website"
        assert list(channel.workgroup.agents.values_list("username", flat=True)) == ["boss"]
        assert channel.workgroup.lead_id == boss.pk
    page = client.get("/admin/onboarding/").content.decode()
    assert _states(page)["channel"] == "true"
    # and the page shows the snippet to copy, with a page carrying it
    assert (
        f"&lt;script src=&quot;http://{host}/widget.js&quot; "
        f"data-channel=&quot;{channel.public_key}&quot; async&gt;&lt;/script&gt;"
    ) in page
    assert f'href="http://{host}/?channel={channel.public_key}"' in page
    assert 'data-copy="weiyu-snippet"' in page

    # when a visitor opens the chat, a colleague is added and an FAQ item written
    with schema_context(schema):
        visitor_start(channel=channel, language="en")
        User.objects.create_user(username="alice", password=PASSWORD, role="agent")
        kb = kbase_services.knowledge_base_save(kb=KnowledgeBase(name="FAQ", is_public=True))
        kbase_services.faq_upsert(kb=kb, question="营业时间？", answer="9:00–18:00")
    # then every step is ticked and the index no longer shows the checklist
    page = client.get("/admin/onboarding/").content.decode()
    assert set(_states(page).values()) == {"true"}
    index = _signed_in(host).get("/admin/")
    assert index.status_code == 200
    assert "Get started" not in index.content.decode()


def test_only_the_administrators_see_the_checklist():
    schema, host = _new_company()
    with schema_context(schema):
        User.objects.create_user(username="clerk", password=PASSWORD, is_staff=True, role="staff")
    clerk = _signed_in(host, "clerk")
    assert clerk.get("/admin/").status_code == 200
    assert clerk.get("/admin/onboarding/").status_code == 403
    assert clerk.post("/admin/onboarding/", {"name": "Sneaky"}).status_code == 403
    with schema_context(schema):
        assert not Channel.objects.exists()
    # and nobody signed out gets it
    anonymous = Client(HTTP_HOST=host)
    assert anonymous.get("/admin/onboarding/")["Location"].startswith("/admin/login/")


def test_a_new_company_home_page_links_its_help_center_inbox_and_back_office():
    schema, host = _new_company()
    web = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en")
    # given no channel yet: a real page with the company's name and no widget
    html = web.get("/").content.decode()
    assert "<title>Newco 新公司</title>" in html
    assert "Welcome to Newco 新公司." in html
    for link in ('href="/help/"', 'href="/inbox/"', 'href="/admin/"'):
        assert link in html
    assert "widget.js" not in html
    assert "{#" not in html
    assert web.get("/help/").status_code == 200
    chinese = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="zh-CN").get("/").content.decode()
    assert "欢迎来到 Newco 新公司。" in chinese
    assert "管理后台登录" in chinese
    # when a channel exists, the page carries its widget
    with schema_context(schema):
        channel = channel_start(name="Site", user=User.objects.get(username="boss"))
    html = web.get("/").content.decode()
    assert f'<script src="/widget.js" data-channel="{channel.public_key}" async></script>' in html
    assert 'href="/help/"' in html


def test_every_page_has_the_favicon_and_every_domain_serves_it(acme):
    for host in ("acme.localhost", "localhost"):
        icon = Client(HTTP_HOST=host).get("/favicon.ico")
        assert icon.status_code == 200
        assert icon["Content-Type"] == "image/svg+xml"
        assert icon.content.startswith(b"<svg")
    link = '<link rel="icon" href="/favicon.ico" type="image/svg+xml">'
    tenant = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    for path in ("/", "/help/", "/inbox/login/", "/admin/login/"):
        assert link in tenant.get(path).content.decode(), path
    public = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    for path in ("/", "/admin/login/"):
        assert link in public.get(path).content.decode(), path
