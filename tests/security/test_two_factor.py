"""Two-factor sign-in (TOTP and recovery codes, django-otp), the tenant's rule of who must use
it, and "log out everywhere" (issue 12; docs/security.md, "Two-factor authentication")."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator

import pytest
from auditlog.models import LogEntry
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client
from django_otp.oath import TOTP
from django_tenants.utils import schema_context

from org import twofactor
from org.models import AuditEntry, SealedTOTPDevice, SecuritySettings, User
from tests.conftest import PASSWORD, agent_client, make_agent, unique
from tests.waits import WAIT_S
from tests.ws import connect, receive_until

_addresses = itertools.count(10)

PATHS = [
    pytest.param("acme", "acme.localhost", "/inbox/login/", "/inbox/", id="inbox"),
    pytest.param("acme", "acme.localhost", "/admin/login/", "/admin/", id="tenant-admin"),
    pytest.param("public", "localhost", "/admin/login/", "/admin/", id="platform-admin"),
]


def _address() -> str:
    """A client address of its own for each client: lock-outs by address do not spill over."""
    n = next(_addresses)
    return f"198.19.{n // 250}.{n % 250 + 1}"


def _client(host: str = "acme.localhost") -> Client:
    return Client(HTTP_HOST=host, REMOTE_ADDR=_address(), HTTP_ACCEPT_LANGUAGE="en")


def _admin(schema: str) -> User:
    with schema_context(schema):
        return User.objects.create_user(
            username=unique("boss"),
            password=PASSWORD,
            is_staff=True,
            is_superuser=True,
            role="admin",
        )


def _agent() -> User:
    with schema_context("acme"):
        return make_agent()


def _code(schema: str, user: User, steps: int = 0) -> str:
    """The code the user's authenticator shows ``steps`` 30-second steps from now (a code is
    accepted once: a later sign-in in the same step uses the next one)."""
    with schema_context(schema):
        device = SealedTOTPDevice.objects.filter(user=user).order_by("-pk").first()
        key = device.bin_key
    totp = TOTP(key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps * device.step
    return f"{totp.token():06d}"


def _enrol(schema: str, host: str, user: User) -> list[str]:
    """Turn two-factor sign-in on from the security page, as the user; the recovery codes."""
    client = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en")
    with schema_context(schema):
        client.force_login(user)
    assert client.get("/account/security/").status_code == 200
    page = client.post("/account/security/", {"code": _code(schema, user)})
    assert page.status_code == 200
    return re.findall(r"<li><code>([a-z0-9]+)</code></li>", page.content.decode())


@pytest.fixture
def rule(acme) -> Iterator[Callable[[str], None]]:
    """Set acme's two-factor rule for the test; back to nobody afterwards."""

    def set_rule(value: str) -> None:
        with schema_context("acme"):
            row = SecuritySettings.current()
            row.two_factor_required = value
            twofactor.settings_save(row)

    yield set_rule
    set_rule(SecuritySettings.TwoFactorRequired.NOBODY)


