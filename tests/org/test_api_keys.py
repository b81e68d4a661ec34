"""API keys (docs/api.md, "Authentication"): system keys from the back office, personal tokens,
their scopes, expiry, address allow-list, rate limit and Idempotency-Key replays."""

from __future__ import annotations

import os
import re
import threading
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu import canned
from kefu.models import CannedResponse
from org import apikeys
from org.models import ApiKey, User
from tests.conftest import PASSWORD, agent_client, make_agent, unique
from tests.threads import in_threads
from tests.waits import WAIT_S, fresh_window, wait_until
from weiyu.errors import ServiceError

HOST = "acme.localhost"


def _bob() -> User:
    return User.objects.get(username="bob")


def _key(schema: str = "acme", user: User | None = None, **fields) -> tuple[ApiKey, str]:
    with schema_context(schema):
        fields.setdefault("scopes", list(apikeys.ALL_SCOPES))
        return apikeys.api_key_create(
            kind=fields.pop("kind", ApiKey.Kind.SYSTEM),
            user=user or _bob(),
            name=fields.pop("name", unique("crm")),
            **fields,
        )


def _api(token: str, host: str = HOST, **extra) -> Client:
    return Client(
        HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT_LANGUAGE="en", **extra
    )


def test_a_system_key_made_in_the_back_office_is_shown_once_then_used(acme) -> None:
    with schema_context("acme"):
        admin = agent_client(_bob())
    name = unique("Warehouse sync")
    page = admin.post(
        "/admin/org/apikey/add/",
        {
            "name": name,
            "scopes": ["org:read", "tickets:write"],
            "expires_at_0": "",
            "expires_at_1": "",
            "allowed_ips": "",
            "rate_per_minute": "600",
        },
    )
    assert page.status_code == 200, page.content[:2000]
    assert "no-store" in page["Cache-Control"]
    text = page.content.decode()
    token = re.search(r"wy_[0-9a-f]{10}_[A-Za-z0-9_-]{43}", text).group(0)
    assert "shown only once" in text
    with schema_context("acme"):
        key = ApiKey.objects.get(name=name)
        assert key.kind == "system"
        assert key.user.username == "bob"
        assert key.scopes == ["tickets:write", "org:read"]  # in the order of ALL_SCOPES
        assert token not in key.secret_hash
        assert key.last_used_at is None

    # never shown again: not on the list, not on the key's page
    listing = admin.get("/admin/org/apikey/").content.decode()
    detail = admin.get(f"/admin/org/apikey/{key.pk}/change/").content.decode()
    assert f"wy_{key.prefix}_…" in listing
    assert token not in listing
    assert token not in detail
    secret = token.split("_", 2)[2]  # wy_<prefix>_<secret>: the secret may hold "_" too
    assert secret not in listing
    assert secret not in detail

    answer = _api(token).get("/api/v1/org/directory?q=bob")
    assert answer.status_code == 200
    assert [u["username"] for u in answer.json()["users"]] == ["bob"]
    with schema_context("acme"):
        key.refresh_from_db()
        assert key.last_used_at is not None
        first_use = key.last_used_at
    # used again within the minute: last used is not written again
    assert _api(token).get("/api/v1/org/departments").status_code == 200
    with schema_context("acme"):
        key.refresh_from_db()
        assert key.last_used_at == first_use

    # revoked in the back office: 401 from then on
    done = admin.post(
        "/admin/org/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert "1 key revoked." in done.content.decode()
    refused = _api(token).get("/api/v1/org/departments")
    assert refused.status_code == 401
    assert refused.json() == {"error": "unauthorized", "detail": "This API key has been revoked."}


def test_bad_expired_and_other_tenants_keys_are_401(acme, globex) -> None:
    _unused, token = _key()
    assert _api(token).get("/api/v1/org/departments").status_code == 200
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "wy_nothing", "", "abc"):
        answer = _api(bad).get("/api/v1/org/departments")
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
    chinese = Client(
        HTTP_HOST=HOST, HTTP_AUTHORIZATION="Bearer wy_x", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert chinese.get("/api/v1/org/departments").json()["detail"] == "API 密钥无效。"
    # the same token on another tenant's domain
    other = _api(token, host="globex.localhost").get("/api/v1/org/departments")
    assert other.status_code == 401
    assert other.json()["detail"] == "Invalid API key."

    key, token = _key(expires_at=timezone.now() + timedelta(days=1))
    assert _api(token).get("/api/v1/org/departments").status_code == 200
    with schema_context("acme"):
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = _api(token).get("/api/v1/org/departments")
    assert expired.status_code == 401
    assert expired.json()["detail"] == "This API key has expired."

    # a person's chosen language is the one their key's answers are in
    with schema_context("acme"):
        chinese_agent = make_agent(status="offline", inbox=False)
        User.objects.filter(pk=chinese_agent.pk).update(language="zh-hans")
        chinese_agent.refresh_from_db()
    _k, zh_token = _key(kind=ApiKey.Kind.PERSONAL, user=chinese_agent, scopes=["tickets:read"])
    refused = _api(zh_token).post("/api/v1/tickets", {}, content_type="application/json")
    assert refused.json()["detail"] == "此 API 密钥的权限范围不包括该请求。"
    invalid = _api(zh_token).get("/api/v1/tickets?limit=0")
    assert invalid.status_code == 400
    assert re.search(r"[\u4e00-\u9fff]", invalid.json()["detail"])

    # the person deactivated: the key stops working
    with schema_context("acme"):
        agent = make_agent(status="offline", inbox=False)
    _k, token = _key(kind=ApiKey.Kind.PERSONAL, user=agent)
    assert _api(token).get("/api/v1/org/departments").status_code == 200
    with schema_context("acme"):
        User.objects.filter(pk=agent.pk).update(is_active=False)
    assert _api(token).get("/api/v1/org/departments").status_code == 401


def test_address_allow_list(acme) -> None:
    _k, token = _key(allowed_ips="203.0.113.0/24, 2001:db8::1")
    refused = _api(token).get("/api/v1/org/departments")  # from 127.0.0.1
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "forbidden",
        "detail": "This API key is not allowed from this address.",
    }
    assert _api(token, REMOTE_ADDR="203.0.113.77").get("/api/v1/org/departments").status_code == 200
    assert _api(token, REMOTE_ADDR="2001:db8::1").get("/api/v1/org/departments").status_code == 200


