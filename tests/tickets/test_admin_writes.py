"""The ticket back office writes through services: an SLA policy is saved with its workgroups and
targets, categories and tickets are deleted, and what the admin's history records still works."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django_tenants.utils import schema_context

from kefu.models import Workgroup
from org.models import User
from tests.conftest import agent_client, make_agent, unique
from tickets.models import Category, Comment, SlaClock, SlaPolicy, SlaTarget, Ticket
from tickets.services import tickets as ticket_services

INLINE = {"MIN_NUM_FORMS": 0, "MAX_NUM_FORMS": 1000}


def _targets(initial: int, rows: list[dict]) -> dict:
    data = {"targets-TOTAL_FORMS": len(rows), "targets-INITIAL_FORMS": initial}
    data |= {f"targets-{k}": v for k, v in INLINE.items()}
    for i, row in enumerate(rows):
        data |= {f"targets-{i}-{k}": v for k, v in row.items()}
    return data


def _boss() -> User:
    return User.objects.get(username="bob")  # the tenant admin


def test_an_sla_policy_is_saved_with_its_workgroups_and_targets(acme):
    with schema_context(acme.schema_name):
        workgroup = Workgroup.objects.create(name=unique("wg"))
        client = agent_client(_boss())
    name = unique("policy")
    policy_fields = {
        "name": name,
        "warning_percent": 80,
        "escalate_lead_after_s": 0,
        "escalate_supervisor_after_s": 3600,
        "workgroups": [workgroup.pk],
    }
    # when the admin adds a policy with one target
    added = client.post(
        "/admin/tickets/slapolicy/add/",
        policy_fields | _targets(0, [{"priority": "high", "first_response_s": 600}]),
    )
    # then the policy, its workgroup and its target are there
    assert added.status_code == 302, added.content.decode()[:2000]
    with schema_context(acme.schema_name):
        policy = SlaPolicy.objects.get(name=name)
        assert list(policy.workgroups.values_list("pk", flat=True)) == [workgroup.pk]
        high = SlaTarget.objects.get(policy=policy)
        assert (high.priority, high.first_response_s) == ("high", 600)
        history = LogEntry.objects.get(
            content_type__app_label="tickets",
            content_type__model="slapolicy",
            object_id=str(policy.pk),
        )
        assert "SLA target" in history.get_change_message()
    # when the admin drops that target for another and frees the workgroup
    changed = client.post(
        f"/admin/tickets/slapolicy/{policy.pk}/change/",
        policy_fields
        | {"workgroups": []}
        | _targets(
            1,
            [
                {"id": high.pk, "policy": policy.pk, "priority": "high", "DELETE": "on"},
                {"priority": "low", "resolution_s": 86400},
            ],
        ),
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    with schema_context(acme.schema_name):
        assert not policy.workgroups.exists()
        assert list(
            SlaTarget.objects.filter(policy=policy).values_list("priority", "resolution_s")
        ) == [("low", 86400)]
    # when the admin deletes the policy
    client.post(
        "/admin/tickets/slapolicy/",
        {"action": "delete_selected", "_selected_action": [policy.pk], "post": "yes"},
    )
    with schema_context(acme.schema_name):
        assert not SlaPolicy.objects.filter(pk=policy.pk).exists()
        assert not SlaTarget.objects.filter(policy_id=policy.pk).exists()


def test_categories_and_tickets_are_saved_and_deleted_in_the_back_office(acme):
    with schema_context(acme.schema_name):
        agent = make_agent()
        ticket = ticket_services.ticket_create(
            subject="Leaking tap", body="Drip drip.", source="inbox", creator=agent
        )
        client = agent_client(_boss())
    name = unique("cat")
    assert client.post("/admin/tickets/category/add/", {"name": name}).status_code == 302
    with schema_context(acme.schema_name):
        category = Category.objects.get(name=name)
    client.post(f"/admin/tickets/category/{category.pk}/delete/", {"post": "yes"})
    deleted = client.post(
        "/admin/tickets/ticket/",
        {"action": "delete_selected", "_selected_action": [ticket.pk], "post": "yes"},
    )
    assert deleted.status_code == 302
    with schema_context(acme.schema_name):
        assert not Category.objects.filter(pk=category.pk).exists()
        assert not Ticket.objects.filter(pk=ticket.pk).exists()
        assert not Comment.objects.filter(ticket_id=ticket.pk).exists()
        assert not SlaClock.objects.filter(ticket_id=ticket.pk).exists()