def test_enrolment_shows_a_qr_code_and_the_secret_then_ten_recovery_codes_once(acme):
    # given an agent on their security page
    user = _agent()
    client = agent_client(user)
    page = client.get("/account/security/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in body
    assert 'id="totp-secret"' in body
    assert page["Cache-Control"].startswith("max-age=0")
    # when they confirm with a wrong code, then it is refused and nothing is on
    wrong = client.post("/account/security/", {"code": "000000"})
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.content.decode()
    with schema_context("acme"):
        assert not twofactor.has_device(user)
    # when they confirm with the code their app shows
    done = client.post("/account/security/", {"code": _code("acme", user)})
    # then two factors are on and ten different recovery codes are shown
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    assert done.status_code == 200
    assert "Two-factor sign-in is on." in done.content.decode()
    assert len(set(codes)) == 10
    # and only once: the page later says how many are left, not what they are
    again = client.get("/account/security/").content.decode()
    assert "10 recovery codes left." in again
    assert codes[0] not in again
    assert "<svg" not in again


@pytest.mark.parametrize(("schema", "host", "path", "home"), PATHS)
def test_a_user_with_two_factors_signs_in_with_the_password_then_the_code(
    acme, schema, host, path, home
):
    # given an administrator who turned two factors on
    user = _admin(schema)
    _enrol(schema, host, user)
    client = _client(host)
    # when they give the right password
    step = client.post(path, {"username": user.username, "password": PASSWORD})
    # then they are asked for the code, and not signed in yet
    assert step.status_code == 302
    assert step["Location"] == f"{path}code/"
    assert "_auth_user_id" not in client.session
    form = client.get(step["Location"])
    assert "Enter your code" in form.content.decode()
    assert client.get(home).status_code == 302
    # when they enter the code of their app
    done = client.post(step["Location"], {"code": _code(schema, user, steps=1)})
    # then they are signed in and land where they were going
    assert done.status_code == 302
    assert done["Location"] == home
    assert client.get(home).status_code == 200


def test_a_user_without_two_factors_signs_in_with_the_password_alone(acme):
    user = _agent()
    client = _client()
    signed = client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert signed.status_code == 302
    assert signed["Location"] == "/inbox/"
    assert client.get("/inbox/").status_code == 200


def test_the_code_step_without_a_password_goes_back_to_the_sign_in_page(acme):
    client = _client()
    assert client.post("/inbox/login/code/", {"code": "123456"})["Location"] == "/inbox/login/"


def test_wrong_codes_are_refused_and_counted_as_failed_sign_ins(acme):
    # given an agent with two factors who gave the right password
    user = _agent()
    _enrol("acme", "acme.localhost", user)
    client = _client()
    client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    # when wrong codes are tried up to the limit, each is refused
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = client.post("/inbox/login/code/", {"code": "000000"})
        assert wrong.status_code == 200
        assert "That code is not right." in wrong.content.decode()
        assert "_auth_user_id" not in client.session
    # and the last one locks the account like wrong passwords do
    locked = client.post("/inbox/login/code/", {"code": "000000"})
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    # then neither the password again nor the right code gets in, from another address too
    other = _client()
    assert (
        other.post("/inbox/login/", {"username": user.username, "password": PASSWORD}).status_code
        == 429
    )
    assert "_auth_user_id" not in other.session


def test_the_password_again_does_not_clear_the_wrong_codes(acme):
    # given an agent with two factors, and a client that got all but one code wrong
    user = _agent()
    _enrol("acme", "acme.localhost", user)
    client = _client()
    client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/inbox/login/code/", {"code": "000000"})
    # when it starts over with the password and guesses once more
    client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    # then the account is locked
    assert client.post("/inbox/login/code/", {"code": "000000"}).status_code == 429


def test_a_recovery_code_signs_in_once(acme):
    # given an agent with two factors and their recovery codes
    user = _agent()
    codes = _enrol("acme", "acme.localhost", user)
    first = _client()
    first.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    # when they sign in with a recovery code (as printed, upper case and with a space is fine)
    spaced = f"{codes[0][:4]} {codes[0][4:]}".upper()
    assert first.post("/inbox/login/code/", {"code": spaced})["Location"] == "/inbox/"
    assert first.get("/inbox/").status_code == 200
    # then that code does not work a second time
    second = _client()
    second.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    reused = second.post("/inbox/login/code/", {"code": codes[0]})
    assert reused.status_code == 200
    assert "That code is not right." in reused.content.decode()
    assert "_auth_user_id" not in second.session
    # and the security page counts it gone
    assert "9 recovery codes left." in first.get("/account/security/").content.decode()


@pytest.mark.asyncio
async def test_when_everyone_must_use_two_factors_a_user_without_goes_to_enrolment(acme, rule):
    # given a tenant that requires two factors of everyone, and an agent without
    await database_sync_to_async(rule)(SecuritySettings.TwoFactorRequired.EVERYONE)
    user = await database_sync_to_async(_agent)()
    client = _client()
    # when they sign in with their password
    signed = await database_sync_to_async(client.post)(
        "/inbox/login/", {"username": user.username, "password": PASSWORD}, follow=True
    )
    # then they land on enrolment, told why
    assert signed.redirect_chain[-1][0] == "/account/security/"
    assert "Your organisation requires two-factor sign-in." in signed.content.decode()
    # and the inbox, the API and the socket are closed to them
    get = database_sync_to_async(client.get)
    assert (await get("/inbox/"))["Location"] == "/account/security/"
    api = await get("/api/v1/org/directory")
    assert api.status_code == 403
    assert api.json()["error"] == "two_factor_required"
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws, first = await connect("/ws/agent/", "acme.localhost", cookie=cookie.encode())
    assert first["type"] == "error"
    assert first["code"] == "two_factor_required"
    assert (await ws.receive_output(timeout=WAIT_S)) == {"type": "websocket.close", "code": 4401}
    # when they turn two factors on, then everything opens
    code = await database_sync_to_async(_code)("acme", user)
    await database_sync_to_async(client.post)("/account/security/", {"code": code})
    assert (await get("/inbox/")).status_code == 200
    assert (await get("/api/v1/org/directory")).status_code == 200
    ws, hello = await connect("/ws/agent/", "acme.localhost", cookie=cookie.encode())
    assert hello["type"] == "hello"
    await ws.disconnect()


def test_admins_only_leaves_agents_alone_and_signs_out_unverified_admin_sessions(acme, rule):
    # given an agent and an admin with two factors whose older session gave no code
    agent = _agent()
    boss = _admin("acme")
    _enrol("acme", "acme.localhost", boss)
    old_session = agent_client(boss)
    # when the tenant requires two factors of administrators
    rule(SecuritySettings.TwoFactorRequired.ADMINS)
    # then the agent is unaffected
    assert agent_client(agent).get("/inbox/").status_code == 200
    # and the admin's old session is signed out, to sign in again with the code
    assert old_session.get("/admin/")["Location"] == "/admin/login/"
    assert "_auth_user_id" not in old_session.session


@pytest.mark.asyncio
async def test_log_out_everywhere_ends_the_other_sessions_and_closes_their_sockets(acme):
    # given an agent signed in on two computers, each with the inbox open
    user = await database_sync_to_async(_agent)()
    here = await database_sync_to_async(agent_client)(user)
    there = await database_sync_to_async(agent_client)(user)
    here_ws, _h = await connect("/ws/agent/", "acme.localhost", cookie=_cookie_of(here).encode())
    there_ws, _t = await connect("/ws/agent/", "acme.localhost", cookie=_cookie_of(there).encode())
    # when they log out everywhere from the first
    done = await database_sync_to_async(here.post)("/account/security/sessions/end/", follow=True)
    assert "You are signed out everywhere else." in done.content.decode()
    # then the other computer's inbox is told and its socket closed
    await receive_until(there_ws, "session.ended")
    assert (await there_ws.receive_output(timeout=WAIT_S)) == {
        "type": "websocket.close",
        "code": 4401,
    }
    # and its session is over: the API refuses it and a new socket too
    assert (await database_sync_to_async(there.get)("/api/v1/org/directory")).status_code == 403
    again, first = await connect("/ws/agent/", "acme.localhost", cookie=_cookie_of(there).encode())
    assert first["type"] == "error"
    await again.disconnect()
    # while this computer stays signed in, socket and all
    assert (await database_sync_to_async(here.get)("/inbox/")).status_code == 200
    await here_ws.send_json_to({"type": "ping", "ref": "p"})
    assert (await receive_until(here_ws, "pong"))["ref"] == "p"
    await here_ws.disconnect()


def _cookie_of(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_the_code_step_speaks_the_users_language(acme):
    user = _agent()
    _enrol("acme", "acme.localhost", user)
    client = Client(
        HTTP_HOST="acme.localhost", REMOTE_ADDR=_address(), HTTP_ACCEPT_LANGUAGE="zh-CN"
    )
    client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert "请输入验证码" in client.get("/inbox/login/code/").content.decode()
    wrong = client.post("/inbox/login/code/", {"code": "000000"})
    assert "验证码不正确。" in wrong.content.decode()


def test_an_admin_removes_a_lost_authenticator_without_seeing_its_key(acme):
    # given an agent with two factors, and an administrator in the back office
    user = _agent()
    _enrol("acme", "acme.localhost", user)
    with schema_context("acme"):
        device = SealedTOTPDevice.objects.get(user=user)
        key = device.bin_key.hex()
    admin = _admin("acme")
    boss = agent_client(admin)
    # then the device's page does not show its key, nor its QR code
    page = boss.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert page.status_code == 200
    assert key not in page.content.decode()
    assert boss.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/").status_code == 403
    # when the administrator deletes it (a lost phone)
    boss.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    # then the agent signs in with the password alone
    client = _client()
    signed = client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert signed["Location"] == "/inbox/"
    # and the audit log says who turned it on, and who removed the authenticator
    with schema_context("acme"):
        events = [
            (e.actor_id, e.additional_data and e.additional_data.get("event"), e.action)
            for e in AuditEntry.objects.filter(
                content_type__model__in=("user", "totpdevice"),
                object_pk__in=[str(user.pk), str(device.pk)],
            ).order_by("timestamp", "pk")
        ]
    assert any(e[:2] == (user.pk, "two_factor_on") for e in events)
    assert any(e[0] == admin.pk and e[2] == LogEntry.Action.DELETE for e in events)


def test_the_back_office_sets_who_must_use_two_factors(acme, rule):
    # given a tenant administrator (with two factors: the rule will cover them too)
    boss = _admin("acme")
    _enrol("acme", "acme.localhost", boss)
    client = _client()
    client.post("/admin/login/", {"username": boss.username, "password": PASSWORD})
    client.post("/admin/login/code/", {"code": _code("acme", boss, steps=1)})
    # when they require two factors of everyone in the back office
    with schema_context("acme"):
        row = SecuritySettings.current()
    url = f"/admin/org/securitysettings/{row.pk}/change/"
    assert client.get(url).status_code == 200
    saved = client.post(
        url,
        {
            "two_factor_required": "everyone",
            "password_min_length": 8,
            "password_character_classes": 1,
        },
    )
    assert saved.status_code == 302
    # then an agent without two factors is sent to enrolment at once
    assert agent_client(_agent()).get("/inbox/")["Location"] == "/account/security/"


def test_the_admin_sign_in_form_goes_where_its_next_field_says(acme):
    # as the back office's form posts it: the password with the hidden "next" field
    boss = _admin("acme")
    client = _client()
    form = client.get("/admin/login/").content.decode()
    assert 'name="next" value="/admin/"' in form
    signed = client.post(
        "/admin/login/", {"username": boss.username, "password": PASSWORD, "next": "/admin/org/"}
    )
    assert signed["Location"] == "/admin/org/"
    assert client.get("/admin/org/").status_code == 200


def test_the_back_office_links_to_the_security_page(acme):
    page = agent_client(_admin("acme")).get("/admin/").content.decode()
    assert 'href="/account/security/"' in page
