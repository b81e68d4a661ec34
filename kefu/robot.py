"""The service robot of robot and robot-first channels (KF-1, KB-4, KB-5).

A session on a ``robot`` or ``workgroup`` channel starts with status ``robot``. Each visitor
message is answered by :func:`answer` in a Celery worker (``kefu.tasks.robot_answer_task``):

1. The channel's public knowledge bases are searched (:func:`kbase.search.search`, hybrid when
   embeddings are installed). The best hit's *confidence* is the larger of its search score
   (cosine similarity plus keyword bonus, hybrid mode) and the share of the question's terms
   found in it (question/title terms count fully, answer/body terms half) — 0 … 1.
2. With an LLM provider configured (:mod:`kbase.llm`), the model writes an answer from the top
   hits, streamed to the visitor as ``robot.stream`` frames, citing its sources; it may say the
   hits do not cover the question. Without one — or when every provider fails — the robot
   replies with the best FAQ answer or an article excerpt, when the confidence reaches the
   channel's ``min_confidence``.
3. Otherwise the turn is a *miss*: the robot says it does not know, the question is collected as
   a :class:`kbase.models.RobotQuestion` for admins, and on a robot-first channel the session is
   handed over after ``handover_after_misses`` misses in a row.

Robot answers are ``im`` messages from the robot sender whose ``meta["robot"]`` carries
``{"reply_to": seq, "question", "answered": bool, "confidence", "sources": [{"type", "id",
"title", "url"}], "llm": provider name | null, "feedback": null | "helpful" | "not_helpful"}``
(docs/protocol.md §2.5). The visitor can rate an answer (:func:`feedback`); "not helpful"
collects the question too.

A hand-over (:func:`handover`: the visitor's button or phrase, or the misses) moves the session
to the workgroup's queue; the agent who takes it joins the same conversation, so the whole
transcript — questions, robot answers and their sources — is what they see first.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from typing import Any

import nh3
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from im import services as im_services
from im.models import Message
from im.services import Sender
from kbase import embeddings, llm, text
from kbase.models import RobotQuestion
from kbase.search import search
from kefu.models import Channel, Session, Visitor, Workgroup
from weiyu import parsing
from weiyu.errors import ServiceError
from weiyu.realtime import publish_event_now, publish_event_on_commit

logger = logging.getLogger(__name__)

#: hits shown to the LLM, and offered as sources
TOP_HITS = 4
#: characters of an article quoted when the robot answers with an excerpt
EXCERPT_CHARS = 600
#: a message longer than this is a question, even if it contains a hand-over phrase
PHRASE_MAX_CHARS = 40
#: seconds between two ``robot.stream`` frames of one answer
STREAM_INTERVAL_S = 0.1
ROBOT_MODES = (Channel.Mode.ROBOT, Channel.Mode.WORKGROUP)


def language_for(visitor: Visitor) -> str:
    return "en" if visitor.language.lower().startswith("en") else "zh-hans"


def robot_name(channel: Channel, language: str) -> str:
    """The name the robot signs with: the channel's, else "Assistant" in the visitor's language."""
    if channel.robot_name:
        return channel.robot_name
    with translation.override(language):
        return _("Assistant")


def sender_for(session: Session) -> Sender:
    return im_services.robot_sender(robot_name(session.channel, language_for(session.visitor)))


def greeting(channel: Channel, language: str) -> str:
    """The robot's first words, shown by the widget before the first question."""
    if channel.robot_greeting:
        return channel.robot_greeting
    with translation.override(language):
        if channel.mode == Channel.Mode.WORKGROUP:
            return _(
                "Hello! I am the assistant. Ask me anything; if I cannot help, I will bring in "
                "a colleague."
            )
        return _("Hello! I am the assistant. Ask me anything.")


def widget_info(channel: Channel, language: str) -> dict[str, Any] | None:
    """``robot`` of the widget session response: ``{"name", "greeting", "handover"}`` (whether
    the visitor may ask for a person), or None on a human-only channel."""
    if channel.mode not in ROBOT_MODES:
        return None
    return {
        "name": robot_name(channel, language),
        "greeting": greeting(channel, language),
        "handover": channel.mode == Channel.Mode.WORKGROUP,
    }


