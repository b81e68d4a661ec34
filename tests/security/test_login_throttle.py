"""Finding 2 of the security review (issue 12): 30 wrong passwords were all answered 200 and the
right one then worked, and 32 parallel wrong-password sign-ins emptied the database pool so other
requests failed with HTTP 500. Every sign-in path now locks an account and an address after
``AXES_FAILURE_LIMIT`` failures (django-axes, counted in the schema where the sign-in happens),
and no database connection is held while a password is hashed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.handlers.asgi import ASGIHandler
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from websockets.sync.client import connect as ws_connect

from im.services import groups
from org.models import User
from org.signin_gate import SignInGate
from tests.conftest import PASSWORD, make_agent, session_cookie, unique
from tests.servers import daphne_start
from tests.waits import WAIT_S, fresh_window, wait_until, wait_until_async
from weiyu import ratelimit
from weiyu.asgi import application
from weiyu.asgi_tenancy import resolve_tenant

_addresses = itertools.count(10)

PATHS = [
    pytest.param("acme", "acme.localhost", "/inbox/login/", id="inbox"),
    pytest.param("acme", "acme.localhost", "/admin/login/", id="tenant-admin"),
    pytest.param("public", "localhost", "/admin/login/", id="platform-admin"),
]


def _address() -> str:
    """A client address of its own for each test: lock-outs by address do not spill over."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


def _staff(schema: str) -> User:
    with schema_context(schema):
        name = unique("locked")
        return User.objects.create_user(
            username=name, password=PASSWORD, is_staff=True, is_superuser=True, role="admin"
        )


def _agent() -> User:
    with schema_context("acme"):
        return make_agent()


def _sign_in(client: Client, path: str, username: str, password: str, **extra: str):
    return client.post(path, {"username": username, "password": password}, **extra)


@pytest.mark.parametrize(("schema", "host", "path"), PATHS)
def test_an_account_is_locked_after_the_failure_limit_on_every_sign_in_path(
    acme, schema, host, path
):
    # given an account and a client that guessed wrong up to the limit
    user = _staff(schema)
    client = Client(HTTP_HOST=host, REMOTE_ADDR=_address(), HTTP_ACCEPT_LANGUAGE="en")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, path, user.username, "wrong").status_code == 200
    # when the last allowed guess fails
    locked = _sign_in(client, path, user.username, "wrong")
    # then the account is locked: told so, with when to come back
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    # and even the right password does not sign in, from another address too
    other = Client(HTTP_HOST=host, REMOTE_ADDR=_address(), HTTP_ACCEPT_LANGUAGE="en")
    for c in (client, other):
        right = _sign_in(c, path, user.username, PASSWORD)
        assert right.status_code == 429
        assert "_auth_user_id" not in c.session


def test_an_address_is_locked_whatever_usernames_it_tries(acme):
    user = _agent()
    ip = _address()
    client = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE="en")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "/inbox/login/", unique("nobody"), "guess")
    # the address is locked for a real account and its right password
    assert _sign_in(client, "/inbox/login/", user.username, PASSWORD).status_code == 429
    # while the account itself still signs in from elsewhere
    elsewhere = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
    assert _sign_in(elsewhere, "/inbox/login/", user.username, PASSWORD).status_code == 302


def test_a_lock_out_in_one_tenant_leaves_the_same_username_in_another_alone(acme, globex):
    # both tenants have an admin named bob (tests/conftest.py)
    attacker = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(attacker, "/admin/login/", "bob", "wrong")
    assert _sign_in(attacker, "/admin/login/", "bob", PASSWORD).status_code == 429
    globex_bob = Client(HTTP_HOST="globex.localhost", REMOTE_ADDR=_address())
    assert _sign_in(globex_bob, "/admin/login/", "bob", PASSWORD).status_code == 302
    # and acme's bob is let in again once an operator clears the lock-out
    from axes.utils import reset

    with schema_context("acme"):
        reset(username="bob")
    again = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
    assert _sign_in(again, "/admin/login/", "bob", PASSWORD).status_code == 302


