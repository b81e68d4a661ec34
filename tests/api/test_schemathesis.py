"""The REST API against its own OpenAPI document (docs/api.md, "The OpenAPI schema"): schemathesis
generates requests from ``/api/v1/schema/`` for every operation and checks each answer — never a
5xx, a documented status code and content type, a body that matches the documented schema.

Run twice: with a system API key holding every scope (``Authorization: Bearer``) and with a
signed-in agent's session (cookie and ``X-CSRFToken``). The app is called in process (WSGI), in a
tenant of its own, so whatever the generated requests create, change or delete stays there.
Bounded for CI: a few examples per operation, derandomized (every run sends the same requests,
so a failure repeats), no example database, no shrinking. Nothing is left out: destructive operations (DELETE, erase, revoke,
dissolve) run too, since they can only reach this tenant's objects; one that removes an object
of the known-ids pass (a group dissolved, a label deleted) leaves later operations on it a 4xx,
which is still checked.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
import werkzeug.test
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django_tenants.utils import schema_context
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from im.services import groups
from kefu.services import labels as label_services
from org import apikeys
from org.models import ApiKey, User
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.conftest import PASSWORD, make_desk, make_visitor, session_cookie, unique
from tickets.services import tickets as ticket_services

SCHEMA = "apifuzz"
HOST = f"{SCHEMA}.localhost"
EXAMPLES = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _tenant() -> Tenant:
    """The tenant the generated requests run in, made once per test database."""
    tenant = Tenant.objects.filter(schema_name=SCHEMA).first()
    if tenant is None:
        tenant = tenant_create(
            name="Api fuzz",
            schema_name=SCHEMA,
            domain=HOST,
            admin_username="boss",
            admin_password=PASSWORD,
        )
    return tenant


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "base-url": f"http://{HOST}",
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                # the caller's credentials are ours: no generated Authorization header or cookie
                "with-security-parameters": False,
            },
        }
    )


@dataclass
class World:
    """The callers and a few objects of the fuzz tenant whose ids fill the path parameters of
    the third pass (random ids almost never name an existing object)."""

    key: dict[str, Any]  # headers, and cookies for the tenant's host
    session: dict[str, Any]
    ids: dict[str, int]  # path prefix → id, first match wins
    user_id: int


@pytest.fixture
def world() -> World:
    tenant = _tenant()
    desk = make_desk(tenant, status="offline", inbox=False)
    visitor, _token = make_visitor(desk)
    with schema_context(SCHEMA):
        admin = User.objects.create_user(
            username=unique("keyholder"), password=PASSWORD, role="admin"
        )
        agent = User.objects.create_user(username=unique("agent"), password=PASSWORD, role="agent")
        # a system key of a tenant administrator, with every scope and no rate limit
        _key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=admin,
            name=unique("fuzz"),
            scopes=list(apikeys.ALL_SCOPES),
            rate_per_minute=0,
        )
        group = groups.group_create(creator=admin, title="Fuzz", member_ids=[agent.pk])
        ticket = ticket_services.ticket_create(
            subject="Fuzz", body="Generated requests.", source="inbox", creator=admin
        )
        label = label_services.label_create(user=admin, name=unique("fuzz"))
    name, value = session_cookie(tenant, agent).decode().split("=", 1)
    csrf = secrets.token_hex(16)
    return World(
        key={"headers": {"Authorization": f"Bearer {token}", "Accept-Language": "en"}},
        # a signed-in agent: the session cookie, and the CSRF cookie with its header
        session={
            "headers": {"X-CSRFToken": csrf, "Accept-Language": "en"},
            "cookies": {name: value, "csrftoken": csrf},
        },
        ids={
            "/api/v1/im/": group.pk,
            "/api/v1/tickets/attachments/": 0,
            "/api/v1/tickets/comments/": 0,
            "/api/v1/tickets/": ticket.pk,
            "/api/v1/kefu/labels/": label.pk,
            "/api/v1/kefu/visitors/": visitor.pk,
            "/api/v1/kefu/workgroups/": desk.workgroup.pk,
        },
        user_id=agent.pk,
    )


def _known_ids(world: World, operation: Any) -> dict[str, Any] | None:
    """Path parameters naming the world's objects for ``operation``, or None."""
    path = operation.path
    if "{id}" not in path:
        return None
    found = next((v for prefix, v in world.ids.items() if path.startswith(prefix)), 0)
    if not found:
        return None
    known: dict[str, Any] = {"id": found}
    if "{user_id}" in path:
        known["user_id"] = world.user_id
    return known


def _explore(strategy: Any, call: dict[str, Any], answers: Counter[int]) -> None:
    """Send ``EXAMPLES`` generated requests (``call``: headers, client) and check every answer; raises the
    first failure found (no shrinking: the seed is fixed, the failing case is printed)."""

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=f"http://{HOST}", checks=CHECKS, **call)
        answers[response.status_code // 100] += 1

    check()


def _run(world: World, auth: dict[str, Any]) -> None:
    """Every operation: positive then negative examples, then positive ones on the world's
    objects; all failures reported together."""
    logging.getLogger("django.request").setLevel(logging.ERROR)  # 4xx by the thousand
    raw = Client(HTTP_HOST=HOST).get("/api/v1/schema/?format=json").json()
    schema = schemathesis.openapi.from_dict(raw, config=_config())
    schema.app = get_wsgi_application()
    # schemathesis would set cookies for "localhost" only: a client of our own holds them for
    # the tenant's host (a browser's cookie jar)
    client = werkzeug.test.Client(schema.app)
    for name, value in auth.get("cookies", {}).items():
        client.set_cookie(name, value, domain=HOST)
    call = {"headers": auth["headers"], "session": client}
    signed_in = client.get(
        "/api/v1/org/departments", base_url=f"http://{HOST}", headers=call["headers"]
    )
    assert signed_in.status_code == 200, signed_in.get_data()
    failures: list[str] = []
    answers: dict[str, Counter[int]] = {}  # pass → status class → count (shown with -s)
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies = [
            (mode.value, operation.as_strategy(generation_mode=mode))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
        known = _known_ids(world, operation)
        if known:
            strategies.append(("known ids", operation.as_strategy(path_parameters=known)))
        for name, strategy in strategies:
            try:
                _explore(strategy, call, answers.setdefault(name, Counter()))
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:  # reported together below
                failures.append(f"{operation.label} ({name}): {exc}")
    seconds = time.monotonic() - started
    print(f"{len(failures)} failing, {seconds:.0f} s; answers by status class: {answers}")
    assert not failures, "\n\n".join(failures)
    # the caller is signed in: some requests get through (a broken sign-in would only get 4xx)
    assert sum(counts[2] for counts in answers.values()) > 0, answers


def test_api_answers_as_its_schema_says_to_an_api_key(world: World) -> None:
    _run(world, world.key)


def test_api_answers_as_its_schema_says_to_a_session(world: World) -> None:
    _run(world, world.session)
