"""A visitor on the demo page talks to the robot (answers from the imported zaragoza FAQ), then
asks for a person; the agent gets the whole transcript. When unsure, the robot offers "Did you
mean" choices, and a click on one is answered. Real Chromium, daphne and a Celery worker.
"""

from __future__ import annotations

from importlib import resources
from io import StringIO

import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from kbase import services as kb_services
from kbase.models import KnowledgeBase
from kefu.models import Channel
from tests.conftest import unique
from tests.e2e.test_live_chat import TIMEOUT, _open_widget, _say, _sign_in, fresh_desk
from tests.servers import celery_worker_start, daphne_start

pytestmark = pytest.mark.e2e

FAQ = resources.files("zaragoza_construction_faq") / "data" / "faq-en.json"
QUESTION = "Can neighbours stop my building permit?"
ANSWER_START = "Neighbours have the right to submit opinions but cannot alone stop a permit."


@pytest.fixture
def robot_site(django_db_blocker):
    """A fresh tenant whose only channel is robot-first, with the zaragoza FAQ imported; its own
    daphne and worker on a queue of their own."""
    with django_db_blocker.unblock():
        desk = fresh_desk("robotsite")
        call_command(
            "kbase_import", str(FAQ), "--tenant", desk.tenant.schema_name, "--kb", "Zaragoza FAQ",
            "--create", "--public", "--no-progress", stdout=StringIO(), stderr=StringIO(),
        )  # fmt: skip
        with schema_context(desk.tenant.schema_name):
            Channel.objects.filter(pk=desk.channel.pk).update(
                mode=Channel.Mode.WORKGROUP, robot_name="Robo"
            )
    queue = unique("robot-e2e")
    worker = celery_worker_start(queue=queue, name="robot-e2e", concurrency=1, WEIYU_SEMANTIC="off")
    server = daphne_start(name="robot-e2e-daphne", CELERY_QUEUE=queue)
    yield desk, server
    server.stop()
    worker.stop()


def test_visitor_asks_the_robot_then_a_person_who_sees_the_transcript(browser, robot_site):
    desk, server = robot_site
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="en-US")
    agent_ctx = browser.new_context(locale="en-US")
    try:
        inbox = agent_ctx.new_page()
        _sign_in(inbox, server.url(host, "/inbox/login/"), desk.agents[0].username)
        _page, widget = _open_widget(visitor_ctx, server.url(host, "/"))
        # the robot greets before anything is asked
        greeting = widget.locator("#empty")
        greeting.wait_for(timeout=TIMEOUT)
        assert greeting.inner_text().startswith("Hello! I am the assistant.")

        # when the visitor asks a question of the imported FAQ
        _say(widget, QUESTION)

        # then the robot answers with the FAQ's answer and shows where it comes from
        answer = widget.locator("#messages .msg.robot", has_text=ANSWER_START)
        answer.wait_for(timeout=TIMEOUT)
        assert answer.locator(".msg-sender").inner_text() == "Robo"
        assert answer.locator(".robot-sources").inner_text() == f"Source: {QUESTION}"
        # and the visitor can rate it
        answer.locator(".rate-btn", has_text="Helpful").first.click()
        widget.locator(
            "#messages .msg.robot .rate-btn[data-helpful='true'][aria-pressed='true']"
        ).wait_for(timeout=TIMEOUT)
        # nobody in the inbox was bothered yet
        assert inbox.locator(".conv-item").count() == 0

        # when the visitor asks for a person
        widget.locator("#talk-to-person").click()

        # then they are told, and the button goes away
        widget.locator("#messages .msg.system", has_text="Connecting you to a colleague").wait_for(
            timeout=TIMEOUT
        )
        widget.locator("#robot-bar").wait_for(state="hidden", timeout=TIMEOUT)

        # and the agent gets the conversation with the whole transcript
        inbox.locator(".conv-item").first.click(timeout=TIMEOUT)
        thread = inbox.locator("#messages")
        thread.locator(".msg", has_text=QUESTION).first.wait_for(timeout=TIMEOUT)
        robot_line = thread.locator(".msg.robot", has_text=ANSWER_START)
        robot_line.wait_for(timeout=TIMEOUT)
        note = robot_line.locator(".robot-note").inner_text()
        assert note == f"Source: {QUESTION} · Rated helpful"

        # and the agent's reply reaches the visitor
        inbox.fill("#composer", "Hello, I can help with your permit.")
        inbox.click("#send")
        widget.locator("#messages .msg", has_text="I can help with your permit").wait_for(
            timeout=TIMEOUT
        )
    finally:
        visitor_ctx.close()
        agent_ctx.close()


PARCELS = [
    ("Europe", "Parcels to Europe arrive in five to eight working days."),
    ("Asia", "Parcels to Asia arrive in four to six working days."),
]


def test_an_unsure_robot_offers_choices_and_answers_the_one_clicked(browser, robot_site):
    desk, server = robot_site
    with schema_context(desk.tenant.schema_name):
        kb = KnowledgeBase.objects.create(name="Parcels", is_public=True)
        for region, answer in PARCELS:
            kb_services.faq_upsert(
                kb=kb,
                question=f"How long does parcel delivery to {region} take?",
                answer=answer,
                index_later=False,
            )
    host = f"{desk.tenant.schema_name}.localhost"
    visitor_ctx = browser.new_context(locale="en-US")
    try:
        _page, widget = _open_widget(visitor_ctx, server.url(host, "/"))

        # when the visitor asks something two items answer equally well
        _say(widget, "parcel delivery abroad")

        # then the robot asks which one they mean, with a button for each
        unsure = widget.locator("#messages .msg.robot", has_text="Did you mean one of these?")
        unsure.wait_for(timeout=TIMEOUT)
        asia = unsure.locator(".suggestion-btn", has_text="to Asia")
        asia.wait_for(timeout=TIMEOUT)
        assert unsure.locator(".suggestion-btn", has_text="to Europe").count() == 1
        # and no rating buttons: nothing was answered yet
        assert unsure.locator(".rate-btn").count() == 0

        # when the visitor clicks one
        asia.click()

        # then it is sent as their question and the robot answers it, with its source
        widget.locator(
            "#messages .msg.mine", has_text="How long does parcel delivery to Asia take?"
        ).wait_for(timeout=TIMEOUT)
        answer = widget.locator("#messages .msg.robot", has_text=PARCELS[1][1])
        answer.wait_for(timeout=TIMEOUT)
        assert answer.locator(".robot-sources").inner_text() == (
            "Source: How long does parcel delivery to Asia take?"
        )
        answer.locator(".rate-btn", has_text="Helpful").first.wait_for(timeout=TIMEOUT)
    finally:
        visitor_ctx.close()