def test_the_lock_out_speaks_the_users_language_and_json_to_scripts(acme):
    user = _agent()
    client = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "/inbox/login/", user.username, "wrong")
    chinese = _sign_in(
        client, "/inbox/login/", user.username, PASSWORD, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert chinese.status_code == 429
    assert "登录失败次数过多" in chinese.content.decode()
    script = _sign_in(
        client,
        "/inbox/login/",
        user.username,
        PASSWORD,
        HTTP_ACCEPT="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert script.status_code == 429
    body = script.json()
    assert body["error"] == "locked_out"
    assert body["retry_after"] == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "Too many failed sign-in attempts" in body["detail"]


def test_parallel_wrong_password_sign_ins_do_not_fail_other_requests(acme):
    """A live server with a pool of 4 connections and the real PBKDF2 hasher; 12 clients send
    wrong passwords at once while an agent uses the API. Throttling is off in this server: the
    flood stands for many addresses and usernames (a botnet), which no lock-out stops, so what
    is tested is that hashing holds no connection."""
    pool = 4
    flooders, rounds = 3 * pool, 3
    agent = _agent()
    cookie = session_cookie(acme, agent).decode()
    server = daphne_start(
        name="login-flood",
        DB_POOL_MAX=str(pool),
        DB_POOL_TIMEOUT="3",
        WEIYU_FAST_PASSWORD_HASHER="0",
        WEIYU_LOGIN_THROTTLE="0",
    )
    login_url = server.url("127.0.0.1", "/inbox/login/")
    api_url = server.url("127.0.0.1", "/api/v1/kefu/agents")
    host = {"Host": "acme.localhost"}
    errors: list[BaseException] = []
    flood_statuses: list[int] = []
    other_statuses: list[int] = []
    start = threading.Barrier(flooders + 1, timeout=WAIT_S * 4)
    done = threading.Event()

    def flood() -> None:
        try:
            _flood()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            start.abort()

    def _flood() -> None:
        with requests.Session() as web:
            web.headers.update(host)
            page = web.get(login_url, timeout=WAIT_S * 4)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            start.wait()
            for _ in range(rounds):
                response = web.post(
                    login_url,
                    data={
                        "csrfmiddlewaretoken": token,
                        "username": unique("nobody"),
                        "password": "wrong",
                    },
                    headers={"Referer": "http://acme.localhost/inbox/login/"},
                    timeout=WAIT_S * 4,
                )
                flood_statuses.append(response.status_code)

    def use_the_api() -> None:
        try:
            start.wait()
            with requests.Session() as web:
                while not done.is_set():
                    response = web.get(
                        api_url, headers={**host, "Cookie": cookie}, timeout=WAIT_S * 4
                    )
                    other_statuses.append(response.status_code)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    try:
        threads = [threading.Thread(target=flood) for _ in range(flooders)]
        user = threading.Thread(target=use_the_api)
        for t in [*threads, user]:
            t.start()
        for t in threads:
            t.join(timeout=WAIT_S * 10)
        done.set()
        user.join(timeout=WAIT_S * 4)
    finally:
        server.stop()
    assert errors == []
    # every wrong password got the sign-in form again, and every other request its answer
    assert flood_statuses == [200] * (flooders * rounds)
    assert other_statuses
    assert set(other_statuses) == {200}, other_statuses


def test_a_botnet_of_addresses_is_held_to_the_tenants_sign_in_budget(acme, globex):
    # given a tenant whose sign-ins are limited to 4 a minute over all addresses (the autouse
    # fixture below empties the counts other tests made this minute)
    user = _agent()
    budget = {**settings.WEIYU_TENANT_LIMITS, "sign_ins_per_minute": 4}
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_TENANT_LIMITS=budget):
        answers = [
            _sign_in(
                Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address()),
                "/inbox/login/",
                unique("stuffed"),
                "guess",
            ).status_code
            for _ in range(4)
        ]
        # when a fifth address tries, even the right password of a real account
        refused = _sign_in(
            Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address(), HTTP_ACCEPT_LANGUAGE="en"),
            "/inbox/login/",
            user.username,
            PASSWORD,
        )
        # then it is refused before any password check, with the wait
        assert answers == [200, 200, 200, 200]
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 60
        assert "Too many sign-in attempts right now" in refused.content.decode()
        # and another tenant's people sign in as usual
        globex_bob = Client(HTTP_HOST="globex.localhost", REMOTE_ADDR=_address())
        assert _sign_in(globex_bob, "/admin/login/", "bob", PASSWORD).status_code == 302


