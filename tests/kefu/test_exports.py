"""Exporting customer conversations: one conversation as CSV, JSON or a printable transcript,
and a filtered list as a worker's job with progress and an authorised download."""

from __future__ import annotations

import csv
import datetime
import io
import json

from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Participant
from kefu import exports
from kefu.models import ExportJob, Session
from kefu.services import messages
from org.models import User
from tests.conftest import agent_client, make_agent, make_desk, make_visitor, unique


def _chat(desk, lines: list[str]) -> Session:
    visitor, _ = make_visitor(desk)
    messages.visitor_message_send(
        visitor=visitor, conversation_id=None, content=lines[0], client_msg_id=unique("c")
    )
    session = Session.objects.get(visitor=visitor)
    for i, line in enumerate(lines[1:]):
        if i % 2 == 0:
            messages.agent_message_send(
                user=session.agent,
                conversation_id=session.conversation_id,
                content=line,
                client_msg_id=unique("c"),
            )
        else:
            messages.visitor_message_send(
                visitor=visitor,
                conversation_id=session.conversation_id,
                content=line,
                client_msg_id=unique("c"),
            )
    return session


LINES = ["我的订单还没到", "请问订单号是多少？", '=HYPERLINK("http://evil")', "Thanks, found it."]


def test_one_conversation_as_csv_json_and_print(acme):
    desk = make_desk(acme)
    agent = desk.agents[0]
    with schema_context("acme"):
        session = _chat(desk, LINES)
        client = agent_client(agent)
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/export"
        # CSV: one row per message, in order, a formula neutralised
        response = client.get(url, {"kind": "csv"})
        assert response.status_code == 200
        assert response["Content-Disposition"].endswith(
            f'conversation-{session.conversation_id}.csv"'
        )
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == list(exports.MESSAGE_COLUMNS)
        texts = [r[5] for r in rows[1:] if r[3] != "system"]
        assert texts == [LINES[0], LINES[1], "'" + LINES[2], LINES[3]]
        # JSON: the conversation and its messages
        data = json.loads(client.get(url, {"kind": "json"}).content)
        assert data["conversation"]["conversation_id"] == session.conversation_id
        assert [m["text"] for m in data["messages"] if m["sender_type"] != "system"] == LINES
        # the printable transcript
        page = client.get(f"/inbox/conversations/{session.conversation_id}/print/")
        assert page.status_code == 200
        body = page.content.decode()
        assert "我的订单还没到" in body
        assert "print.css" in body
        assert client.get(url, {"kind": "xml"}).status_code == 400


def test_export_refuses_strangers_former_participants_and_other_tenants(acme, globex):
    desk = make_desk(acme, agents=2)
    other = make_desk(globex)
    with schema_context("acme"):
        session = _chat(desk, LINES)
        agent = session.agent
        stranger = next(a for a in desk.agents if a.pk != agent.pk)
        url = f"/api/v1/kefu/conversations/{session.conversation_id}/export?kind=json"
        page = f"/inbox/conversations/{session.conversation_id}/print/"
        assert agent_client(stranger).get(url).status_code == 404
        assert agent_client(stranger).get(page).status_code == 404
        Participant.objects.filter(
            conversation_id=session.conversation_id, member_key=agent.member_key
        ).update(left_at=timezone.now())
        assert agent_client(agent).get(url).status_code == 404
        # a supervisor reads any of the tenant's conversations
        boss = make_agent(name="boss")
        User.objects.filter(pk=boss.pk).update(role="admin")
        assert agent_client(boss).get(url).status_code == 200
    with schema_context("globex"):
        response = agent_client(other.agents[0], tenant="globex").get(url)
        assert response.status_code == 404


