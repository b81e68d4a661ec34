"""Per-tenant settings (issue 16): own SMTP server and sender verified by a test mail, branding
(logo, colours) in the widget, the help center and e-mails, custom domains proven by a TXT record.
Real PostgreSQL, a real local SMTP server (tests/mail.py) and a real Celery worker; DNS is faked
at the resolver interface (tests/fake_dns.py)."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import socket
from typing import Any

import pytest
from django.core import mail as django_mail
from django.db import connection
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from PIL import Image

from org import passwords
from org.models import User
from tenants import branding, domains, mail
from tenants.models import Branding, CustomDomain, Domain, MailSettings
from tests import fake_dns
from tests.conftest import PASSWORD, agent_client, make_desk, unique
from tests.servers import celery_worker_start
from tests.tenants.test_platform_admin import _platform_client
from tests.waits import fresh_window, wait_until
from weiyu.celery import app

_queues = itertools.count(1)
FAKE_DNS = override_settings(WEIYU_DNS_RESOLVER="tests.fake_dns.FakeTxtResolver")


@pytest.fixture
def clean_settings(acme, globex):
    """acme's and globex's mail settings, branding and custom domains removed after the test."""
    yield
    for tenant in (acme, globex):
        mail.mail_settings_delete(tenant=tenant)
        Branding.objects.filter(tenant=tenant).delete()
        for custom in CustomDomain.objects.filter(tenant=tenant):
            domains.custom_domain_remove(custom=custom)
    fake_dns.RECORDS.clear()


@pytest.fixture
def tenant_mail_worker(smtp):
    """A Celery worker on its own queue that may reach the local SMTP server as a tenant's
    server (WEIYU_OUTBOUND_ALLOW)."""
    port, _inbox = smtp
    queue = f"tmail{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="tmail", concurrency=1, WEIYU_SEMANTIC="off",
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{port}",
    )  # fmt: skip
    yield
    worker.stop()
    app.conf.task_default_queue = previous


def _admin(tenant: str = "acme") -> tuple[User, Client]:
    with schema_context(tenant):
        boss = User.objects.create_user(
            username=unique("boss"), password=PASSWORD, is_staff=True, is_superuser=True,
            email=f"{unique('boss')}@{tenant}.example",
        )  # fmt: skip
    return boss, agent_client(boss, tenant)


def _png(size: tuple[int, int] = (40, 20), colour: str = "#cc3300") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def _upload(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _mail_form(port: int, **extra: str) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": str(port), "security": "none", "username": "",
            "password": "", "from_name": "Acme Support", "from_address": "support@acme.example",
            **extra}  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- mail ----------------------------------------------------------------------------------


def test_a_loopback_smtp_server_is_refused_unless_the_platform_allows_it(
    acme, smtp, clean_settings
):
    port, _inbox = smtp
    _boss, client = _admin()
    # when the admin saves a server on a loopback address
    page = client.post("/admin/tenants/mailsettings/add/", _mail_form(port))
    # then the form says why and nothing is saved
    assert page.status_code == 200
    assert "loopback" in page.content.decode()
    assert not MailSettings.objects.filter(tenant=acme).exists()


def test_a_test_mail_verifies_the_settings_and_then_every_mail_uses_them(
    acme, smtp, tenant_mail_worker, clean_settings
):
    port, inbox = smtp
    boss, client = _admin()
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{port}"):
        # given saved settings: unverified, so a password reset still goes through the platform
        saved = client.post("/admin/tenants/mailsettings/add/", _mail_form(port))
        assert saved.status_code == 302
        row = MailSettings.objects.get(tenant=acme)
        assert row.verified_at is None
        passwords.password_reset_send(
            schema="acme", user_id=boss.pk, base_url="http://acme.localhost", language="en"
        )
        assert inbox.messages == []
        assert django_mail.outbox[-1].to == [boss.email]
        assert "support@acme.example" not in django_mail.outbox[-1].from_email

        # when the admin asks for a test mail
        page = client.post(
            f"/admin/tenants/mailsettings/{row.pk}/change/",
            _mail_form(port, test_to="it@acme.example"),
            follow=True,
        )
        assert "A test mail is on its way to it@acme.example" in page.content.decode()
        # then it arrives through the tenant's server, and the settings are verified
        wait_until(lambda: MailSettings.objects.get(pk=row.pk).verified_at is not None)
        recipients, test_mail = inbox.messages[-1]
        assert recipients == ["it@acme.example"]
        assert test_mail["From"] == "Acme Support <support@acme.example>"
        assert (
            "Verified"
            in client.get(f"/admin/tenants/mailsettings/{row.pk}/change/").content.decode()
        )

        # and from now on the product's e-mails go that way too
        passwords.password_reset_send(
            schema="acme", user_id=boss.pk, base_url="http://acme.localhost", language="en"
        )
        recipients, reset = inbox.messages[-1]
        assert recipients == [boss.email]
        assert reset["From"] == "Acme Support <support@acme.example>"
        assert "/account/password/reset/" in reset.get_body(("plain",)).get_content()

        # when the sender changes, the settings are unverified again (platform mail meanwhile)
        changed = client.post(
            f"/admin/tenants/mailsettings/{row.pk}/change/",
            _mail_form(port, from_address="help@acme.example"),
        )
        assert changed.status_code == 302
    assert MailSettings.objects.get(pk=row.pk).verified_at is None
    assert MailSettings.objects.get(pk=row.pk).from_address == "help@acme.example"
    sent = len(inbox.messages)
    with schema_context("acme"):
        mail.mail_send(subject="hello", body="platform again", to=["x@acme.example"])
    assert len(inbox.messages) == sent
    assert django_mail.outbox[-1].body == "platform again"


def test_a_failed_test_mail_is_reported_and_verifies_nothing(acme, clean_settings):
    port = _closed_port()
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{port}"):
        row = mail.mail_settings_save(
            tenant=acme,
            values={**_mail_form(port), "port": port, "password": "s3cret", "username": "u"},
        )
        # when the test mail cannot be delivered
        assert (
            mail.mail_settings_test(settings_id=row.pk, version=row.version, to="a@b.example")
            is False
        )
    row.refresh_from_db()
    # then the error is kept for the admin, the settings stay unverified
    assert row.verified_at is None
    assert row.tested_at is not None
    assert row.last_error
    # and the password is encrypted at rest
    with schema_context("public"), connection.cursor() as cursor:
        cursor.execute("SELECT password FROM tenants_mailsettings WHERE id = %s", [row.pk])
        assert cursor.fetchone()[0].startswith("gA")


def test_a_test_of_old_settings_does_not_verify_changed_ones(acme, smtp, clean_settings):
    port, inbox = smtp
    with override_settings(WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{port}"):
        row = mail.mail_settings_save(tenant=acme, values={**_mail_form(port), "port": port})
        old_version = row.version
        mail.mail_settings_save(
            tenant=acme, values={**_mail_form(port), "port": port, "from_address": "b@acme.example"}
        )
        assert mail.mail_settings_test(settings_id=row.pk, version=old_version, to="a@b.example")
    assert len(inbox.messages) == 1
    assert MailSettings.objects.get(pk=row.pk).verified_at is None


# --- branding -------------------------------------------------------------------------------


def test_the_admin_uploads_a_logo_and_colours_that_the_widget_help_center_and_mails_show(
    acme, clean_settings
):
    desk = make_desk(acme, agents=0)
    _boss, client = _admin()
    # a script disguised as an image, a bad colour and an oversized picture are refused
    svg = _upload(
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "l.svg"
    )
    page = client.post("/admin/tenants/branding/add/", {"primary_color": "#c30", "logo": svg})
    body = page.content.decode()
    assert page.status_code == 200
    assert "must be a PNG, JPEG or WebP image" in body
    assert "Use a hex colour like #1f6feb." in body
    page = client.post(
        "/admin/tenants/branding/add/",
        {"primary_color": "#cc3300", "logo": _upload(_png((2000, 10)), "wide.png")},
    )
    assert "at most 1024 × 1024 pixels" in page.content.decode()
    assert not Branding.objects.filter(tenant=acme).exists()

    # when a proper logo and colours are saved
    saved = client.post(
        "/admin/tenants/branding/add/",
        {"primary_color": "#CC3300", "accent_color": "#00aa55", "logo": _upload(_png(), "l.png")},
    )
    assert saved.status_code == 302
    row = Branding.objects.get(tenant=acme)
    assert (row.primary_color, row.accent_color) == ("#cc3300", "#00aa55")
    assert row.logo_path.startswith("acme/branding/")

    # then the logo is served publicly as the image it is
    anonymous = Client(HTTP_HOST="acme.localhost")
    logo = anonymous.get("/branding/logo")
    assert logo.status_code == 200
    assert logo["Content-Type"] == "image/png"
    assert logo["X-Content-Type-Options"] == "nosniff"
    assert logo.content == _png()
    assert Client(HTTP_HOST="globex.localhost").get("/branding/logo").status_code == 404
    # the widget takes the brand colour (its channel kept the default) and shows the logo
    frame = anonymous.get(f"/widget/frame/?channel={desk.channel.public_key}").content.decode()
    config = json.loads(re.search(r'id="weiyu-config"[^>]*>(.*?)</script>', frame).group(1))
    assert (config["color"], config["accent_color"]) == ("#cc3300", "#00aa55")
    assert 'id="chat-logo" src="/branding/logo?v=' in frame
    session = anonymous.post(
        "/api/v1/widget/session",
        {"channel": desk.channel.public_key},
        content_type="application/json",
    )
    assert session.json()["channel"]["color"] == "#cc3300"
    # the help center's header too
    help_page = anonymous.get("/help/").content.decode()
    assert 'id="brand-bar"' in help_page
    assert "--brand: #cc3300" in help_page
    # and e-mails get an HTML part with the colours and the logo inline
    with schema_context("acme"):
        mail.mail_send(subject="Your ticket", body="Hello <b>you</b>", to=["v@acme.example"])
    sent = django_mail.outbox[-1]
    html, kind = sent.alternatives[0]
    assert kind == "text/html"
    assert "background:#cc3300" in html
    assert 'src="cid:logo"' in html
    assert "Hello &lt;b&gt;you&lt;/b&gt;" in html
    assert any(
        getattr(a, "get", lambda _k: None)("Content-ID") == "<logo>" for a in sent.attachments
    )
    # another tenant keeps Weiyu's look
    other = Client(HTTP_HOST="globex.localhost").get("/help/").content.decode()
    assert 'id="brand-bar"' not in other
    with schema_context("globex"):
        mail.mail_send(subject="s", body="plain", to=["v@globex.example"])
    assert django_mail.outbox[-1].alternatives == []


def test_a_channel_with_its_own_colour_keeps_it():
    brand = branding.Brand(primary_color="#cc3300")
    assert branding.widget_color(channel_color="#1f6feb", brand=brand) == "#cc3300"
    assert branding.widget_color(channel_color="#123456", brand=brand) == "#123456"
    assert branding.widget_color(channel_color="#1f6feb", brand=branding.Brand()) == "#1f6feb"


# --- custom domains -------------------------------------------------------------------------


@FAKE_DNS
def test_a_custom_domain_routes_to_the_tenant_once_its_txt_record_is_verified(
    acme, globex, clean_settings
):
    host = f"{unique('support')}.acme-corp.example"
    _boss, client = _admin()
    # names under the platform's domain, and non-names, are refused
    for bad in ("globex.localhost", "localhost", "a b.example", "http://x.example/", "example"):
        page = client.post("/admin/tenants/customdomain/add/", {"host": bad})
        assert page.status_code == 200, bad
    assert not CustomDomain.objects.filter(tenant=acme).exists()

    # when the admin adds a host name
    added = client.post("/admin/tenants/customdomain/add/", {"host": host.upper()})
    assert added.status_code == 302
    custom = CustomDomain.objects.get(tenant=acme, host=host)
    # then the TXT record to create is shown, and the host does not route yet
    listing = client.get("/admin/tenants/customdomain/").content.decode()
    assert f"_weiyu-verify.{host}" in listing
    assert custom.token in listing
    assert not Domain.objects.filter(domain=host).exists()
    # and the TLS proxy is told not to get a certificate for it
    assert _tls_ask(host).status_code == 404

    # globex may claim it too, unverified
    _other_boss, other = _admin("globex")
    assert other.post("/admin/tenants/customdomain/add/", {"host": host}).status_code == 302
    globex_claim = CustomDomain.objects.get(tenant=globex, host=host)
    # and cannot see acme's claim
    assert other.get(f"/admin/tenants/customdomain/{custom.pk}/change/").status_code == 302

    # "Verify" without the record: still waiting, with the reason
    verify = {"action": "verify_selected", "_selected_action": [custom.pk]}
    page = client.post("/admin/tenants/customdomain/", verify, follow=True).content.decode()
    assert "No TXT record" in page
    assert not Domain.objects.filter(domain=host).exists()

    # with the record: verified, and the host routes to acme
    fake_dns.RECORDS[f"_weiyu-verify.{host}"] = ["unrelated", custom.token]
    page = client.post("/admin/tenants/customdomain/", verify, follow=True).content.decode()
    assert "1 domain verified." in page
    domain = Domain.objects.get(domain=host)
    assert domain.tenant_id == acme.pk
    assert domain.is_primary is False
    with override_settings(ALLOWED_HOSTS=[host, ".localhost"]):
        assert Client(HTTP_HOST=host).get("/help/").status_code == 200
    assert _tls_ask(host.upper() + ".").json() == {"allowed": True}

    # globex cannot take it now, even with a record of its own
    fake_dns.RECORDS[f"_weiyu-verify.{host}"] = [globex_claim.token]
    page = other.post(
        "/admin/tenants/customdomain/",
        {"action": "verify_selected", "_selected_action": [globex_claim.pk]},
        follow=True,
    ).content.decode()
    assert "used by another account" in page
    assert Domain.objects.get(domain=host).tenant_id == acme.pk
    # nor add it again elsewhere
    globex_claim.delete()
    page = other.post("/admin/tenants/customdomain/add/", {"host": host}, follow=True)
    assert "used by another account" in page.content.decode()

    # the platform admin sees it
    with schema_context("public"):
        platform = _platform_client()
    assert host in platform.get("/admin/tenants/customdomain/").content.decode()

    # when acme removes it, it no longer routes
    removed = client.post(f"/admin/tenants/customdomain/{custom.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    assert not Domain.objects.filter(domain=host).exists()
    assert not CustomDomain.objects.filter(pk=custom.pk).exists()
    assert _tls_ask(host).status_code == 404


def _tls_ask(host: str, ip: str = "127.0.0.1") -> Any:
    return Client(HTTP_HOST="localhost", REMOTE_ADDR=ip).get("/tls/ask", {"domain": host})


def test_the_tls_proxy_asks_about_tenants_domains_within_a_budget(acme):
    # a tenant's subdomain and the platform's own domain are served
    assert _tls_ask("acme.localhost").json() == {"allowed": True}
    assert _tls_ask("localhost").status_code == 200
    assert _tls_ask("nobody.localhost").json() == {"allowed": False}
    # a missing or malformed host is a 400 with a JSON body
    for bad in ("", "a/b", "x" * 300, "host:443"):
        answer = _tls_ask(bad)
        assert answer.status_code == 400, bad
        assert answer.json()["error"] == "invalid"
    # a client asking in a loop is held to its budget, another address is not
    ip = f"10.91.{os.getpid() % 250}.{next(_queues) % 250}"
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_TLS_ASK_PER_IP_MINUTE=3):
        assert [_tls_ask("acme.localhost", ip).status_code for _ in range(3)] == [200] * 3
        refused = _tls_ask("acme.localhost", ip)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert 0 < int(refused["Retry-After"]) <= 60
        assert _tls_ask("acme.localhost", "10.92.0.1").status_code == 200


@FAKE_DNS
def test_a_failing_dns_lookup_is_reported(acme, clean_settings):
    custom = domains.custom_domain_add(tenant=acme, host=f"{unique('d')}.acme-corp.example")
    fake_dns.RECORDS[custom.record_name] = None
    assert domains.custom_domain_verify(custom=custom) is False
    assert "DNS lookup failed" in custom.last_error
    assert custom.verified_at is None