# --- the visitor's turn --------------------------------------------------------------------------


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
        from kefu.tasks import robot_answer_task

        robot_answer_task.delay(schema, session_id, message_id)

    transaction.on_commit(enqueue)


# --- answering -----------------------------------------------------------------------------------


def confidence(question: str, hit: dict[str, Any], *, mode_score: float | None) -> float:
    """How sure the robot is that ``hit`` answers ``question``, 0 … 1: the larger of the hybrid
    score (``mode_score``, when semantic search ran) and the term coverage (terms in the title
    count 1, terms only in the body ½, over the question's terms)."""
    terms = set(text.query_terms(question))
    coverage = 0.0
    if terms:
        title = set(text.tokens(hit["title"]))
        body = set(text.tokens(hit.get("text") or ""))
        coverage = sum(1.0 if t in title else 0.5 if t in body else 0.0 for t in terms)
        coverage /= len(terms)
    return round(min(1.0, max(coverage, mode_score or 0.0)), 4)


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


def _source(hit: dict[str, Any]) -> dict[str, Any]:
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


class _Streamer:
    """Sends the growing answer to the visitor as ``robot.stream`` frames, at most one per
    :data:`STREAM_INTERVAL_S`."""

    def __init__(self, conversation_id: int, stream_id: str, visitor_key: str) -> None:
        self.conversation_id, self.stream_id, self.key = conversation_id, stream_id, visitor_key
        self.text = ""
        self.sent_at = 0.0

    def __call__(self, delta: str) -> None:
        self.text += delta
        now = time.monotonic()
        if now - self.sent_at >= STREAM_INTERVAL_S:
            self.flush()
            self.sent_at = now

    def flush(self) -> None:
        publish_event_now(
            {
                "type": "robot.stream",
                "conversation_id": self.conversation_id,
                "stream_id": self.stream_id,
                "text": self.text,
            },
            [self.key],
        )


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
    if Message.objects.filter(sender_key=im_services.ROBOT_KEY, client_msg_id=stream_id).exists():
        return None
    channel, visitor = session.channel, session.visitor
    language = language_for(visitor)
    question = message.content
    kb_ids = list(channel.knowledge_bases.values_list("pk", flat=True)) or None
    semantic = embeddings.available()  # then scores are cosine similarity + keyword bonus
    hits = search(
        q=question,
        kb_ids=kb_ids,
        public_only=True,
        limit=TOP_HITS,
        mode="hybrid" if semantic else "keyword",
    )
    best = hits[0] if hits else None
    sure = (
        confidence(question, best, mode_score=best["score"] if semantic else None) if best else 0.0
    )
    meta: dict[str, Any] = {
        "reply_to": message.seq,
        "question": question[:500],
        "confidence": sure,
        "answered": False,
        "sources": [],
        "llm": None,
        "feedback": None,
    }
    content = ""
    if hits and llm.configured():
        streamer = _Streamer(session.conversation_id, stream_id, visitor.member_key)
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
            if not result.unknown:
                used = [hits[n - 1] for n in result.cited] or hits[:1]
                content = result.text
                meta.update(answered=True, sources=[_source(h) for h in used])
            else:
                best = None  # the model read the hits and found no answer in them
    if not content and best is not None and sure >= channel.min_confidence:
        content = _excerpt(best)
        meta.update(answered=True, sources=[_source(best)])
    return _post(session, message, content[:4900], meta, stream_id)