def test_one_address_is_held_to_its_sign_in_budget(acme):
    user = _agent()
    ip = _address()
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_SIGN_INS_PER_IP_MINUTE=2):
        first = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip)
        assert _sign_in(first, "/inbox/login/", user.username, PASSWORD).status_code == 302
        second = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip)
        assert _sign_in(second, "/inbox/login/", user.username, PASSWORD).status_code == 302
        third = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=ip, HTTP_ACCEPT="application/json")
        answer = _sign_in(third, "/inbox/login/", user.username, PASSWORD)
        assert answer.status_code == 429
        assert answer.json()["error"] == "locked_out"
        assert answer.json()["retry_after"] > 0


# --- the sign-in gate (org.signin_gate): refusals before Django, sign-in threads of their own ---


@pytest.fixture(autouse=True)
def _fresh_sign_in_budgets() -> None:
    """Each test starts with empty sign-in and password-reset counters (the windows are clock
    minutes, shared by every test of that minute)."""
    client = ratelimit._client()
    for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:rl:signin-*"):
        client.delete(key)
    for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:rl:reset-*"):
        client.delete(key)


def _scope(host: str, path: str, ip: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", host.encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            *headers,
        ],
        "client": (ip, 50000),
        "server": ("127.0.0.1", 80),
    }


async def _asgi_post(
    app: Any, host: str, path: str, ip: str, body: bytes, *headers: tuple[bytes, bytes]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST ``body`` through the ASGI application ``app``: (status, headers, body)."""
    return await _asgi_call(app, _scope(host, path, ip, list(headers)), body)


async def _asgi_call(
    app: Any, scope: dict[str, Any], body: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP request through the ASGI application ``app``: (status, headers, body)."""
    talk = ApplicationCommunicator(app, scope)
    await talk.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await talk.receive_output(WAIT_S)
    content = b""
    while True:
        message = await talk.receive_output(WAIT_S)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await talk.wait(WAIT_S)
    return start["status"], dict(start["headers"]), content


@pytest.mark.parametrize(("schema", "host", "path"), PATHS)
def test_a_sign_in_past_the_budget_is_refused_before_django_without_the_database(
    acme, django_db_blocker, schema, host, path
):
    budget = {**settings.WEIYU_TENANT_LIMITS, "sign_ins_per_minute": 2}
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_TENANT_LIMITS=budget):
        # given a tenant whose sign-in budget a botnet used up (two wrong passwords, counted)
        for _ in range(2):
            client = Client(HTTP_HOST=host, REMOTE_ADDR=_address())
            assert _sign_in(client, path, unique("stuffed"), "guess").status_code == 200
        # and a web process that has served this host before (its tenant is cached)
        assert async_to_sync(resolve_tenant)(host).schema_name == schema
        form = b"username=bob&password=" + PASSWORD.encode()

        async def flood() -> list[tuple[int, dict[bytes, bytes], bytes]]:
            return [
                await _asgi_post(
                    application, host, path, _address(), form, (b"accept-language", b"en")
                ),
                await _asgi_post(
                    application,
                    host,
                    path,
                    _address(),
                    form,
                    (b"accept", b"application/json"),
                    (b"accept-language", b"en"),
                ),
                await _asgi_post(
                    application, host, path, _address(), form, (b"accept-language", b"zh-hans")
                ),
            ]

        # when more sign-ins come while no database query may run in this process (any query,
        # on any thread, raises: Django would answer 500)
        with django_db_blocker.block():
            page, script, chinese = async_to_sync(flood)()
    # then each is refused with the budget's wait: a page, JSON for scripts, in their language
    for status, headers, _body in (page, script, chinese):
        assert status == 429
        assert 0 < int(headers[b"retry-after"]) <= 60
    assert "Too many sign-in attempts right now" in page[2].decode()
    assert page[1][b"content-type"].startswith(b"text/html")
    body = json.loads(script[2])
    assert body["error"] == "locked_out"
    assert 0 < body["retry_after"] <= 60
    assert "Too many sign-in attempts right now" in body["detail"]
    assert "当前登录尝试过多" in chinese[2].decode()