def test_scopes_by_family_and_method(acme) -> None:
    _k, token = _key(scopes=["org:read", "conversations:write"])
    client = _api(token)
    assert client.get("/api/v1/org/directory").status_code == 200
    assert client.get("/api/v1/kefu/canned").status_code == 200  # write includes read
    wrong = client.get("/api/v1/tickets")
    assert wrong.status_code == 403
    assert wrong.json() == {
        "error": "forbidden",
        "detail": "This API key's scopes do not cover this request.",
    }
    assert client.get("/api/v1/kefu/stats").status_code == 403  # statistics are their own family
    # read only: no writes in that family
    put = client.put("/api/v1/org/me/language", {"language": "en"}, content_type="application/json")
    assert put.status_code == 403
    created = client.post(
        "/api/v1/kefu/canned",
        {"shortcut": unique("hi"), "title": "Hi", "content": "Hello"},
        content_type="application/json",
    )
    assert created.status_code == 201
    # no CSRF token is needed with a key, and the session is not consulted
    assert "csrftoken" not in created.cookies


def test_personal_tokens(acme) -> None:
    with schema_context("acme"):
        agent = make_agent(status="offline", inbox=False)
        staff = User.objects.create_user(username=unique("staff"), password=PASSWORD)
    browser = agent_client(agent)
    made = browser.post(
        "/api/v1/org/tokens",
        {"name": "my script", "scopes": ["tickets:read"]},
        content_type="application/json",
    )
    assert made.status_code == 201
    body = made.json()
    token = body.pop("token")
    assert token.startswith(f"wy_{body['prefix']}_")
    assert body["kind"] == "personal"
    assert body["scopes"] == ["tickets:read"]
    listed = browser.get("/api/v1/org/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0]
    assert token not in browser.get("/api/v1/org/tokens").content.decode()

    # it acts as the agent
    assert _api(token).get("/api/v1/tickets").status_code == 200
    assert browser.get("/api/v1/org/tokens").json()["tokens"][0]["last_used_at"] is not None
    # a token cannot make or see tokens
    assert _api(token).get("/api/v1/org/tokens").status_code == 403
    _k, full = _key(kind=ApiKey.Kind.PERSONAL, user=agent)
    assert (
        _api(full)
        .post("/api/v1/org/tokens", {"name": "x"}, content_type="application/json")
        .status_code
        == 403
    )

    # someone else cannot revoke it; its owner can
    assert agent_client(staff).delete(f"/api/v1/org/tokens/{body['id']}").status_code == 404
    assert browser.delete(f"/api/v1/org/tokens/{body['id']}").status_code == 204
    assert _api(token).get("/api/v1/tickets").status_code == 401

    # only administrators make system keys
    with pytest.raises(ServiceError) as refused:
        _key(user=agent)
    assert refused.value.code == "forbidden"

    # staff members do not get tokens; bad input is 400 with the field
    no = agent_client(staff).post(
        "/api/v1/org/tokens", {"name": "x"}, content_type="application/json"
    )
    assert no.status_code == 403
    for payload, field in (
        ({"name": ""}, "name"),
        ({"name": "x", "scopes": ["tickets:admin"]}, "scopes"),
        ({"name": "x", "expires_at": "yesterday"}, "expires_at"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00+00:00"}, "expires_at"),
        ({"name": "x", "allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
        ({"name": "x", "rate_per_minute": -1}, "rate_per_minute"),
    ):
        bad = browser.post("/api/v1/org/tokens", payload, content_type="application/json")
        assert bad.status_code == 400, payload
        assert bad.json()["field"] == field


def test_idempotent_post_replays_the_first_answer(acme) -> None:
    _k, token = _key()
    client = _api(token)
    shortcut = unique("idem")
    payload = {"shortcut": shortcut, "title": "Hi", "content": "Hello"}
    idem = unique("order-")
    first = client.post(
        "/api/v1/kefu/canned", payload, content_type="application/json", HTTP_IDEMPOTENCY_KEY=idem
    )
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    again = client.post(
        "/api/v1/kefu/canned", payload, content_type="application/json", HTTP_IDEMPOTENCY_KEY=idem
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    with schema_context("acme"):
        assert CannedResponse.objects.filter(shortcut=shortcut).count() == 1
    # without the header the same POST runs again (and conflicts: the shortcut exists)
    assert (
        client.post("/api/v1/kefu/canned", payload, content_type="application/json").status_code
        == 409
    )
    # the same Idempotency-Key for another body
    other = client.post(
        "/api/v1/kefu/canned",
        {**payload, "title": "Other"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=idem,
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert "Idempotent-Replayed" not in other
    # … or for another path
    elsewhere = client.post(
        "/api/v1/kefu/canned?category=x",
        payload,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=idem,
    )
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (422, "idempotency_key_reused")
    with schema_context("acme"):
        assert not CannedResponse.objects.filter(title="Other").exists()
    # another key's Idempotency-Key space is its own
    _k2, token2 = _key()
    fresh = _api(token2).post(
        "/api/v1/kefu/canned",
        {**payload, "shortcut": unique("idem")},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=idem,
    )
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh
    too_long = client.post(
        "/api/v1/kefu/canned",
        payload,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="x" * 256,
    )
    assert too_long.status_code == 400


def test_the_same_idempotent_post_at_once_runs_once(acme) -> None:
    _k, token = _key()
    shortcut, idem = unique("race"), unique("race-")
    payload = {"shortcut": shortcut, "title": "Hi", "content": "Hello"}

    def post(_n: int) -> tuple[int, str]:
        answer = _api(token).post(
            "/api/v1/kefu/canned",
            payload,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=idem,
        )
        return answer.status_code, answer.json().get("error", "")

    results = in_threads("acme", post, range(4), threads=4)
    # one ran; the others got its answer again, or were told it was still running
    assert (201, "") in results
    assert set(results) <= {(201, ""), (409, "idempotency_key_in_use")}
    with schema_context("acme"):
        assert CannedResponse.objects.filter(shortcut=shortcut).count() == 1


def test_an_idempotent_upload_with_other_bytes_of_the_same_length_is_refused(acme) -> None:
    _k, token = _key()
    client = _api(token)
    idem = unique("upload-")

    def post(data: bytes) -> object:
        return client.post(
            "/api/v1/kefu/canned",
            {
                "shortcut": unique("up"),
                "title": "Invoice",
                "content": "See the file",
                "file": SimpleUploadedFile("invoice.txt", data, content_type="text/plain"),
            },
            HTTP_IDEMPOTENCY_KEY=idem,
        )

    first = post(b"total 100")
    assert first.status_code == 201
    # another file of the same size under the same key is another request, not a retry
    other = post(b"total 900")
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in other


def test_an_idempotency_key_still_in_flight_is_refused_then_replayed(acme, monkeypatch) -> None:
    _k, token = _key()
    shortcut, idem = unique("slow"), unique("slow-")
    payload = {"shortcut": shortcut, "title": "Hi", "content": "Hello"}
    entered, release = threading.Event(), threading.Event()
    create = canned.canned_create

    def held_create(**kwargs):  # the first request stays in flight until the test lets it go
        entered.set()
        release.wait(WAIT_S)
        return create(**kwargs)

    monkeypatch.setattr(canned, "canned_create", held_create)

    def post():
        return _api(token).post(
            "/api/v1/kefu/canned",
            payload,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=idem,
        )

    answers = []

    def run() -> None:
        try:
            answers.append(post())
        finally:
            connection.close()

    first = threading.Thread(target=run)
    first.start()
    try:
        wait_until(entered.is_set, what="the first request is running")
        busy = post()
        assert (busy.status_code, busy.json()["error"]) == (409, "idempotency_key_in_use")
        assert "Idempotent-Replayed" not in busy
    finally:
        release.set()
        first.join(WAIT_S)
    assert answers[0].status_code == 201
    again = post()
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == answers[0].json()
    with schema_context("acme"):
        assert CannedResponse.objects.filter(shortcut=shortcut).count() == 1


def test_a_flood_of_bad_keys_from_one_address_is_refused_before_any_lookup(acme, settings) -> None:
    settings.WEIYU_RATE_LIMITS = True  # the suite runs with the limits off (scripts/test.py)
    settings.WEIYU_API_KEY_FAILURES_PER_IP_MINUTE = 5
    _k, token = _key()
    flooder = f"203.0.113.{os.getpid() % 250 + 1}"
    guesses = [f"wy_{n:010x}_{'A' * 43}" for n in range(8)]
    fresh_window(60)
    # five wrong guesses are told so, one by one
    for guess in guesses[:5]:
        answer = _api(guess, REMOTE_ADDR=flooder).get("/api/v1/tickets")
        assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized")
    # the next ones are refused for the rest of the minute, without looking the key up
    for guess in guesses[5:]:
        with CaptureQueriesContext(connection) as queries:
            refused = _api(guess, REMOTE_ADDR=flooder).get("/api/v1/tickets")
        assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
        assert 1 <= int(refused["Retry-After"]) <= 61
        assert not [q["sql"] for q in queries.captured_queries if "org_apikey" in q["sql"]]
    # … and with the Idempotency-Key middleware in the way, still refused without a lookup
    with CaptureQueriesContext(connection) as queries:
        refused = _api(guesses[0], REMOTE_ADDR=flooder).post(
            "/api/v1/kefu/canned", {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
        )
    assert refused.status_code == 429
    assert not [q["sql"] for q in queries.captured_queries if "org_apikey" in q["sql"]]
    # a valid key used from another address is not affected by that flood
    fine = _api(token, REMOTE_ADDR="198.51.100.20").get("/api/v1/tickets")
    assert fine.status_code == 200


def test_failures_of_a_valid_key_are_not_counted_against_its_address(acme, settings) -> None:
    settings.WEIYU_RATE_LIMITS = True  # the suite runs with the limits off (scripts/test.py)
    settings.WEIYU_API_KEY_FAILURES_PER_IP_MINUTE = 2
    _k, token = _key(scopes=["tickets:read"])
    address = f"198.51.100.{os.getpid() % 250 + 1}"
    fresh_window(60)
    # a key outside its scopes is forbidden (not a guess): any number of times
    for _n in range(4):
        assert _api(token, REMOTE_ADDR=address).get("/api/v1/org/directory").status_code == 403
    assert _api(token, REMOTE_ADDR=address).get("/api/v1/tickets").status_code == 200


@pytest.mark.parametrize("rate", [3])
def test_rate_limit_per_key(acme, rate: int) -> None:
    _k, token = _key(rate_per_minute=rate)
    client = _api(token)
    # two clock minutes hold at most 2 * rate requests: one more must be refused
    statuses = []
    for _ in range(2 * rate + 1):
        answer = client.get("/api/v1/org/departments")
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {200}
    assert 1 <= int(answer["Retry-After"]) <= 61
    assert answer.json()["error"] == "rate_limited"
    # another key is not affected
    _k2, other = _key(rate_per_minute=rate)
    assert _api(other).get("/api/v1/org/departments").status_code == 200


def test_openapi_schema_validates_and_names_the_bearer_scheme(acme, tmp_path) -> None:
    # the generator warns about nothing and the result validates (OpenAPI 3)
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))

    answer = Client(HTTP_HOST=HOST).get("/api/v1/schema/?format=json")  # no sign-in needed
    assert answer.status_code == 200
    schema = answer.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "wy_<prefix>_<secret>",
        "description": "An API key or personal token (docs/api.md, Authentication).",
    }
    paths = schema["paths"]
    for path in (
        "/api/v1/im/conversations/{id}/messages",
        "/api/v1/kefu/visitors/{id}",
        "/api/v1/tickets",
        "/api/v1/kbase/search",
        "/api/v1/org/directory",
        "/api/v1/kefu/stats",
        "/api/v1/org/tokens",
    ):
        assert {"bearerAuth": []} in next(iter(paths[path].values()))["security"], path
    assert paths["/api/v1/tickets"]["post"]["operationId"] == "tickets_post"
    # anonymous widget endpoints take no key
    assert {"bearerAuth": []} not in paths["/api/v1/widget/session"]["post"].get("security", [])


def test_documentation_page_is_served_from_here(acme) -> None:
    page = Client(HTTP_HOST=HOST).get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    script = Client(HTTP_HOST=HOST).get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert "/api/v1/schema/" in script.content.decode()


def test_the_inbox_tokens_page(acme) -> None:
    with schema_context("acme"):
        agent = make_agent(status="offline", inbox=False)
        staff = User.objects.create_user(username=unique("staff"), password=PASSWORD)
    browser = agent_client(agent)
    assert 'id="tokens-link"' in browser.get("/inbox/").content.decode()
    page = browser.get("/inbox/tokens/")
    assert page.status_code == 200
    assert "No tokens yet." in page.content.decode()
    chinese = agent_client(agent, language="zh-hans").get("/inbox/tokens/").content.decode()
    assert "API 令牌" in chinese
    assert "还没有令牌。" in chinese

    made = browser.post(
        "/inbox/tokens/",
        {"action": "create", "name": "report script", "scopes": ["tickets:read"], "days": "30"},
    )
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    token = re.search(r"wy_[0-9a-f]{10}_[A-Za-z0-9_-]{43}", made.content.decode()).group(0)
    assert "shown only once" in made.content.decode()
    assert _api(token).get("/api/v1/tickets").status_code == 200
    assert _api(token).get("/api/v1/org/directory").status_code == 403  # not in its scopes

    listed = browser.get("/inbox/tokens/").content.decode()
    assert "report script" in listed
    assert token not in listed
    with schema_context("acme"):
        key = ApiKey.objects.get(user=agent)
        assert key.expires_at is not None
    assert f"wy_{key.prefix}_…" in listed

    bad = browser.post("/inbox/tokens/", {"action": "create", "name": "x", "days": "0"})
    assert bad.status_code == 400
    assert "Expires after 1 to 3650 days." in bad.content.decode()
    # another person's token cannot be revoked from here
    other = agent_client(make_agent_in_acme())
    assert other.post("/inbox/tokens/", {"action": "revoke", "id": key.pk}).status_code == 404
    assert browser.post("/inbox/tokens/", {"action": "revoke", "id": key.pk}).status_code == 200
    assert _api(token).get("/api/v1/tickets").status_code == 401

    assert agent_client(staff).get("/inbox/tokens/").status_code == 403


def make_agent_in_acme() -> User:
    with schema_context("acme"):
        return make_agent(status="offline", inbox=False)
