"""Every page of both back offices opens: for each registered model, its list (plain, searched,
filtered by the first filter), its add form, and the change form of an existing row — in both
languages. A tenant admin with a day of real activity behind it, so lists and forms show data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse
from django_tenants.utils import schema_context

from kefu.services import messages
from org.models import User
from tenants.admin import platform_admin_site
from tests.conftest import PASSWORD, agent_client, make_desk, make_visitor, unique
from tickets.services import tickets as ticket_services


def _pages(
    site: admin.AdminSite, user: User, urlconf: str | None = None
) -> Iterator[tuple[str, str]]:
    """(label, url) of each model's list, search, add form (where ``user`` may add, asked
    after the list was seen: singletons create their row there) and first row."""
    request = RequestFactory().get("/")
    request.user = user
    for model, model_admin in site._registry.items():
        meta = model._meta
        base = f"{site.name}:{meta.app_label}_{meta.model_name}"
        changelist = reverse(f"{base}_changelist", urlconf=urlconf)
        yield f"{meta.label} list", changelist
        if model_admin.search_fields:
            yield f"{meta.label} search", changelist + "?q=a"
        if model_admin.has_add_permission(request):
            yield f"{meta.label} add", reverse(f"{base}_add", urlconf=urlconf)
        first = model_admin.get_queryset(request).order_by("pk").first()
        if first is not None:
            yield (
                f"{meta.label} change",
                reverse(f"{base}_change", args=[first.pk], urlconf=urlconf),
            )


def _activity(tenant) -> User:
    desk = make_desk(tenant, agents=1)
    with schema_context(tenant.schema_name):
        visitor, _ = make_visitor(desk)
        messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("m")
        )
        ticket_services.ticket_create(
            subject="Broken tap", body="It drips.", source="inbox", creator=desk.agents[0]
        )
        return User.objects.create_user(
            username=unique("boss"),
            password=PASSWORD,
            role="admin",
            is_staff=True,
            is_superuser=True,
        )


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_every_tenant_back_office_page_opens(acme, language):
    boss = _activity(acme)
    client = agent_client(boss, language=language)
    broken, seen = [], 0
    with schema_context("acme"):
        for label, url in _pages(admin.site, boss):
            seen += 1
            status = client.get(url).status_code
            if status != 200:
                broken.append((label, url, status))
    assert seen > 60
    assert broken == []


def test_every_platform_admin_page_opens(acme):
    boss = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    client = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    assert client.login(username=boss.username, password=PASSWORD)
    broken = []
    for label, url in _pages(platform_admin_site, boss, urlconf="weiyu.urls_public"):
        status = client.get(url).status_code
        if status != 200:
            broken.append((label, url, status))
    assert broken == []