#: headers that describe one answer (its body, caching, cookies), not the site's policy
_PER_ANSWER = {
    "content-type",
    "content-length",
    "content-language",
    "vary",
    "cache-control",
    "expires",
    "set-cookie",
    "last-modified",
    "retry-after",
}


def _policy_headers(headers: dict[bytes, bytes]) -> dict[str, str]:
    """The site-wide headers of an answer (the CSP without its per-request nonce)."""
    found = {}
    for name, value in headers.items():
        key = name.decode().lower()
        if key not in _PER_ANSWER:
            found[key] = re.sub(r" 'nonce-[^']*'", "", value.decode())
    return found


def test_the_gates_refusal_carries_the_security_headers_of_every_page(acme):
    # given a production-like set-up: the CSP on, HSTS over https
    middleware = list(settings.MIDDLEWARE)
    if "csp.middleware.CSPMiddleware" not in middleware:
        at = middleware.index("django.middleware.security.SecurityMiddleware") + 1
        middleware.insert(at, "csp.middleware.CSPMiddleware")
    budget = {**settings.WEIYU_TENANT_LIMITS, "sign_ins_per_minute": 1}
    fresh_window(60)
    with override_settings(
        MIDDLEWARE=middleware,
        SECURE_HSTS_SECONDS=3600,
        WEIYU_RATE_LIMITS=True,
        WEIYU_TENANT_LIMITS=budget,
    ):
        app = SignInGate(ASGIHandler())
        # and a tenant whose sign-in budget is used up
        client = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
        assert _sign_in(client, "/inbox/login/", unique("stuffed"), "guess").status_code == 200

        async def both() -> list[tuple[int, dict[bytes, bytes], bytes]]:
            page = await _asgi_https(app, "GET", "/inbox/login/", b"")
            refused = await _asgi_https(
                app, "POST", "/inbox/login/", b"username=bob&password=guess"
            )
            return [page, refused]

        page, refused = async_to_sync(both)()
    assert page[0] == 200
    assert refused[0] == 429
    normal = _policy_headers(page[1])
    assert {"content-security-policy", "strict-transport-security", "x-frame-options"} <= set(
        normal
    ), normal
    # then the refusal carries every one of them, with the same values
    assert _policy_headers(refused[1]) == normal


async def _asgi_https(
    app: Any, method: str, path: str, body: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        **_scope("acme.localhost", path, _address(), [(b"accept-language", b"en")]),
        "method": method,
        "scheme": "https",
    }
    return await _asgi_call(app, scope, body)


def test_password_resets_past_the_tenants_budget_are_refused_without_the_database(
    acme, django_db_blocker
):
    budget = {**settings.WEIYU_TENANT_LIMITS, "password_resets_per_minute": 1}
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_TENANT_LIMITS=budget):
        first = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
        answer = first.post("/account/password/reset/", {"email": "someone@example.com"})
        assert answer.status_code == 302
        assert async_to_sync(resolve_tenant)("acme.localhost").schema_name == "acme"
        with django_db_blocker.block():
            status, headers, body = async_to_sync(_asgi_post)(
                application,
                "acme.localhost",
                "/account/password/reset/",
                _address(),
                b"email=other%40example.com",
                (b"accept-language", b"en"),
            )
    assert status == 429
    assert int(headers[b"retry-after"]) > 0
    assert "Too many password reset requests" in body.decode()


