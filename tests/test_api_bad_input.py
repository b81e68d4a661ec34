"""Bad input never breaks the REST API: every endpoint under ``/api/`` answers malformed JSON,
bodies of the wrong shape, unknown ids and nonsense query parameters with a 4xx and a JSON body
(docs/api.md), never a 500 — for a signed-in administrator and for nobody."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context

from org.models import User
from tests.conftest import PASSWORD, agent_client, unique

BODIES = [
    "{",
    "[1, 2]",
    '"text"',
    "null",
    "{}",
    '{"id": [], "content": {}, "ids": "x"}',
    '{"name": "a\\u0000b", "body": "\\u0000", "q": "x"}',
]
QUERIES = [
    "?q=%27%22&limit=abc&offset=-5&start=2026-13-40&end=x&kb=abc&view=nope&before_seq=-1",
    "?q=a%00b",
]
PARAMS = {"int": "999999", "str": "no%20such", "slug": "nonsense"}


def _endpoints() -> Iterator[tuple[str, list[str]]]:
    """(path with its parameters filled, methods) of every API view."""

    def walk(resolver: URLResolver, prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                yield from walk(p, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern), p

    for path, pattern in walk(get_resolver(), ""):
        if not path.startswith("api/"):
            continue
        view = getattr(pattern.callback, "view_class", None) or getattr(
            pattern.callback, "cls", None
        )
        methods = [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]
        filled = re.sub(r"<(\w+):\w+>", lambda m: PARAMS[m.group(1)], path)
        yield "/" + filled, methods


def _check(client: Client, method: str, url: str, body: str | None = None) -> str | None:
    call = getattr(client, method)
    r = call(url) if body is None else call(url, body, content_type="application/json")
    if r.status_code >= 500:
        return f"{method.upper()} {url} {body!r}: {r.status_code}"
    if r.status_code >= 400 and not r["Content-Type"].startswith("application/json"):
        return f"{method.upper()} {url} {body!r}: {r.status_code} {r['Content-Type']}"
    return None


@pytest.mark.parametrize("who", ["admin", "nobody"])
def test_every_endpoint_refuses_bad_input_with_a_json_4xx(acme, who):
    endpoints = list(_endpoints())
    assert len(endpoints) > 50
    if who == "admin":
        with schema_context("acme"):
            boss = User.objects.create_user(
                username=unique("boss"),
                password=PASSWORD,
                role="admin",
                is_staff=True,
                is_superuser=True,
            )
        client = agent_client(boss)
    else:
        client = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    failures = []
    for url, methods in endpoints:
        for method in methods:
            if method in ("get", "delete"):
                failures.extend(_check(client, method, url + query) for query in QUERIES)
            else:
                failures.extend(_check(client, method, url, body) for body in BODIES)
    assert [f for f in failures if f] == []


def test_a_path_under_api_that_names_no_endpoint_answers_json_404(acme):
    # ids that the URL patterns do not take (negative, a fraction, a word) and unknown actions
    with schema_context("acme"):
        boss = User.objects.create_user(username=unique("boss"), password=PASSWORD, role="admin")
    client = agent_client(boss)
    for url in (
        "/api/v1/tickets/-5",
        "/api/v1/im/conversations/0.6/messages",
        "/api/v1/kefu/transfers/-7/accept",
        "/api/v1/nothing-here",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json() == {"error": "not_found", "detail": "There is no such API endpoint."}
    chinese = agent_client(boss, language="zh-hans").post("/api/v1/tickets/abc")
    assert chinese.json()["detail"] == "没有这个 API 接口。"
    # pages elsewhere keep Django's HTML 404
    page = Client(HTTP_HOST="acme.localhost").get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
