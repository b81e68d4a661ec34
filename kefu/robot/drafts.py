"""LLM drafts of a reply for agents (``assist.draft`` frames)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from celery import shared_task
from django.db import connection, transaction
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im import selectors as im_selectors
from im.models import Message
from kbase import llm
from kbase.search import search
from kefu import supervision
from kefu.models import Session
from kefu.robot.answers import TOP_HITS, source_payload
from kefu.robot.streaming import STREAM_INTERVAL_S
from kefu.senders import language_for
from org.models import User
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_now


def assist_question(*, conversation_id: int) -> str:
    """What the visitor asked last: their text messages since the last staff or robot reply
    (at most three, oldest first), joined by new lines; empty when there are none."""
    rows = list(
        Message.objects.filter(conversation_id=conversation_id, internal=False)
        .exclude(msg_type=Message.Type.SYSTEM)
        .order_by("-seq")
        .values_list("sender_type", "msg_type", "content")[:20]
    )
    asked: list[str] = []
    for sender_type, msg_type, content in rows:
        if sender_type != Message.SenderType.VISITOR:
            if asked:
                break
            continue
        if msg_type == Message.Type.TEXT and content:
            asked.append(content)
        if len(asked) == 3:
            break
    return "\n".join(reversed(asked))


def assist_draft_request(*, user: Any, conversation_id: object) -> str:
    """An agent asks for an LLM draft reply in a customer conversation they are in. Returns the
    ``request_id`` that the ``assist.draft`` frames will carry; a worker writes the draft.

    Raises ``ServiceError``: ``invalid``, ``not_found`` (not their customer conversation),
    ``not_configured`` (no LLM provider), ``nothing_to_answer`` (no visitor question yet).
    """
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    im_selectors.participant_get(conversation_id=conversation_id, member_key=user.member_key)
    if not Session.objects.filter(conversation_id=conversation_id).exists():
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    if not llm.configured():
        raise ServiceError(
            "not_configured", _("No AI provider is set up. An admin can add one in Back office.")
        )
    if not assist_question(conversation_id=conversation_id):
        raise ServiceError("nothing_to_answer", _("The visitor has not asked anything yet."))
    request_id = secrets.token_hex(8)
    schema, user_id = connection.schema_name, user.pk

    def enqueue() -> None:
        assist_draft_task.delay(schema, user_id, conversation_id, request_id)

    transaction.on_commit(enqueue)
    return request_id


def assist_draft(*, user_id: int, conversation_id: int, request_id: str) -> None:
    """Write the draft (the body of ``assist_draft_task``): the visitor's last question answered
    from every knowledge base the agent may see (internal ones too; not those restricted to
    workgroups they are not in, :mod:`kefu.supervision`) by the LLM, streamed to the agent as
    ``assist.draft`` frames ``{"conversation_id", "request_id", "text", "done", "sources",
    "error"}``; the last one has ``done`` true, and ``error`` set when no draft could be made."""
    key = f"u:{user_id}"
    question = assist_question(conversation_id=conversation_id)
    session = (
        Session.objects.select_related("visitor").filter(conversation_id=conversation_id).first()
    )
    language = language_for(session.visitor) if session is not None else "zh-hans"
    frame: dict[str, Any] = {
        "type": "assist.draft",
        "conversation_id": conversation_id,
        "request_id": request_id,
        "text": "",
        "done": False,
        "sources": [],
        "error": None,
    }
    last = [0.0]

    def on_delta(delta: str) -> None:
        frame["text"] += delta
        now = time.monotonic()
        if now - last[0] >= STREAM_INTERVAL_S:
            last[0] = now
            publish_event_now(dict(frame), [key])

    reader = User.objects.filter(pk=user_id).first()
    hidden = supervision.hidden_knowledge_base_ids(reader) if reader is not None else set()
    hits = search(q=question, limit=TOP_HITS, exclude_kb_ids=hidden) if question else []
    try:
        result = llm.grounded_answer(question, hits, language=language, on_delta=on_delta)
    except llm.LlmUnavailableError:
        frame["error"] = _("The AI provider did not answer. Try again later.")
    else:
        if result.unknown:
            frame["error"] = _("The knowledge base does not cover this question.")
            frame["text"] = ""
        else:
            frame["text"] = result.text
            frame["sources"] = [source_payload(hits[n - 1]) for n in result.cited]
    frame["done"] = True
    publish_event_now(frame, [key])


# Defined beside the service it runs, under its historic name; kefu/tasks.py re-exports it.
@shared_task(name="kefu.tasks.assist_draft_task", acks_late=True)
def assist_draft_task(schema: str, user_id: int, conversation_id: int, request_id: str) -> None:
    """Write an LLM draft reply for an agent (:func:`assist_draft`), streamed to the agent's
    sockets as ``assist.draft`` frames."""
    with schema_context(schema):
        assist_draft(user_id=user_id, conversation_id=conversation_id, request_id=request_id)
