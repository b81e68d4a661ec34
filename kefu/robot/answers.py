"""The visitor's turn in a robot session, and the robot's answer (steps 1-3 of
:mod:`kefu.robot`)."""

from __future__ import annotations

import logging
import re
from typing import Any

import nh3
from celery import shared_task
from django.db import connection, transaction
from django.db.models import F
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im import senders as im_senders
from im.models import Message
from im.services import messages as im_messages
from kbase import llm, text
from kbase.models import KnowledgeBase, RobotQuestion
from kbase.services import robot_question_collect
from kefu import supervision
from kefu.models import Channel, Session
from kefu.robot import decision as decision_module
from kefu.robot.decision import Decision, consider
from kefu.robot.handover import handover
from kefu.robot.streaming import AnswerStreamer
from kefu.senders import robot_language
from kefu.senders import robot_sender_for as sender_for
from tenants import quotas

logger = logging.getLogger(__name__)

#: hits shown to the LLM, and offered as sources
TOP_HITS = decision_module.TOP_HITS


#: characters of an article quoted when the robot answers with an excerpt
EXCERPT_CHARS = 600


#: a message longer than this is a question, even if it contains a hand-over phrase
PHRASE_MAX_CHARS = 40


def _phrases(channel: Channel) -> list[str]:
    return [p.strip().lower() for p in channel.handover_phrases.split(",") if p.strip()]


def asks_for_person(channel: Channel, content: str) -> bool:
    """Whether a short message (≤ :data:`PHRASE_MAX_CHARS`) contains one of the channel's
    hand-over phrases (whole words for Latin-script phrases)."""
    value = content.strip().lower()
    if not value or len(value) > PHRASE_MAX_CHARS:
        return False
    for phrase in _phrases(channel):
        if phrase.isascii():
            if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", value):
                return True
        elif phrase in value:
            return True
    return False


def on_visitor_message(*, session: Session, message: Message) -> None:
    """React to a stored visitor text in a session the robot serves: hand over when the visitor
    asks for a person on a robot-first channel, else have a worker answer it after commit."""
    channel = session.channel
    if channel.mode == Channel.Mode.WORKGROUP and asks_for_person(channel, message.content):
        handover(session_id=session.pk, reason="asked")
        return
    schema = connection.schema_name
    session_id, message_id = session.pk, message.pk

    def enqueue() -> None:
        robot_answer_task.delay(schema, session_id, message_id)

    transaction.on_commit(enqueue)


def _plain(markdown_source: str) -> str:
    html = text.render_markdown(markdown_source)
    plain = nh3.clean(re.sub(r"</(p|li|h\d)>", "\n", html), tags=set())
    return re.sub(r"\n{3,}", "\n\n", plain).strip()


