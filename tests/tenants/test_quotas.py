"""Plans and quotas (TEN-3): each limit refuses with a clear error where a user meets it — the
back office, the API, the widget — and the admins see usage beside the plan; suspension and the
end of a trial."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from kefu.models import Channel, Session
from kefu.services import channels as kefu_channels
from kefu.services import messages
from org.models import User
from tenants import quotas, services
from tenants.models import Plan, Tenant, Usage
from tests.conftest import PASSWORD, agent_client, make_desk, make_visitor, unique
from weiyu.errors import ServiceError


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    return out.getvalue()


PNG = _png()


def usage_reset(schema: str) -> None:
    """Forget the Redis counters of ``schema`` (Redis outlives the test database)."""
    r = quotas._redis()
    for key in r.scan_iter(f"{settings.REDIS_KEY_PREFIX}:usage:{schema}:*"):
        r.delete(key)


@pytest.fixture(scope="module")
def small(django_db_setup, django_db_blocker):
    """A tenant on a plan of its own (limits set by each test), with its administrator."""
    with django_db_blocker.unblock():
        schema = unique("quota")
        tenant = services.tenant_create(
            name="Small Co",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="boss",
            admin_password=PASSWORD,
        )
        tenant.plan = Plan.objects.create(code=unique("small"), name="Small")
        tenant.save()
        usage_reset(schema)
        return tenant


def plan_set(tenant: Tenant, **limits: object) -> None:
    Plan.objects.filter(pk=tenant.plan_id).update(
        **{**dict.fromkeys(quotas.PLAN_FIELD.values()), "feature_ai": True, **limits}
    )
    quotas.forget()


def boss(tenant: Tenant) -> Client:
    with schema_context(tenant.schema_name):
        user = User.objects.get(username="boss")
    return agent_client(user, tenant=tenant.schema_name)


def test_seats_add_user_goes_back_to_the_list_saying_the_plan_is_full(small):
    with schema_context(small.schema_name):
        seats = User.objects.filter(is_active=True).count()
    web = boss(small)
    # given a plan whose seats are all taken
    plan_set(small, seats=seats)
    # when the administrator opens "Add user"
    response = web.get("/admin/org/user/add/", follow=True)
    # then they are back on the list, told why
    assert response.redirect_chain[-1][0] == "/admin/org/user/"
    assert f"allows {seats} seats (active users), and they are used up" in (
        response.content.decode()
    )
    # and with one seat more the form opens
    plan_set(small, seats=seats + 1)
    assert web.get("/admin/org/user/add/").status_code == 200


def test_seats_a_disabled_user_made_active_again_takes_a_seat(small):
    with schema_context(small.schema_name):
        former = User.objects.create_user(username=unique("former"), is_active=False)
        seats = User.objects.filter(is_active=True).count()
    web = boss(small)
    plan_set(small, seats=seats)
    page = web.get(f"/admin/org/user/{former.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        {
            "is_active": "on",
            "user_permissions": [],
            "groups": [],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        }
    )
    for prefix in ("departments", "agentstate"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = web.post(f"/admin/org/user/{former.pk}/change/", data)
    assert response.status_code == 200
    assert "seats (active users), and they are used up" in response.content.decode()
    with schema_context(small.schema_name):
        assert not User.objects.get(pk=former.pk).is_active
    plan_set(small)


def test_widget_channels_refused_at_the_limit_in_the_getting_started_page_and_admin(small):
    web = boss(small)
    plan_set(small, widget_channels=0)
    # the getting-started page's "Create channel" shows the reason
    response = web.post("/admin/onboarding/", {"name": "Our site"})
    assert response.status_code == 400
    assert "allows 0 widget channels, and they are used up" in response.content.decode()
    with schema_context(small.schema_name):
        assert not Channel.objects.filter(name="Our site").exists()
    # "Add channel" in the back office goes back to the list, saying so
    response = web.get("/admin/kefu/channel/add/", follow=True)
    assert response.redirect_chain[-1][0] == "/admin/kefu/channel/"
    assert "widget channels, and they are used up" in response.content.decode()
    # one allowed: the first is made, the second refused by the service
    plan_set(small, widget_channels=1)
    assert web.post("/admin/onboarding/", {"name": "Our site"}).status_code == 303
    with schema_context(small.schema_name):
        user = User.objects.get(username="boss")
        with pytest.raises(ServiceError) as refused:
            kefu_channels.channel_start(name="Second", user=user)
    assert refused.value.code == "quota_exceeded"
    assert refused.value.http_status == 402
    assert refused.value.field == "widget_channels"


def test_conversations_of_the_month_a_visitor_over_the_limit_is_offered_to_leave_a_message(small):
    usage_reset(small.schema_name)
    plan_set(small, conversations_per_month=1)
    desk = make_desk(small, agents=1)
    first, _ = make_visitor(desk)
    second, token = make_visitor(desk)
    with schema_context(small.schema_name):
        # given one conversation this month, counted once written
        messages.visitor_message_send(
            visitor=first, conversation_id=None, content="hi", client_msg_id=unique("c")
        )
        assert quotas.used("conversations") == 1
        # when another visitor writes, the conversation is refused with the quota's code
        with pytest.raises(ServiceError) as refused:
            messages.visitor_message_send(
                visitor=second, conversation_id=None, content="hello?", client_msg_id=unique("c")
            )
        assert refused.value.code == "quota_exceeded"
        assert not Session.objects.filter(visitor=second).exists()
    # and the widget's session says nobody answers, so the widget offers the leave-a-message form
    web = Client(HTTP_HOST=f"{small.schema_name}.localhost")
    body = web.post(
        "/api/v1/widget/session",
        {"channel": desk.channel.public_key, "token": token},
        content_type="application/json",
    ).json()
    assert body["agents_online"] is False
    # where the message is taken (a ticket)
    left = web.post(
        "/api/v1/widget/tickets",
        {"token": token, "body": "Please call me back", "email": "v@example.com"},
        content_type="application/json",
    )
    assert left.status_code == 201, left.content
    # and the monthly count reaches the Usage row at the roll-up, even after Redis lost it
    with schema_context(small.schema_name):
        quotas.usage_rollup(small)
    assert Usage.objects.get(tenant=small, month=quotas.month_start()).conversations == 1
    usage_reset(small.schema_name)
    with schema_context(small.schema_name):
        quotas.usage_rollup(small)
        assert quotas.used("conversations") == 1
    plan_set(small)


def test_storage_an_upload_over_the_plan_is_refused_with_402(small):
    plan_set(small, storage_bytes=0)
    desk = make_desk(small, agents=1)
    _visitor, token = make_visitor(desk)
    web = Client(HTTP_HOST=f"{small.schema_name}.localhost", HTTP_ACCEPT_LANGUAGE="en")
    upload = io.BytesIO(PNG)
    upload.name = "dot.png"
    response = web.post(
        "/api/v1/widget/files", data={"file": upload, "kind": "image", "token": token}
    )
    assert response.status_code == 402
    assert response.json()["error"] == "quota_exceeded"
    assert response.json()["field"] == "storage_bytes"
    assert "allows 0\xa0bytes of stored files" in response.json()["detail"]
    # with room for it, the same upload is stored and counted
    plan_set(small, storage_bytes=len(PNG))
    upload.seek(0)
    response = web.post(
        "/api/v1/widget/files", data={"file": upload, "kind": "image", "token": token}
    )
    assert response.status_code == 201, response.content
    with schema_context(small.schema_name):
        assert quotas.total("storage_bytes") == len(PNG)
    plan_set(small)


def test_the_admins_see_the_plan_and_the_usage(small):
    usage_reset(small.schema_name)
    plan_set(small, seats=10, conversations_per_month=50)
    quotas.count("conversations", 3, schema=small.schema_name)
    page = boss(small).get("/admin/plan/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="plan-name">Small<' in html
    assert 'data-quota="conversations"' in html
    assert '<td class="used">3</td>' in html
    assert '<td class="limit">50</td>' in html
    # and the platform admin sees it on the tenant's page
    connection.set_schema_to_public()  # the request above left the connection in the tenant's
    root = User.objects.create_user(
        username=unique("root"), password=PASSWORD, is_staff=True, is_superuser=True
    )
    platform = Client(HTTP_HOST="localhost", HTTP_ACCEPT_LANGUAGE="en")
    assert platform.login(username=root.username, password=PASSWORD)
    response = platform.get(f"/admin/tenants/tenant/{small.pk}/change/")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    html = response.content.decode()
    assert 'id="tenant-usage"' in html
    assert '<tr data-quota="conversations"><th>conversations this month</th>' in html
    plan_set(small)


def test_suspended_tenant_staff_see_why_and_the_widget_still_takes_messages(small):
    desk = make_desk(small, agents=1)
    _visitor, token = make_visitor(desk)
    web = boss(small)
    services.tenants_suspend(tenant_ids=[small.pk])
    try:
        # staff get a page saying the workspace is suspended by the platform
        page = web.get("/admin/")
        assert page.status_code == 403
        assert "is suspended" in page.content.decode()
        assert "suspended by the platform" in page.content.decode()
        assert web.get("/inbox/").status_code == 403
        # the API answers with a code
        api = web.get("/api/v1/kefu/queue")
        assert api.status_code == 403
        assert api.json()["error"] == "suspended"
        # the widget still loads and offers to leave a message
        visitor = Client(HTTP_HOST=f"{small.schema_name}.localhost")
        assert visitor.get("/widget.js").status_code == 200
        body = visitor.post(
            "/api/v1/widget/session",
            {"channel": desk.channel.public_key, "token": token},
            content_type="application/json",
        ).json()
        assert body["agents_online"] is False
        left = visitor.post(
            "/api/v1/widget/tickets",
            {"token": token, "body": "Are you there?", "email": "v@example.com"},
            content_type="application/json",
        )
        assert left.status_code == 201, left.content
    finally:
        services.tenants_resume(tenant_ids=[small.pk])
    assert web.get("/admin/").status_code == 200


def test_a_trial_that_ended_suspends_the_tenant_and_resuming_lifts_it(small):
    from django.utils import timezone

    Tenant.objects.filter(pk=small.pk).update(trial_ends_at=timezone.now())
    # when the beat runs
    from tenants.tasks import trials_expire_task

    assert trials_expire_task() >= 1
    small.refresh_from_db()
    assert (small.is_active, small.suspended_reason) == (False, "trial_ended")
    page = boss(small).get("/admin/")
    assert page.status_code == 403
    assert "The trial of this workspace has ended" in page.content.decode()
    # the platform resumes it: the trial is lifted, the next beat leaves it alone
    services.tenants_resume(tenant_ids=[small.pk])
    assert trials_expire_task() == 0
    small.refresh_from_db()
    assert small.is_active
    assert small.trial_ends_at is None


def test_ai_answers_follow_the_plans_switch_and_monthly_limit(small):
    usage_reset(small.schema_name)
    with schema_context(small.schema_name):
        plan_set(small, ai_answers_per_month=2)
        assert quotas.ai_allowed()
        quotas.count("ai_answers", 2)
        assert not quotas.ai_allowed()  # the month's answers are used up
        usage_reset(small.schema_name)
        plan_set(small, feature_ai=False)
        assert not quotas.ai_allowed()  # the plan has no AI answers at all
    plan_set(small)
