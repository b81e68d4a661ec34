"""Privacy (docs/security.md, "Privacy"): a visitor's data exported and erased on request,
and the tenant's retention of closed conversations."""

from __future__ import annotations

import datetime as dt
import io

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from django_tenants.utils import schema_context

from im.models import Message
from kefu.models import RetentionPolicy, Session, Visitor, VisitorNote, VisitorTag
from kefu.senders import agent_sender
from kefu.services import files as visitor_files
from kefu.services import messages
from kefu.services import sessions as kefu_sessions
from org.models import AuditEntry, User
from tests.conftest import agent_client, make_desk, make_visitor, unique
from tickets.models import Ticket
from tickets.services import tickets as ticket_services


def _admin() -> User:
    return User.objects.create_user(username=unique("boss"), password="x", role="admin")


def _customer_with_history(tenant):
    """A visitor with contact details, a served chat with a file, a note, a tag and a ticket."""
    desk = make_desk(tenant)
    with schema_context(tenant.schema_name):
        visitor, _token = make_visitor(desk)
        Visitor.objects.filter(pk=visitor.pk).update(
            name="Mei Chen", email="mei@example.com", phone="+86 138 0000 0000"
        )
        visitor.refresh_from_db()
        message, _ = messages.visitor_message_send(
            visitor=visitor,
            conversation_id=None,
            content="My address is 12 Garden Road",
            client_msg_id=unique("m"),
        )
        cid = message.conversation_id
        attachment = visitor_files.visitor_attachment_upload(
            visitor=visitor,
            upload=SimpleUploadedFile("id.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf"),
            kind="file",
            conversation_id=cid,
        )
        messages.visitor_message_send(
            visitor=visitor,
            conversation_id=cid,
            content=None,
            client_msg_id=unique("f"),
            msg_type="file",
            attachment_id=attachment.pk,
        )
        agent = desk.agents[0]
        messages.agent_message_send(
            user=agent, conversation_id=cid, content="Thanks Mei!", client_msg_id=unique("a")
        )
        VisitorNote.objects.create(visitor=visitor, author=agent, text="Prefers mornings")
        visitor.tags.add(VisitorTag.objects.get_or_create(name=unique("vip"))[0])
        ticket_services.ticket_create(
            subject="Refund for order 881",
            body="Please refund to my card",
            source="widget",
            requester_visitor=visitor,
        )
    return desk, visitor, cid, attachment


def test_an_administrator_exports_everything_about_a_visitor(acme):
    desk, visitor, cid, _attachment = _customer_with_history(acme)
    with schema_context("acme"):
        boss = _admin()
    answer = agent_client(boss).get(f"/api/v1/kefu/visitors/{visitor.pk}/export")
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == f'attachment; filename="visitor-{visitor.pk}.json"'
    document = answer.json()
    assert document["visitor"]["email"] == "mei@example.com"
    assert document["visitor"]["phone"] == "+86 138 0000 0000"
    assert [n["text"] for n in document["notes"]] == ["Prefers mornings"]
    (conversation,) = document["conversations"]
    assert conversation["id"] == cid
    contents = [m["content"] for m in conversation["messages"]]
    assert "My address is 12 Garden Road" in contents
    assert "Thanks Mei!" in contents
    assert [m["file"]["name"] for m in conversation["messages"] if m["file"]] == ["id.pdf"]
    assert document["tickets"][0]["subject"] == "Refund for order 881"
    assert document["tickets"][0]["comments"][0]["body"] == "Please refund to my card"
    # an agent may not, and the export is in the audit log
    agent_answer = agent_client(desk.agents[0]).get(f"/api/v1/kefu/visitors/{visitor.pk}/export")
    assert agent_answer.status_code == 403
    with schema_context("acme"):
        assert AuditEntry.objects.filter(
            additional_data__event="export", object_pk=str(visitor.pk)
        ).exists()


def test_erasure_removes_the_person_and_keeps_the_statistics(acme):
    desk, visitor, cid, attachment = _customer_with_history(acme)
    with schema_context("acme"):
        boss = _admin()
        file_name = attachment.file.name
        session = Session.objects.get(conversation_id=cid)
        kefu_sessions.session_close(session_id=session.pk, closed_by=agent_sender(desk.agents[0]))
        Session.objects.filter(pk=session.pk).update(csat_score=5, csat_comment="Mei was happy")
        assert default_storage.exists(file_name)
    answer = agent_client(boss).post(f"/api/v1/kefu/visitors/{visitor.pk}/erase")
    assert answer.status_code == 200
    assert answer.json() == {
        "conversations": 1,
        "messages": 3,
        "channels": 0,
        "tickets": 1,
        "scheduled_messages": 0,
    }
    with schema_context("acme"):
        erased = Visitor.objects.get(pk=visitor.pk)
        assert erased.name == f"Erased visitor #{visitor.pk}"
        assert (erased.email, erased.phone, erased.ip_address) == ("", "", None)
        assert erased.erased_at is not None
        assert not erased.tags.exists()
        assert not erased.notes.exists()
        texts = Message.objects.filter(conversation_id=cid).exclude(msg_type="system")
        assert {m.content for m in texts} == {""}
        assert all(m.meta == {"erased": True} and m.attachment_id is None for m in texts)
        assert "Mei" not in " ".join(
            Message.objects.filter(conversation_id=cid).values_list("sender_name", flat=True)
        )
        # the file is gone from the storage
        assert not default_storage.exists(file_name)
        # statistics keep the session, its times and score, without the comment
        kept = Session.objects.get(pk=session.pk)
        assert (kept.csat_score, kept.csat_comment, kept.closed_at is not None) == (5, "", True)
        ticket = Ticket.objects.get(requester_visitor=visitor)
        assert "Refund" not in ticket.subject
        assert {c.body for c in ticket.comments.all()} == {""}
    # the inbox's history shows the messages as removed
    history = agent_client(desk.agents[0]).get(f"/api/v1/im/conversations/{cid}/messages")
    assert history.status_code == 200
    shown = [m for m in history.json()["messages"] if m["msg_type"] != "system"]
    assert shown
    assert all(m["meta"] == {"erased": True} and m["content"] == "" for m in shown)