def test_refusals_are_answered_late_while_few_are_held(acme):
    budget = {**settings.WEIYU_TENANT_LIMITS, "sign_ins_per_minute": 1}
    fresh_window(60)
    with override_settings(WEIYU_RATE_LIMITS=True, WEIYU_TENANT_LIMITS=budget):
        client = Client(HTTP_HOST="acme.localhost", REMOTE_ADDR=_address())
        assert _sign_in(client, "/inbox/login/", unique("stuffed"), "guess").status_code == 200

        def refused() -> float:
            started = time.monotonic()
            status, _headers, _body = async_to_sync(_asgi_post)(
                application, "acme.localhost", "/inbox/login/", _address(), b""
            )
            assert status == 429
            return time.monotonic() - started

        # a refusal waits its delay (a guessing client is slowed to one guess a second)
        with override_settings(WEIYU_SIGN_IN_REFUSAL_DELAY_MS=400):
            assert refused() >= 0.4
        # but no longer once the process holds its share of waiting refusals (none here)
        with override_settings(
            WEIYU_SIGN_IN_REFUSAL_DELAY_MS=int(WAIT_S * 4000), WEIYU_SIGN_IN_REFUSALS_HELD=0
        ):
            assert refused() < WAIT_S * 4


def test_sign_ins_run_on_their_threads_one_tenant_at_a_time_and_a_full_queue_is_refused(
    acme, globex
):
    """Two sign-in threads: a tenant's sign-ins use one at a time (the rest wait, up to the
    queue's length, then are refused at once), and another tenant's go on the other thread."""
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    threads: list[str] = []
    niceness: list[int] = []
    release = asyncio.Event()

    async def django_stand_in(scope: dict[str, Any], receive: Any, send: Any) -> None:
        host = dict(scope["headers"])[b"host"].decode()
        running[host] += 1
        most[host] = max(most[host], running[host])
        threads.append(await sync_to_async(lambda: threading.current_thread().name)())
        niceness.append(
            await sync_to_async(
                lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            )()
        )
        if host == "acme.localhost":
            await release.wait()
        running[host] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = SignInGate(django_stand_in)

    async def scenario() -> tuple[list[int], int]:
        assert (await resolve_tenant("acme.localhost")).schema_name == "acme"
        assert (await resolve_tenant("globex.localhost")).schema_name == "globex"
        acme_posts = [
            asyncio.ensure_future(_asgi_post(gate, "acme.localhost", "/inbox/login/", ip, b""))
            for ip in [_address() for _ in range(4)]
        ]
        await wait_until_async(lambda: most["acme.localhost"] == 1)
        # the queue (2) is full: the next one is refused without waiting
        status, headers, _body = await _asgi_post(
            gate,
            "acme.localhost",
            "/inbox/login/",
            _address(),
            b"",
            (b"accept", b"application/json"),
        )
        assert (status, json.loads(_body)["error"]) == (429, "busy")
        assert int(headers[b"retry-after"]) > 0
        # while acme's sign-in holds its thread, globex's runs on the other one
        other, _headers, _body = await _asgi_post(
            gate, "globex.localhost", "/admin/login/", _address(), b""
        )
        release.set()
        done = await asyncio.gather(*acme_posts)
        return [answer[0] for answer in done], other

    with override_settings(WEIYU_RATE_LIMITS=False, WEIYU_SIGN_IN_THREADS=2, WEIYU_SIGN_IN_QUEUE=2):
        acme_statuses, globex_status = async_to_sync(scenario)()
    assert globex_status == 200
    assert sorted(acme_statuses) == [200, 200, 200, 429]
    assert most == {"acme.localhost": 1, "globex.localhost": 1}
    assert {name.partition("_")[0] for name in threads} == {"weiyu-signin-0", "weiyu-signin-1"}
    # and they yield the CPU: niceness above the process's
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert set(niceness) == {min(19, own + settings.WEIYU_SIGN_IN_NICE)}