def test_a_filtered_list_is_exported_by_a_job_with_progress(acme):
    desk = make_desk(acme)
    with schema_context("acme"):
        sessions = [_chat(desk, [f"question {i}", f"answer {i}"]) for i in range(3)]
        boss = make_agent(name="boss")
        User.objects.filter(pk=boss.pk).update(role="admin")
        boss.refresh_from_db()
        client = agent_client(boss)
        # agents who are not supervisors may not export lists
        response = agent_client(desk.agents[0]).post(
            "/api/v1/kefu/exports", {"format": "csv"}, "application/json"
        )
        assert response.status_code == 403
        for body, field in (
            ({"format": "xls"}, "format"),
            ({"format": "csv", "filters": {"status": "lost"}}, "status"),
            ({"format": "csv", "filters": {"start": "05/12/2026"}}, "start"),
            ({"format": "csv", "filters": {"colour": "red"}}, "colour"),
        ):
            response = client.post("/api/v1/kefu/exports", body, "application/json")
            assert response.status_code == 400, body
            assert response.json()["field"] == field
        # when a supervisor exports this workgroup's conversations
        response = client.post(
            "/api/v1/kefu/exports",
            {"format": "csv", "filters": {"workgroup_id": desk.workgroup.pk}},
            "application/json",
        )
        assert response.status_code == 202, response.content
        job = response.json()
        assert job["state"] == "queued"
        assert job["total"] == 3
        # not ready yet
        assert client.get(f"/api/v1/kefu/exports/{job['id']}/download").status_code == 409
        # the worker's task writes it
        exports.export_job_run(job_id=job["id"])
        status = client.get(f"/api/v1/kefu/exports/{job['id']}").json()
        assert status["state"] == "done"
        assert status["progress"] == 100
        response = client.get(status["download_url"])
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == list(exports.LIST_COLUMNS)
        assert [int(r[0]) for r in rows[1:]] == [s.conversation_id for s in sessions]
        assert all(r[-1] == "2" for r in rows[1:])
        # only the requester downloads it
        assert agent_client(desk.agents[0]).get(status["download_url"]).status_code == 404
        # JSON carries the messages
        job = exports.export_job_create(
            user=boss, fmt="json", filters={"conversation_ids": [sessions[1].conversation_id]}
        )
        exports.export_job_run(job_id=job.pk)
        data = json.loads(client.get(f"/api/v1/kefu/exports/{job.pk}/download").content)
        texts = [
            m["text"] for m in data["conversations"][0]["messages"] if m["sender_type"] != "system"
        ]
        assert texts == ["question 1", "answer 1"]
        assert ExportJob.objects.get(pk=job.pk).done == 1


def test_a_real_worker_writes_the_export(acme):
    """The export job through the broker and a real Celery worker process."""
    from tests.servers import celery_worker_start
    from tests.waits import wait_until
    from weiyu.celery import app

    desk = make_desk(acme)
    with schema_context("acme"):
        session = _chat(desk, ["需要发票", "好的"])
        boss = make_agent(name="boss")
        User.objects.filter(pk=boss.pk).update(role="admin")
        boss.refresh_from_db()
    queue = unique("exports")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(queue=queue, name="exports", concurrency=1, WEIYU_SEMANTIC="off")
    try:
        with schema_context("acme"):
            client = agent_client(boss)
            job = client.post(
                "/api/v1/kefu/exports",
                {"format": "json", "filters": {"conversation_ids": [session.conversation_id]}},
                "application/json",
            ).json()
            done = wait_until(
                lambda: (
                    (s := client.get(f"/api/v1/kefu/exports/{job['id']}").json())["state"] == "done"
                    and s
                ),
                what="the worker's export",
            )
            data = json.loads(client.get(done["download_url"]).content)
            assert [c["conversation_id"] for c in data["conversations"]] == [
                session.conversation_id
            ]
    finally:
        worker.stop()
        app.conf.task_default_queue = previous


def test_old_exports_are_deleted_with_their_files_and_their_links_answer_404(acme):
    desk = make_desk(acme)
    with schema_context("acme"):
        session = _chat(desk, ["old question", "old answer"])
        boss = make_agent(name="boss")
        User.objects.filter(pk=boss.pk).update(role="admin")
        boss.refresh_from_db()
        client = agent_client(boss)
        filters = {"conversation_ids": [session.conversation_id]}
        old = exports.export_job_create(user=boss, fmt="csv", filters=filters)
        exports.export_job_run(job_id=old.pk)
        recent = exports.export_job_create(user=boss, fmt="csv", filters=filters)
        exports.export_job_run(job_id=recent.pk)
        waiting = exports.export_job_create(user=boss, fmt="csv", filters=filters)
        eight_days_ago = timezone.now() - datetime.timedelta(days=8)
        ExportJob.objects.filter(pk__in=[old.pk, waiting.pk]).update(created_at=eight_days_ago)
        assert client.get(f"/api/v1/kefu/exports/{old.pk}/download").status_code == 200

        assert exports.exports_purge() == 1

        assert client.get(f"/api/v1/kefu/exports/{old.pk}/download").status_code == 404
        assert client.get(f"/api/v1/kefu/exports/{old.pk}").status_code == 404
        assert client.get(f"/api/v1/kefu/exports/{recent.pk}/download").status_code == 200
        # a job still waiting for a worker is left alone
        assert client.get(f"/api/v1/kefu/exports/{waiting.pk}").json()["state"] == "queued"