def _excerpt(hit: dict[str, Any]) -> str:
    if hit["type"] == "faq":
        return hit["text"]
    body = _plain(hit.get("text") or "")
    if len(body) > EXCERPT_CHARS:
        cut = body.rfind(" ", 0, EXCERPT_CHARS)
        body = body[: cut if cut > EXCERPT_CHARS // 2 else EXCERPT_CHARS].rstrip() + " …"
    return f"{hit['title']}\n\n{body}"


def suggestion_payload(hit: dict[str, Any]) -> dict[str, Any]:
    """A search hit offered as a "Did you mean" choice: ``{"type", "id", "title"}`` (the title
    is what the widget sends back as the visitor's question when it is chosen)."""
    return {"type": hit["type"], "id": hit["id"], "title": hit["title"][:200]}


def source_payload(hit: dict[str, Any]) -> dict[str, Any]:
    """A search hit as a cited source: ``{"type", "id", "title", "url", "kb"}``."""
    return {
        "type": hit["type"],
        "id": hit["id"],
        "title": hit["title"][:200],
        "url": hit.get("url"),
        "kb": hit.get("kb", {}).get("name", ""),
    }


def _history(conversation_id: int, before_seq: int) -> list[tuple[str, str]]:
    rows = (
        Message.objects.filter(
            conversation_id=conversation_id,
            seq__lt=before_seq,
            msg_type=Message.Type.TEXT,
            internal=False,
            sender_type__in=[Message.SenderType.VISITOR, Message.SenderType.ROBOT],
        )
        .order_by("-seq")
        .values_list("sender_type", "content")[:6]
    )
    return [
        ("user" if kind == Message.SenderType.VISITOR else "assistant", content)
        for kind, content in reversed(rows)
    ]


def answer(*, session_id: int, message_id: int) -> Message | None:
    """Answer one visitor message (the body of ``robot_answer_task``). Returns the robot's
    message, or None when there is nothing to answer: the session left the robot (handed over,
    closed), the message is not the visitor's text in it, or it was answered already (a retried
    task: the answer's ``client_msg_id`` is ``robot-<message id>``)."""
    session = Session.objects.select_related("channel", "visitor").filter(pk=session_id).first()
    message = Message.objects.filter(pk=message_id).first()
    if (
        session is None
        or message is None
        or session.status != Session.Status.ROBOT
        or message.conversation_id != session.conversation_id
        or message.sender_key != session.visitor.member_key
        or message.msg_type != Message.Type.TEXT
    ):
        return None
    stream_id = f"robot-{message.pk}"
    if Message.objects.filter(sender_key=im_senders.ROBOT_KEY, client_msg_id=stream_id).exists():
        return None
    channel, visitor = session.channel, session.visitor
    language = robot_language(visitor)
    question = message.content
    kb_ids = list(channel.knowledge_bases.values_list("pk", flat=True)) or None
    # knowledge bases restricted to workgroups answer only in those workgroups' conversations
    hidden = supervision.channel_hidden_knowledge_base_ids(workgroup_id=session.workgroup_id)
    if hidden:
        if kb_ids is None:
            kb_ids = list(
                KnowledgeBase.objects.filter(is_public=True)
                .exclude(pk__in=hidden)
                .values_list("pk", flat=True)
            )
        else:
            kb_ids = [pk for pk in kb_ids if pk not in hidden]
    found, decision = consider(question, kb_ids=kb_ids, min_confidence=channel.min_confidence)
    hits = found.results
    meta: dict[str, Any] = {
        "reply_to": message.seq,
        "question": question[:500],
        "confidence": decision.confidence,
        "answered": False,
        "sources": [],
        "suggestions": [],
        "llm": None,
        "feedback": None,
    }
    content = ""
    # a question in a language the robot does not read found its hits by accident: no LLM either
    # the plan's AI answers (tenants.quotas): off, or used up this month → the knowledge base
    if hits and llm.configured() and decision.reason != "language" and quotas.ai_allowed():
        streamer = AnswerStreamer(session.conversation_id, stream_id, visitor.member_key)
        try:
            result = llm.grounded_answer(
                question,
                hits,
                language=language,
                history=_history(session.conversation_id, message.seq),
                on_delta=streamer,
            )
        except llm.LlmUnavailableError as exc:
            logger.warning("robot: no LLM answer, using the knowledge base (%s)", exc)
        else:
            meta["llm"] = result.provider
            schema = connection.schema_name
            transaction.on_commit(lambda: quotas.count("ai_answers", schema=schema))
            if not result.unknown:
                used = [hits[n - 1] for n in result.cited] or hits[:1]
                content = result.text
                meta.update(answered=True, sources=[source_payload(h) for h in used])
            else:
                # the model read the hits and found no answer in them
                decision = Decision("decline", language=decision.language)
    if not content and decision.action == "answer":
        content = _excerpt(decision.hits[0])
        meta.update(answered=True, sources=[source_payload(decision.hits[0])])
    elif not content and decision.action == "suggest":
        meta["suggestions"] = [suggestion_payload(h) for h in decision.hits]
    meta["declined"] = None if meta["answered"] or meta["suggestions"] else decision.reason
    return _post(session, message, content[:4900], meta, stream_id)


def _post(
    session: Session, message: Message, content: str, meta: dict[str, Any], stream_id: str
) -> Message | None:
    channel = session.channel
    language = robot_language(session.visitor)
    hand_over = False
    with transaction.atomic():
        locked = Session.objects.select_for_update().get(pk=session.pk)
        if locked.status != Session.Status.ROBOT:
            return None
        workgroup = channel.mode == Channel.Mode.WORKGROUP
        if meta["answered"]:
            Session.objects.filter(pk=session.pk).update(robot_misses=0)
        elif meta["suggestions"]:
            # choices are neither an answer nor a miss: the visitor picks one or asks again
            with translation.override(language):
                content = _("I am not sure I understood. Did you mean one of these?")
        else:
            misses = locked.robot_misses + 1
            Session.objects.filter(pk=session.pk).update(robot_misses=F("robot_misses") + 1)
            robot_question_collect(
                question=message.content,
                reason=RobotQuestion.Reason.UNANSWERED,
                conversation_id=session.conversation_id,
            )
            limit = channel.handover_after_misses
            # a question in a language the robot does not read goes to a person at once
            foreign = meta["declined"] == "language"
            hand_over = workgroup and (foreign or 0 < limit <= misses)
            with translation.override(language):
                if foreign and hand_over:
                    content = _("Sorry, I can only answer questions in English or Chinese.")
                elif foreign:
                    content = _(
                        "Sorry, I can only answer questions in English or Chinese. Please ask "
                        "again in one of them."
                    )
                elif hand_over:
                    content = _("Sorry, I could not find an answer to that.")
                elif workgroup:
                    content = _(
                        "Sorry, I could not find an answer to that. Try asking in other words, "
                        "or tap “Talk to a person”."
                    )
                else:
                    content = _(
                        "Sorry, I could not find an answer to that. Try asking in other words."
                    )
        reply, _created = im_messages.message_send(
            conversation_id=session.conversation_id,
            sender=sender_for(session),
            content=content,
            client_msg_id=stream_id,
            meta={"robot": meta},
        )
    if hand_over:
        handover(
            session_id=session.pk, reason="language" if meta["declined"] == "language" else "misses"
        )
    return reply


# Defined beside the service it runs, under its historic name (queued messages and workers keep
# finding it); kefu/tasks.py re-exports it. Enqueued by on_visitor_message after commit.
@shared_task(name="kefu.tasks.robot_answer_task", acks_late=True)
def robot_answer_task(schema: str, session_id: int, message_id: int) -> int | None:
    """The robot answers one visitor message (:func:`answer`); returns the id of its message,
    or None when there was nothing to answer. Safe to run twice."""
    with schema_context(schema):
        reply = answer(session_id=session_id, message_id=message_id)
        return reply.pk if reply is not None else None
