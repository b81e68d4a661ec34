"""Finding 7 and the rest of finding 1 of issue 12: the production profile (``WEIYU_ENV=
production``: Secure cookies, HSTS, a Content-Security-Policy) passes ``check --deploy``, and that
check refuses a demo tenant in production."""

from __future__ import annotations

import base64
import io
import os
import re
import secrets
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from tenants import checks
from tests.conftest import make_desk
from tests.servers import ROOT

CSP_MIDDLEWARE = [
    *settings.MIDDLEWARE[:3],
    "csp.middleware.CSPMiddleware",
    *[m for m in settings.MIDDLEWARE[3:] if m != "csp.middleware.CSPMiddleware"],
]


def _production(
    *args: str, database: str = "weiyu_no_such_database"
) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` in a production environment. The database does not exist, so
    the checks that read it are skipped; the settings alone are checked."""
    # the real-browser tests' conftest allows sync database calls in this process; a deployment
    # would not have that switch (and check --deploy rightly flags it)
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {
        **inherited,
        "WEIYU_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # secrets at rest need their own key in production (tenants.E002)
        "WEIYU_FIELD_KEYS": Fernet.generate_key().decode(),
        # one key signs every server's web push alerts (tenants.E003)
        "WEIYU_VAPID_PRIVATE_KEY": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "DB_POOL_TIMEOUT": "2",
        "LOG_LEVEL": "ERROR",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_production_profile_passes_check_deploy():
    done = _production("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_the_production_profile_has_secure_cookies_hsts_and_csp():
    done = _production(
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, 'csp.middleware.CSPMiddleware' in "
        "s.MIDDLEWARE, s.SECURE_SSL_REDIRECT)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "31536000", "True", "False"]


def test_production_refuses_to_start_without_a_secret_key():
    env = {**os.environ, "WEIYU_ENV": "production", "SECRET_KEY": ""}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr


def test_check_deploy_flags_a_demo_tenant_in_production(tmp_path, monkeypatch):
    from weiyu import devservices

    monkeypatch.setattr(devservices, "DATA_DIR", tmp_path)
    call_command("demo_setup", password=secrets.token_urlsafe(16), stdout=io.StringIO())
    # outside production: only the reminder to turn the profile on
    assert [m.id for m in checks.demo_tenant_in_production()] == ["tenants.W001"]
    with override_settings(PRODUCTION=True):
        found = checks.demo_tenant_in_production()
        assert [m.id for m in found] == ["tenants.E001"]
        assert "demo" in found[0].msg
        # and `check --deploy` fails on it
        with pytest.raises(SystemCheckError, match=r"tenants\.E001"):
            call_command("check", deploy=True, tags=["security"], stdout=io.StringIO())


def test_check_deploy_wants_one_vapid_key_for_every_server_in_production():
    with override_settings(PRODUCTION=False, WEIYU_VAPID_PRIVATE_KEY=""):
        assert checks.vapid_key_in_production() == []
    with override_settings(PRODUCTION=True, WEIYU_VAPID_PRIVATE_KEY=""):
        assert [m.id for m in checks.vapid_key_in_production()] == ["tenants.E003"]
    with override_settings(PRODUCTION=True, WEIYU_VAPID_PRIVATE_KEY="set"):
        assert checks.vapid_key_in_production() == []


def _client() -> Client:
    return Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


@override_settings(MIDDLEWARE=CSP_MIDDLEWARE)
def test_pages_carry_a_policy_and_only_the_widget_frame_may_be_framed_by_others(acme):
    desk = make_desk(acme, agents=1)
    frame = _client().get("/widget/frame/", {"channel": desk.channel.public_key})
    assert frame.status_code == 200
    assert "*" in _policy(frame)["frame-ancestors"]
    assert not frame.has_header("X-Frame-Options")
    for path in ("/inbox/login/", "/help/", "/admin/login/"):
        page = _client().get(path)
        assert page.status_code == 200, path
        policy = _policy(page)
        assert policy["frame-ancestors"] == ["'self'"], path
        assert policy["object-src"] == ["'none'"]
        assert "'unsafe-inline'" not in policy["script-src"]
        assert page["X-Frame-Options"] == "DENY"


@override_settings(MIDDLEWARE=CSP_MIDDLEWARE)
def test_an_inline_script_carries_the_nonce_of_its_policy(acme):
    desk = make_desk(acme, agents=1)
    page = _client().get("/", {"channel": desk.channel.public_key})
    assert page.status_code == 200
    nonces = re.findall(r'<script nonce="([^"]+)"', page.content.decode())
    assert nonces
    assert f"'nonce-{nonces[0]}'" in _policy(page)["script-src"]
    assert "onclick=" not in page.content.decode()
