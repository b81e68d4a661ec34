"""The account's list of signed-in sessions (docs/security.md, "Two-factor authentication and
sessions"): each with its browser and address, each can be ended, and its inbox closes."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client
from django_tenants.utils import schema_context

from org import sessions
from org.models import UserSession
from tests.conftest import PASSWORD, make_agent
from tests.waits import WAIT_S
from tests.ws import connect, receive_until

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def _agent():
    with schema_context("acme"):
        return make_agent(inbox=False)


def _signed_in(user, user_agent: str) -> Client:
    client = Client(
        HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en", HTTP_USER_AGENT=user_agent
    )
    answer = client.post("/inbox/login/", {"username": user.username, "password": PASSWORD})
    assert answer.status_code == 302, answer.content.decode()[:500]
    return client


def _cookie(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _session_ids(user) -> list[int]:
    with schema_context("acme"):
        return list(UserSession.objects.filter(user=user).values_list("pk", flat=True))


def test_the_security_page_lists_each_signed_in_browser(acme):
    user = _agent()
    laptop = _signed_in(user, FIREFOX)
    _phone = _signed_in(user, SAFARI)
    page = laptop.get("/account/security/").content.decode()
    assert "Firefox 133 on Linux" in page
    assert "Mobile Safari 17 on iOS 17" in page
    # the laptop's own session is marked and first
    assert page.index("This device") < page.index("Mobile Safari")
    assert page.count('class="btn btn-small session-end"') == 1


@pytest.mark.asyncio
async def test_ending_one_session_signs_it_out_and_closes_its_inbox_only(acme):
    user = await database_sync_to_async(_agent)()
    laptop = await database_sync_to_async(_signed_in)(user, FIREFOX)
    phone = await database_sync_to_async(_signed_in)(user, SAFARI)
    tablet = await database_sync_to_async(_signed_in)(user, SAFARI)
    phone_ws, _p = await connect("/ws/agent/", "acme.localhost", cookie=_cookie(phone).encode())
    tablet_ws, _t = await connect("/ws/agent/", "acme.localhost", cookie=_cookie(tablet).encode())
    phone_key = phone.cookies[settings.SESSION_COOKIE_NAME].value

    def phone_row() -> int:
        with schema_context("acme"):
            return UserSession.objects.get(session_key=phone_key).pk

    row = await database_sync_to_async(phone_row)()
    # when the laptop ends the phone's session
    done = await database_sync_to_async(laptop.post)(
        f"/account/security/sessions/{row}/end/", follow=True
    )
    assert "That session has ended." in done.content.decode()
    # then the phone's inbox is told and its socket closed
    await receive_until(phone_ws, "session.ended")
    assert (await phone_ws.receive_output(timeout=WAIT_S)) == {
        "type": "websocket.close",
        "code": 4401,
    }
    # and the phone is signed out
    assert (await database_sync_to_async(phone.get)("/inbox/"))["Location"].startswith(
        "/inbox/login/"
    )
    # while the tablet (another session of the same user) keeps its socket and its session
    await tablet_ws.send_json_to({"type": "ping", "ref": "t"})
    assert (await receive_until(tablet_ws, "pong"))["ref"] == "t"
    assert (await database_sync_to_async(tablet.get)("/inbox/")).status_code == 200
    await tablet_ws.disconnect()
    assert (await database_sync_to_async(laptop.get)("/inbox/")).status_code == 200


def test_nobody_ends_another_users_session_or_their_own_current_one(acme):
    owner, stranger = _agent(), _agent()
    owner_client = _signed_in(owner, FIREFOX)
    stranger_client = _signed_in(stranger, FIREFOX)
    (row,) = _session_ids(owner)
    assert stranger_client.post(f"/account/security/sessions/{row}/end/").status_code == 404
    assert owner_client.post(f"/account/security/sessions/{row}/end/").status_code == 400
    assert owner_client.get("/inbox/").status_code == 200
    assert _session_ids(owner) == [row]


def test_sign_out_and_log_out_everywhere_forget_the_sessions(acme):
    user = _agent()
    first = _signed_in(user, FIREFOX)
    _signed_in(user, SAFARI)
    third = _signed_in(user, SAFARI)
    assert len(_session_ids(user)) == 3
    third.post("/inbox/logout/")
    assert len(_session_ids(user)) == 2
    first.post("/account/security/sessions/end/")
    page = first.get("/account/security/").content.decode()
    assert len(_session_ids(user)) == 1
    assert "Mobile Safari" not in page


def test_last_active_is_refreshed_at_most_every_five_minutes(acme):
    user = _agent()
    client = _signed_in(user, FIREFOX)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with schema_context("acme"):
        assert sessions.touch(key, now=1_000_000.0) is True
        assert sessions.touch(key, now=1_000_000.0 + sessions.TOUCH_S - 1) is False
        assert sessions.touch(key, now=1_000_000.0 + sessions.TOUCH_S + 1) is True


@pytest.mark.asyncio
async def test_after_log_out_everywhere_ending_that_session_elsewhere_closes_its_inbox(acme):
    user = await database_sync_to_async(_agent)()
    laptop = await database_sync_to_async(_signed_in)(user, FIREFOX)
    laptop_ws, _l = await connect("/ws/agent/", "acme.localhost", cookie=_cookie(laptop).encode())
    # the laptop logs out everywhere else: its own session key changes, its socket stays
    await database_sync_to_async(laptop.post)("/account/security/sessions/end/")
    await laptop_ws.send_json_to({"type": "ping", "ref": "still"})
    assert (await receive_until(laptop_ws, "pong"))["ref"] == "still"
    laptop_key = laptop.cookies[settings.SESSION_COOKIE_NAME].value

    def laptop_row() -> int:
        with schema_context("acme"):
            return UserSession.objects.get(session_key=laptop_key).pk

    row = await database_sync_to_async(laptop_row)()
    # when a phone signed in later ends the laptop's session
    phone = await database_sync_to_async(_signed_in)(user, SAFARI)
    done = await database_sync_to_async(phone.post)(
        f"/account/security/sessions/{row}/end/", follow=True
    )
    assert "That session has ended." in done.content.decode()
    # then the laptop's socket, opened before its key changed, is told and closed too
    await receive_until(laptop_ws, "session.ended")
    assert (await laptop_ws.receive_output(timeout=WAIT_S)) == {
        "type": "websocket.close",
        "code": 4401,
    }
