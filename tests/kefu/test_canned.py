"""Canned responses (KF-9): shared ones from the back office and each agent's own through the
API (the inbox's "/shortcut" is tested in tests/e2e/test_canned.py)."""

from __future__ import annotations

import json

from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import CannedResponse
from tests.conftest import agent_client, make_agent, unique


def _post(client: Client, body) -> tuple[int, dict]:
    r = client.post("/api/v1/kefu/canned", json.dumps(body), content_type="application/json")
    return r.status_code, r.json() if r.content else {}


def test_shared_and_personal_canned_responses(acme):
    shortcut = unique("refund")
    with schema_context("acme"):
        ann = make_agent(name="ann", status="offline")
        ben = make_agent(name="ben", status="offline")
        CannedResponse.objects.create(
            shortcut=shortcut, title="Refund policy", content="7 天无理由退货。", category="售后"
        )
    ann_web, ben_web = agent_client(ann), agent_client(ben)
    status, mine = _post(
        ann_web, {"shortcut": "/My Hello", "title": "Greeting", "content": "您好，我是 Ann。"}
    )
    assert status == 201
    assert mine["shortcut"] == "my-hello"
    assert mine["shared"] is False
    status, body = _post(ann_web, {"shortcut": "my-hello", "title": "x", "content": "y"})
    assert status == 409
    assert body["field"] == "shortcut"
    status, body = _post(ann_web, {"shortcut": "!!", "title": "x", "content": "y"})
    assert status == 400
    status, body = _post(ann_web, {"shortcut": "ok", "title": "", "content": "y"})
    assert body["field"] == "title"
    ann_list = ann_web.get("/api/v1/kefu/canned").json()["canned"]
    assert {c["shortcut"] for c in ann_list} >= {shortcut, "my-hello"}
    ben_list = ben_web.get("/api/v1/kefu/canned").json()["canned"]
    assert shortcut in {c["shortcut"] for c in ben_list}
    assert "my-hello" not in {c["shortcut"] for c in ben_list}
    found = ann_web.get("/api/v1/kefu/canned", {"q": "/my"}).json()["canned"]
    assert [c["shortcut"] for c in found] == ["my-hello"]
    # ann edits hers; ben cannot, nor can anyone edit a shared one through the API
    url = f"/api/v1/kefu/canned/{mine['id']}"
    edited = ann_web.patch(url, json.dumps({"content": "您好！"}), content_type="application/json")
    assert edited.status_code == 200
    assert (edited.json()["shortcut"], edited.json()["content"]) == ("my-hello", "您好！")
    _post(ann_web, {"shortcut": "bye", "title": "Bye", "content": "再见"})
    clash = ann_web.patch(url, json.dumps({"shortcut": "/bye"}), content_type="application/json")
    assert (clash.status_code, clash.json()["error"]) == (409, "conflict")
    bad = ann_web.patch(url, json.dumps({"title": " "}), content_type="application/json")
    assert (bad.status_code, bad.json()["field"]) == (400, "title")
    assert ben_web.patch(url, "{}", content_type="application/json").status_code == 404
    shared_id = next(c["id"] for c in ann_list if c["shortcut"] == shortcut)
    assert ann_web.delete(f"/api/v1/kefu/canned/{shared_id}").status_code == 404
    assert ben_web.delete(f"/api/v1/kefu/canned/{mine['id']}").status_code == 404
    assert ann_web.delete(f"/api/v1/kefu/canned/{mine['id']}").status_code == 204