def _post(
    session: Session, message: Message, content: str, meta: dict[str, Any], stream_id: str
) -> Message | None:
    channel = session.channel
    language = language_for(session.visitor)
    hand_over = False
    with transaction.atomic():
        locked = Session.objects.select_for_update().get(pk=session.pk)
        if locked.status != Session.Status.ROBOT:
            return None
        if meta["answered"]:
            Session.objects.filter(pk=session.pk).update(robot_misses=0)
        else:
            misses = locked.robot_misses + 1
            Session.objects.filter(pk=session.pk).update(robot_misses=F("robot_misses") + 1)
            question_collect(
                question=message.content,
                reason=RobotQuestion.Reason.UNANSWERED,
                conversation_id=session.conversation_id,
            )
            limit = channel.handover_after_misses
            hand_over = channel.mode == Channel.Mode.WORKGROUP and 0 < limit <= misses
            with translation.override(language):
                if hand_over:
                    content = _("Sorry, I could not find an answer to that.")
                elif channel.mode == Channel.Mode.WORKGROUP:
                    content = _(
                        "Sorry, I could not find an answer to that. Try asking in other words, "
                        "or tap “Talk to a person”."
                    )
                else:
                    content = _(
                        "Sorry, I could not find an answer to that. Try asking in other words."
                    )
        reply, _created = im_services.message_send(
            conversation_id=session.conversation_id,
            sender=sender_for(session),
            content=content,
            client_msg_id=stream_id,
            meta={"robot": meta},
        )
    if hand_over:
        handover(session_id=session.pk, reason="misses")
    return reply


# --- hand-over -----------------------------------------------------------------------------------


def handover(*, session_id: int, reason: str) -> str:
    """Pass a robot session to the workgroup's agents. ``reason``: ``asked`` (button or phrase)
    or ``misses``. Returns ``queued`` (the session waits in the queue and is dispatched at once),
    ``offline`` (no agent of the workgroup is online: the robot says so, offers to leave a
    message — the message's ``meta.robot.offline`` is true — and keeps serving) or ``already``
    (the session is no longer with the robot).

    Raises ``ServiceError("forbidden")`` on a robot-only channel, which never hands over.
    """
    from kefu import hours, selectors, services

    with transaction.atomic():
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("channel", "visitor")
            .get(pk=session_id)
        )
        if session.status != Session.Status.ROBOT:
            return "already"
        if session.channel.mode != Channel.Mode.WORKGROUP:
            with translation.override(language_for(session.visitor)):
                raise ServiceError("forbidden", _("This chat is answered by the robot only."))
        language = language_for(session.visitor)
        calendar_id = (
            Workgroup.objects.filter(pk=session.workgroup_id)
            .values_list("calendar_id", flat=True)
            .first()
        )
        if not hours.workgroup_hours(calendar_id=calendar_id)[0] or not (
            selectors.workgroup_has_online_agent(workgroup_id=session.workgroup_id)
        ):
            with translation.override(language):
                content = _(
                    "No colleague is available right now. Leave a message and we will get back "
                    "to you, or keep asking me."
                )
            im_services.message_send(
                conversation_id=session.conversation_id,
                sender=sender_for(session),
                content=content,
                meta={"robot": {"offline": True}},
            )
            return "offline"
        now = timezone.now()
        Session.objects.filter(pk=session.pk).update(
            status=Session.Status.QUEUED,
            queued_at=now,
            handed_over_at=now,
            handover_reason=reason[:16],
        )
        with translation.override(language):
            text_line = _("Connecting you to a colleague…")
        im_services.message_send(
            conversation_id=session.conversation_id,
            sender=im_services.SYSTEM,
            content=text_line,
            msg_type=Message.Type.SYSTEM,
            meta={"handover": reason},
        )
        workgroup_id = session.workgroup_id
        transaction.on_commit(lambda: services.workgroup_dispatch(workgroup_id=workgroup_id))
    return "queued"