def test_only_administrators_erase(acme):
    desk, visitor, _cid, _attachment = _customer_with_history(acme)
    answer = agent_client(desk.agents[0]).post(f"/api/v1/kefu/visitors/{visitor.pk}/erase")
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    with schema_context("acme"):
        assert Visitor.objects.get(pk=visitor.pk).email == "mei@example.com"
        boss = _admin()
    assert agent_client(boss).post("/api/v1/kefu/visitors/999999/erase").status_code == 404


def _closed_days_ago(tenant, days: int) -> tuple[Visitor, int]:
    desk, visitor, cid, _attachment = _customer_with_history(tenant)
    with schema_context(tenant.schema_name):
        session = Session.objects.get(conversation_id=cid)
        kefu_sessions.session_close(session_id=session.pk, closed_by=agent_sender(desk.agents[0]))
        Session.objects.filter(pk=session.pk).update(
            closed_at=timezone.now() - dt.timedelta(days=days)
        )
    return visitor, cid


def test_retention_dry_run_counts_and_the_real_run_anonymises_old_conversations(globex):
    _old_visitor, old_cid = _closed_days_ago(globex, 40)
    _recent_visitor, recent_cid = _closed_days_ago(globex, 5)
    with schema_context("globex"):
        policy = RetentionPolicy.current()
        policy.days, policy.action = 30, RetentionPolicy.Action.ANONYMISE
        policy.save()
    try:
        out = io.StringIO()
        call_command("retention", "--schema", "globex", "--dry-run", stdout=out)
        assert "would anonymise" in out.getvalue()
        with schema_context("globex"):
            due = [s.conversation_id for s in Session.objects.filter(anonymised_at=None)]
            assert old_cid in due
            assert Message.objects.filter(conversation_id=old_cid, content__contains="Garden")
        call_command("retention", "--schema", "globex", stdout=io.StringIO())
        with schema_context("globex"):
            assert not Message.objects.filter(conversation_id=old_cid, content__contains="Garden")
            assert Message.objects.filter(conversation_id=recent_cid, content__contains="Garden")
            assert Session.objects.get(conversation_id=old_cid).anonymised_at is not None
        # nothing more to do the second time
        again = io.StringIO()
        call_command("retention", "--schema", "globex", "--dry-run", stdout=again)
        assert "would anonymise 0 conversations" in again.getvalue()
    finally:
        with schema_context("globex"):
            RetentionPolicy.objects.update(days=0)


def test_retention_can_delete_old_conversations(globex):
    _visitor, old_cid = _closed_days_ago(globex, 400)
    with schema_context("globex"):
        RetentionPolicy.current()
        RetentionPolicy.objects.update(days=365, action=RetentionPolicy.Action.DELETE)
    try:
        call_command("retention", "--schema", "globex", stdout=io.StringIO())
        with schema_context("globex"):
            assert not Session.objects.filter(conversation_id=old_cid).exists()
            assert not Message.objects.filter(conversation_id=old_cid).exists()
    finally:
        with schema_context("globex"):
            RetentionPolicy.objects.update(days=0, action=RetentionPolicy.Action.ANONYMISE)


def test_the_back_office_erases_after_a_confirmation(acme):
    _desk, visitor, _cid, _attachment = _customer_with_history(acme)
    with schema_context("acme"):
        boss = User.objects.create_user(
            username=unique("boss"), password="x", role="admin", is_staff=True, is_superuser=True
        )
    client = agent_client(boss)
    url = "/admin/kefu/visitor/"
    asked = client.post(url, {"action": "erase_personal_data", "_selected_action": [visitor.pk]})
    assert asked.status_code == 200
    assert "This cannot be undone." in asked.content.decode()
    with schema_context("acme"):
        assert Visitor.objects.get(pk=visitor.pk).erased_at is None
    done = client.post(
        url,
        {"action": "erase_personal_data", "_selected_action": [visitor.pk], "confirm": "yes"},
        follow=True,
    )
    assert "The personal data of 1 visitor was erased." in done.content.decode()
    with schema_context("acme"):
        assert Visitor.objects.get(pk=visitor.pk).erased_at is not None
    exported = client.post(
        url, {"action": "export_personal_data", "_selected_action": [visitor.pk]}
    )
    assert exported["Content-Type"].startswith("application/json")
    assert b"mei@example.com" not in exported.content