def test_during_a_sign_in_flood_another_tenants_user_signs_in_and_chats(acme, globex):
    """A live server with the budgets on (acme: 6 sign-ins a minute) and the real PBKDF2
    hasher; 8 clients flood acme's sign-in with wrong passwords, each request from a new
    address. Meanwhile a globex user signs in through the same server and chats."""
    with schema_context("globex"):
        ann = User.objects.create_user(username=unique("ann"), password=PASSWORD)
        # the server hashes with PBKDF2 (the suite's fast hasher is not in its list)
        hasher = PBKDF2PasswordHasher()
        ann.password = hasher.encode(PASSWORD, hasher.salt())
        ann.save(update_fields=["password"])
        ben = User.objects.create_user(username=unique("ben"), password=PASSWORD)
        chat = groups.direct_get_or_create(user=ann, other_user_id=ben.pk)
    ben_cookie = session_cookie(globex, ben).decode()
    server = daphne_start(
        name="sign-in-gate",
        CHANNEL_PREFIX=unique(f"gate{os.getpid()}x"),  # counters of its own
        WEIYU_RATE_LIMITS="1",
        WEIYU_TRUSTED_PROXIES="127.0.0.1/32",
        WEIYU_TENANT_SIGN_INS_PER_MINUTE="6",
        WEIYU_FAST_PASSWORD_HASHER="0",
    )
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []
    stop = threading.Event()

    def flood() -> None:
        try:
            with requests.Session() as web:
                web.headers["Host"] = "acme.localhost"
                url = server.url("127.0.0.1", "/inbox/login/")
                page = web.get(url, timeout=WAIT_S)
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
                while not stop.is_set():
                    forged = _address()  # a botnet: a new address each time
                    answer = web.post(
                        url,
                        data={
                            "csrfmiddlewaretoken": token.group(1),
                            "username": unique("stuffed"),
                            "password": "guess",
                        },
                        headers={"X-Forwarded-For": forged, "Accept": "application/json"},
                        timeout=WAIT_S,
                    )
                    statuses[answer.status_code] += 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    flooders = [threading.Thread(target=flood) for _ in range(8)]
    try:
        for t in flooders:
            t.start()
        # the flood has used up acme's budget and is being refused
        wait_until(lambda: statuses[429] >= 50 or errors, what="the flood to be refused")
        # a globex user signs in (the password form, through the gate and a sign-in thread)
        with requests.Session() as web:
            web.headers["Host"] = "globex.localhost"
            url = server.url("127.0.0.1", "/inbox/login/")
            page = web.get(url, timeout=WAIT_S)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            signed_in = web.post(
                url,
                data={"csrfmiddlewaretoken": token, "username": ann.username, "password": PASSWORD},
                allow_redirects=False,
                timeout=WAIT_S,
            )
            assert signed_in.status_code == 302, signed_in.text[:500]
            ann_cookie = (
                f"{settings.SESSION_COOKIE_NAME}={web.cookies[settings.SESSION_COOKIE_NAME]}"
            )
        # and chats: ben receives what ann sends, during the flood
        sockets = {}
        with contextlib.ExitStack() as opened:
            for name, cookie in (("ann", ann_cookie), ("ben", ben_cookie)):
                sockets[name] = opened.enter_context(
                    ws_connect(
                        f"ws://globex.localhost:{server.port}/ws/agent/",
                        sock=socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S),
                        origin=f"http://globex.localhost:{server.port}",
                        additional_headers={"Cookie": cookie},
                        open_timeout=WAIT_S,
                    )
                )
                assert json.loads(sockets[name].recv(WAIT_S))["type"] == "hello"
            sockets["ann"].send(
                json.dumps(
                    {
                        "type": "message.send",
                        "conversation_id": chat.pk,
                        "client_msg_id": "during-the-flood",
                        "content": "still here",
                    }
                )
            )
            ack = _frame(sockets["ann"], lambda f: f["type"] == "message.ack")
            assert ack["client_msg_id"] == "during-the-flood"
            new = _frame(sockets["ben"], lambda f: f["type"] == "message.new")
            assert new["message"]["content"] == "still here"
        flooding_after_chat = statuses[429]
    finally:
        stop.set()
        for t in flooders:
            t.join(timeout=WAIT_S)
        server.stop()
    assert errors == []
    # every flood request was answered: a wrong password (200) within the budget, else 429
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] <= 6 * 3  # at most the budget of each minute the test spanned
    assert flooding_after_chat >= 50


def _frame(ws: Any, predicate: Any) -> dict[str, Any]:
    """The first frame from ``ws`` that matches ``predicate`` (others are skipped)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        frame = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
        if predicate(frame):
            return frame
