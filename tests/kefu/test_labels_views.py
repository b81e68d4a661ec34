"""Conversation labels (set one by one, in bulk and by rules; counted in the statistics) and the
views of the inbox's list (mine, unassigned, all open, waiting for a reply, closed; filters,
sorting, saved views, counts), through the API as the inbox uses it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from kefu import stats
from kefu.models import Label, LabelRule, Session
from kefu.senders import agent_sender
from kefu.services import automation
from kefu.services import messages as kefu_messages
from kefu.services import sessions as kefu_sessions
from org.models import User
from tests.conftest import PASSWORD, agent_client, make_desk, make_visitor, unique
from weiyu.realtime import capture_events


def _visit(desk, text="hello"):
    """A visitor of the desk writes ``text``; returns their session."""
    visitor, _ = make_visitor(desk)
    kefu_messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=text, client_msg_id=unique("c")
    )
    return Session.objects.select_related("visitor").get(visitor=visitor)


def _admin() -> User:
    return User.objects.create_user(
        username=unique("boss"), password=PASSWORD, role="admin", is_staff=True
    )


def _label(name=None, color="#d1242f") -> Label:
    return Label.objects.create(name=name or unique("label"), color=color)


def test_administrators_define_labels_agents_only_read_them(acme):
    # given an administrator and an agent
    desk = make_desk(acme)
    with schema_context("acme"):
        boss = _admin()
    admin, agent = agent_client(boss), agent_client(desk.agents[0])
    name = unique("billing")

    # when the administrator creates a label, and the agent tries to
    created = admin.post(
        "/api/v1/kefu/labels", {"name": name, "color": "#1F6FEB"}, content_type="application/json"
    )
    refused = agent.post(
        "/api/v1/kefu/labels", {"name": unique("x")}, content_type="application/json"
    )

    # then the label exists (colour normalised) and every agent reads it; the agent was refused
    assert created.status_code == 201
    label = created.json()
    assert (label["name"], label["color"]) == (name, "#1f6feb")
    assert refused.status_code == 403
    assert label in agent.get("/api/v1/kefu/labels").json()["labels"]
    # and bad input is told apart
    same = admin.post("/api/v1/kefu/labels", {"name": name}, content_type="application/json")
    assert (same.status_code, same.json()["error"]) == (409, "conflict")
    bad = admin.post(
        "/api/v1/kefu/labels", {"name": "x", "color": "red"}, content_type="application/json"
    )
    assert (bad.status_code, bad.json()["field"]) == (400, "color")
    renamed = admin.patch(
        f"/api/v1/kefu/labels/{label['id']}", {"color": "#00aa00"}, content_type="application/json"
    )
    assert renamed.json()["color"] == "#00aa00"
    assert admin.delete(f"/api/v1/kefu/labels/{label['id']}").status_code == 204
    assert admin.delete(f"/api/v1/kefu/labels/{label['id']}").status_code == 404


def test_labelling_a_conversation_reaches_its_workgroup_live(acme):
    # given a conversation served by one of two agents of a workgroup
    desk = make_desk(acme, agents=2)
    with schema_context("acme"):
        session = _visit(desk, "my invoice is wrong")
        vip, bug = _label(), _label()
    server = next(a for a in desk.agents if a.pk == session.agent_id)
    colleague = next(a for a in desk.agents if a.pk != session.agent_id)
    url = f"/api/v1/kefu/conversations/{session.conversation_id}/labels"

    # when the colleague adds two labels, then removes one
    with capture_events() as events:
        r = agent_client(colleague).post(
            url, {"add": [vip.pk, bug.pk]}, content_type="application/json"
        )
        r2 = agent_client(colleague).post(
            url, {"remove": [bug.pk]}, content_type="application/json"
        )

    # then the conversation carries what is left, and the workgroup heard of each change
    assert r.status_code == 200
    assert {lb["id"] for lb in r.json()["conversations"][0]["labels"]} == {vip.pk, bug.pk}
    assert [lb["name"] for lb in r2.json()["conversations"][0]["labels"]] == [vip.name]
    label_events = [(e, g) for e, g in events if e["type"] == "conversation.labels"]
    assert len(label_events) == 2
    event, groups = label_events[-1]
    assert event["conversation_id"] == session.conversation_id
    assert [lb["id"] for lb in event["labels"]] == [vip.pk]
    assert sorted(groups) == sorted(f"acme.u.{a.pk}" for a in (server, colleague))


def test_only_the_workgroup_labels_and_bulk_changes_are_all_or_nothing(acme, globex):
    # given conversations of two workgroups
    desk, other = make_desk(acme), make_desk(acme)
    with schema_context("acme"):
        first, second = _visit(desk), _visit(desk)
        stranger_session = _visit(other)
        label = _label()
    agent = agent_client(desk.agents[0])
    bulk = "/api/v1/kefu/conversations/labels"

    # when the agent labels their workgroup's two conversations and another workgroup's one
    mixed = agent.post(
        bulk,
        {
            "conversation_ids": [first.conversation_id, stranger_session.conversation_id],
            "add": [label.pk],
        },
        content_type="application/json",
    )
    ok = agent.post(
        bulk,
        {"conversation_ids": [first.conversation_id, second.conversation_id], "add": [label.pk]},
        content_type="application/json",
    )

    # then the mixed request changed nothing; the right one labelled both
    assert mixed.status_code == 404
    assert ok.status_code == 200
    with schema_context("acme"):
        assert not stranger_session.labels.exists()
        assert Session.objects.filter(labels=label).count() == 2
    # and bad input and other tenants are refused
    for body in (
        {"conversation_ids": "1", "add": [label.pk]},
        {"conversation_ids": [], "add": [label.pk]},
        {"conversation_ids": [first.conversation_id], "add": [10**9]},
        {"conversation_ids": [True], "add": [label.pk]},
    ):
        assert agent.post(bulk, body, content_type="application/json").status_code == 400
    foreign = make_desk(globex)
    r = agent_client(foreign.agents[0], tenant="globex").post(
        f"/api/v1/kefu/conversations/{first.conversation_id}/labels",
        {"add": []},
        content_type="application/json",
    )
    assert r.status_code in (400, 404)
    with schema_context("acme"):
        assert Session.objects.get(pk=first.pk).labels.count() == 1


def test_label_rules_add_labels_to_matching_visitor_messages(acme):
    # given a rule: a message mentioning "refund" on this channel gets the "refund" label
    desk = make_desk(acme)
    with schema_context("acme"):
        label = _label()
        LabelRule.objects.create(channel=desk.channel, keyword="Refund", label=label)
        automation._cache.clear()  # this process read the rules before this one existed

        # when two visitors write, one of them about a refund
        with capture_events() as events:
            asks = _visit(desk, "I want a REFUND please")
        other = _visit(desk, "where is my parcel?")

        # then only that conversation is labelled, and its agent heard of it
        assert list(asks.labels.values_list("pk", flat=True)) == [label.pk]
        assert not other.labels.exists()
        assert any(
            e["type"] == "conversation.labels" and e["conversation_id"] == asks.conversation_id
            for e, _g in events
        )
        # and the statistics count the conversation under the label
        today = timezone.localdate()
        counted = {r["id"]: r["conversations"] for r in stats.label_counts(start=today, end=today)}
        assert counted[label.pk] == 1
        automation._cache.clear()


def test_views_hold_the_right_conversations_with_counts(acme):
    # given a workgroup with an agent: one conversation they serve and answered, one where the
    # customer waits for a reply, one queued (the agent is full), one closed
    desk = make_desk(acme, cap=1)
    agent = desk.agents[0]
    with schema_context("acme"):
        answered = _visit(desk, "first question")
        kefu_messages.agent_message_send(
            user=agent,
            conversation_id=answered.conversation_id,
            content="an answer",
            client_msg_id=unique("a"),
        )
        kefu_sessions.session_close(session_id=answered.pk, closed_by=agent_sender(agent))
        waiting = _visit(desk, "is anybody there?")
        queued = _visit(desk, "still waiting in line")
        label = _label()
        waiting.labels.add(label)
    client = agent_client(agent)

    def ids(**params):
        r = client.get("/api/v1/kefu/conversations", params)
        assert r.status_code == 200, r.content
        return [row["conversation_id"] for row in r.json()["conversations"]]

    # then each view holds what it should
    assert ids(view="mine") == [waiting.conversation_id]
    assert ids(view="unassigned") == [queued.conversation_id]
    assert set(ids(view="open")) == {waiting.conversation_id, queued.conversation_id}
    assert ids(view="waiting") == [waiting.conversation_id]
    assert ids(view="closed") == [answered.conversation_id]
    assert ids(view="open", label=label.pk) == [waiting.conversation_id]
    assert ids(view="open", channel=desk.channel.pk, sort="waiting")[0] == waiting.conversation_id
    counts = client.get("/api/v1/kefu/views").json()
    assert counts["views"] == {
        "mine": 1,
        "unassigned": 1,
        "open": 2,
        "waiting": 1,
        "snoozed": 0,
        "closed": 1,
    }
    assert {"id": desk.workgroup.pk, "name": desk.workgroup.name, "open": 2} in counts["workgroups"]
    assert next(lb for lb in counts["labels"] if lb["id"] == label.pk)["open"] == 1
    # and a row previews the customer's words and how long they wait
    row = client.get("/api/v1/kefu/conversations", {"view": "waiting"}).json()["conversations"][0]
    assert row["customer_message"]["content"] == "is anybody there?"
    assert row["waiting_since"] is not None
    assert row["labels"][0]["id"] == label.pk
    # an unknown view or sort is refused
    assert client.get("/api/v1/kefu/conversations", {"view": "x"}).status_code == 400
    assert client.get("/api/v1/kefu/conversations", {"sort": "x"}).status_code == 400
    assert client.get("/api/v1/kefu/conversations", {"label": "x"}).status_code == 400


def test_another_workgroup_sees_none_of_it(acme):
    # given conversations of one workgroup
    desk, other = make_desk(acme), make_desk(acme)
    with schema_context("acme"):
        _visit(desk)
    # then an agent of another workgroup sees none of them
    client = agent_client(other.agents[0])
    assert client.get("/api/v1/kefu/conversations", {"view": "open"}).json()["conversations"] == []
    assert client.get("/api/v1/kefu/views").json()["views"]["open"] == 0


@pytest.mark.parametrize("view", ["open", "waiting", "closed"])
def test_the_list_costs_the_same_queries_for_3_or_15_conversations(acme, view):
    # given a workgroup with 3 conversations, each labelled
    desk = make_desk(acme, cap=50)
    agent = desk.agents[0]
    with schema_context("acme"):
        labels = [_label(), _label()]

        def add(n):
            for _ in range(n):
                s = _visit(desk, "hello there")
                s.labels.add(*labels)
                if view == "closed":
                    kefu_sessions.session_close(session_id=s.pk, closed_by=agent_sender(agent))

        add(3)
    client = agent_client(agent)
    client.get("/api/v1/kefu/conversations", {"view": view})  # session and user read once

    queries: list[list[str]] = []

    def cost():
        # warmed just before: the per-process caches of the request path (10 s) may have
        # expired while a loaded machine created the conversations
        client.get("/api/v1/kefu/conversations", {"view": view})
        with schema_context("acme"), CaptureQueriesContext(connection) as ctx:
            r = client.get("/api/v1/kefu/conversations", {"view": view})
        assert r.status_code == 200
        queries.append([q["sql"][:160] for q in ctx.captured_queries])
        return len(ctx.captured_queries), len(r.json()["conversations"])

    # when 12 more arrive
    few = cost()
    with schema_context("acme"):
        add(12)
    many = cost()

    # then the list costs the same, whatever its length
    assert (few[1], many[1]) == (3, 15)
    assert many[0] == few[0], queries
    assert many[0] <= 8, queries


def test_the_view_bar_costs_the_same_queries_for_more_conversations(
    acme, django_assert_max_num_queries
):
    desk = make_desk(acme, cap=50)
    with schema_context("acme"):
        for _ in range(5):
            _visit(desk).labels.add(_label())
    client = agent_client(desk.agents[0])
    # signing in (2), the counts (4), workgroups, channels, labels, saved views: whatever the
    # number of conversations
    client.get("/api/v1/kefu/views")  # warm the request path's caches
    with django_assert_max_num_queries(13):
        assert client.get("/api/v1/kefu/views").status_code == 200
    with schema_context("acme"):
        for _ in range(10):
            _visit(desk).labels.add(_label())
    client.get("/api/v1/kefu/views")
    with django_assert_max_num_queries(13):
        assert client.get("/api/v1/kefu/views").status_code == 200


def test_saved_views_are_personal_or_shared_by_administrators(acme):
    # given an agent and an administrator
    desk = make_desk(acme)
    with schema_context("acme"):
        boss = _admin()
        _visit(desk, "a question")
    agent, admin = agent_client(desk.agents[0]), agent_client(boss)
    url = "/api/v1/kefu/saved-views"
    mine_name, team_name = unique("my waiting"), unique("team waiting")

    # when the agent saves a view, tries to share one, and the administrator shares one
    own = agent.post(
        url,
        {"name": mine_name, "filters": {"view": "waiting", "channel": desk.channel.pk}},
        content_type="application/json",
    )
    refused = agent.post(
        url,
        {"name": "x", "filters": {"view": "open"}, "shared": True},
        content_type="application/json",
    )
    shared = admin.post(
        url,
        {"name": team_name, "filters": {"view": "open"}, "shared": True},
        content_type="application/json",
    )

    # then the agent sees both, with their counts in the view bar; the share was refused
    assert (own.status_code, refused.status_code, shared.status_code) == (201, 403, 201)
    assert own.json()["filters"]["sort"] == "waiting"
    names = {v["name"]: v for v in agent.get(url).json()["saved_views"]}
    assert names[mine_name]["shared"] is False
    assert names[team_name]["shared"] is True
    bar = {v["name"]: v["count"] for v in agent.get("/api/v1/kefu/views").json()["saved"]}
    assert bar[mine_name] == 1  # the visitor has had no answer yet
    # only the administrator deletes the shared one
    assert agent.delete(f"{url}/{shared.json()['id']}").status_code == 404
    assert admin.delete(f"{url}/{shared.json()['id']}").status_code == 204
    assert agent.delete(f"{url}/{own.json()['id']}").status_code == 204
    bad = agent.post(
        url, {"name": "x", "filters": {"view": "nope"}}, content_type="application/json"
    )
    assert bad.status_code == 400


def test_statistics_api_counts_conversations_per_label(acme):
    desk = make_desk(acme)
    with schema_context("acme"):
        boss = _admin()
        label = _label()
        _visit(desk).labels.add(label)
    today = timezone.localdate()
    r = agent_client(boss).get(
        "/api/v1/kefu/stats", {"start": str(today - dt.timedelta(days=1)), "end": str(today)}
    )
    assert r.status_code == 200
    assert {
        "id": label.pk,
        "name": label.name,
        "color": label.color,
        "conversations": 1,
    } in r.json()["labels"]
    csv = agent_client(boss).get(
        "/api/v1/kefu/stats",
        {"start": str(today), "end": str(today), "export": "csv", "part": "labels"},
    )
    assert f"{label.name},1" in csv.content.decode()
    # and the back office's statistics page has a table per label
    page = agent_client(boss).get(f"/admin/kefu/session/reports/?start={today}&end={today}")
    assert page.status_code == 200
    table = page.content.decode().split('id="table-labels"')[1].split("</table>")[0]
    assert label.name in table


def test_closing_rings_the_whole_workgroup_so_counts_move(acme):
    # given a conversation served by one of two agents of a workgroup
    desk = make_desk(acme, agents=2)
    with schema_context("acme"):
        session = _visit(desk)
        server = next(a for a in desk.agents if a.pk == session.agent_id)

        # when the agent closes it
        with capture_events() as events:
            kefu_sessions.session_close(session_id=session.pk, closed_by=agent_sender(server))

    # then both agents of the workgroup are told to fetch their counts again
    rings = [(e, g) for e, g in events if e["type"] == "views.changed"]
    assert len(rings) == 1
    event, groups = rings[0]
    assert event == {"type": "views.changed", "workgroup_id": desk.workgroup.pk}
    assert sorted(groups) == sorted(f"acme.u.{a.pk}" for a in desk.agents)


def test_a_snoozed_conversation_leaves_waiting_for_the_snoozed_view(acme):
    # given an agent whose customer waits for a reply
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _visit(desk, "hello? anyone?")
    assert (session.agent_id, session.status) == (agent.pk, Session.Status.OPEN)
    client = agent_client(agent)

    def ids(view):
        return [
            r["conversation_id"]
            for r in client.get("/api/v1/kefu/conversations", {"view": view}).json()[
                "conversations"
            ]
        ]

    assert session.conversation_id in ids("waiting")
    # when the agent snoozes it until the customer replies
    snoozed = client.post(
        f"/api/v1/kefu/conversations/{session.conversation_id}/snooze",
        {"until": None},
        content_type="application/json",
    )
    assert snoozed.status_code == 200, snoozed.content
    # then it is under "snoozed", no longer "waiting for a reply", and counted so
    assert session.conversation_id not in ids("waiting")
    assert session.conversation_id in ids("snoozed")
    row = client.get("/api/v1/kefu/conversations", {"view": "snoozed"}).json()["conversations"]
    mine = next(r for r in row if r["conversation_id"] == session.conversation_id)
    assert (mine["snoozed"], mine["snoozed_until"]) == (True, None)
    assert client.get("/api/v1/kefu/views").json()["views"]["snoozed"] >= 1


def test_the_messaging_api_answers_a_customer_conversation_with_its_session(acme):
    # given a customer conversation served by an agent, labelled
    desk = make_desk(acme, agents=1)
    agent = desk.agents[0]
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        first, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="where is my order?", client_msg_id="q"
        )
        cid = first.conversation_id
        label = Label.objects.create(name=unique("VIP"), color="#d1242f")
        Session.objects.get(conversation_id=cid).labels.add(label)
    client = agent_client(agent)
    # when the inbox fetches it again, or pins it
    fetched = client.get(f"/api/v1/im/conversations/{cid}").json()
    pinned = client.patch(
        f"/api/v1/im/conversations/{cid}/settings",
        {"pinned": True},
        content_type="application/json",
    ).json()
    # then both answers carry the session as the inbox list does: visitor, workgroup, labels
    for answer in (fetched, pinned):
        session = answer["session"]
        assert session["visitor"]["id"] == visitor.pk
        assert session["workgroup"]["name"] == desk.workgroup.name
        assert session["agent"]["key"] == agent.member_key
        assert [x["name"] for x in session["labels"]] == [label.name]
        assert session["customer_message"]["content"] == "where is my order?"
    assert pinned["pinned"] is True