def handover_by_visitor(*, visitor: Visitor, conversation_id: object) -> str:
    """The visitor's "Talk to a person" button. Raises ``ServiceError``: ``invalid``,
    ``not_found`` (not the visitor's live session), ``forbidden`` (robot-only channel)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ServiceError(
            "invalid", _("conversation_id must be an integer."), field="conversation_id"
        )
    session = Session.objects.filter(conversation_id=conversation_id, visitor=visitor).first()
    if session is None or session.status == Session.Status.CLOSED:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    return handover(session_id=session.pk, reason="asked")


# --- feedback and unanswered questions -----------------------------------------------------------


def normalized_question(question: str) -> str:
    """The form unanswered questions are merged by: Unicode NFKC (full-width letters and
    punctuation become their ASCII forms), case folded, punctuation and symbols dropped, runs of
    spaces made one — so "退货怎么办?", "退货 怎么办" and "退货怎么办!" count as one question."""
    text = unicodedata.normalize("NFKC", question).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    words = kept.split()
    # spaces between two CJK characters are not words apart: "退货 怎么办" = "退货怎么办"
    out = ""
    for word in words:
        if out and not (_cjk(out[-1]) and _cjk(word[0])):
            out += " "
        out += word
    return out[:500]


def _cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uac00" <= ch <= "\ud7af"


def question_collect(
    *, question: str, reason: str, conversation_id: int | None, answer_title: str = ""
) -> RobotQuestion:
    """Count a question the robot could not answer well: the open entry with the same
    normalized text gets its count raised, else a new one is made."""
    normalized = normalized_question(question)
    existing = (
        RobotQuestion.objects.select_for_update()
        .filter(normalized=normalized, status=RobotQuestion.Status.OPEN)
        .first()
    )
    now = timezone.now()
    if existing is not None:
        RobotQuestion.objects.filter(pk=existing.pk).update(
            count=F("count") + 1,
            last_asked_at=now,
            conversation_id=conversation_id,
            reason=reason if reason == RobotQuestion.Reason.NOT_HELPFUL else existing.reason,
        )
        existing.refresh_from_db()
        return existing
    return RobotQuestion.objects.create(
        question=question[:500],
        normalized=normalized,
        reason=reason,
        conversation_id=conversation_id,
        answer_title=answer_title[:500],
    )


def feedback(*, visitor: Visitor, message_id: object, helpful: object) -> dict[str, Any]:
    """The visitor rates a robot answer. Returns ``{"message_id", "feedback"}``. Rating again
    replaces the rating; the first "not helpful" collects the question (:func:`question_collect`).

    Raises ``ServiceError``: ``invalid`` (types), ``not_found`` (not a robot answer in one of the
    visitor's conversations).
    """
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise ServiceError("invalid", _("message_id must be an integer."), field="message_id")
    helpful = parsing.boolean(helpful, "helpful")
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                pk=message_id,
                sender_key=im_services.ROBOT_KEY,
                conversation__participants__member_key=visitor.member_key,
            )
            .first()
        )
        robot_meta = (message.meta or {}).get("robot") if message is not None else None
        if message is None or not robot_meta or "reply_to" not in robot_meta:
            raise ServiceError("not_found", _("No such answer."), field="message_id")
        value = "helpful" if helpful else "not_helpful"
        previous = robot_meta.get("feedback")
        robot_meta["feedback"] = value
        Message.objects.filter(pk=message.pk).update(meta={**message.meta, "robot": robot_meta})
        if value == "not_helpful" and previous != "not_helpful" and robot_meta.get("answered"):
            sources = robot_meta.get("sources") or [{}]
            question_collect(
                question=robot_meta.get("question") or "",
                reason=RobotQuestion.Reason.NOT_HELPFUL,
                conversation_id=message.conversation_id,
                answer_title=sources[0].get("title", ""),
            )
        payload = {
            "type": "robot.feedback",
            "conversation_id": message.conversation_id,
            "message_id": message.pk,
            "feedback": value,
        }
        publish_event_on_commit(payload, [visitor.member_key])
    return {"message_id": message.pk, "feedback": value}


# --- drafts for agents -----------------------------------------------------------------------------


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
    import secrets

    from im import selectors as im_selectors

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
        from kefu.tasks import assist_draft_task

        assist_draft_task.delay(schema, user_id, conversation_id, request_id)

    transaction.on_commit(enqueue)
    return request_id


def assist_draft(*, user_id: int, conversation_id: int, request_id: str) -> None:
    """Write the draft (the body of ``assist_draft_task``): the visitor's last question answered
    from every knowledge base (internal ones too) by the LLM, streamed to the agent as
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

    hits = search(q=question, limit=TOP_HITS) if question else []
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
            frame["sources"] = [_source(hits[n - 1]) for n in result.cited]
    frame["done"] = True
    publish_event_now(frame, [key])
