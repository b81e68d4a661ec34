"""Message search (IM-9): Chinese and English full text on a stock PostgreSQL.

Text is indexed as terms in a ``simple`` tsvector: lower-cased words for alphabetic scripts and
overlapping character bigrams (plus single characters) for CJK, so any Chinese phrase of two or
more characters is found without a dictionary or a database extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import transaction
from django.db.models import Value
from django.utils.translation import gettext as _

from im import selectors
from im.models import Message
from weiyu.errors import ServiceError

_WORD = re.compile(
    r"[0-9a-z\u00c0-\u024f]+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def index_terms(text: str) -> str:
    """The space-separated terms stored for ``text`` (``to_tsvector('simple', terms)``)."""
    terms: list[str] = []
    for run in _WORD.findall(text.lower()):
        if _CJK.match(run):
            terms.extend(run)
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            terms.append(run[:64])
    return " ".join(terms)


QUERY_MAX = 200
SNIPPET = 160


def _query_terms(query: str) -> tuple[list[str], list[str]]:
    """``(tsquery terms, phrases to verify)``. A CJK run of two or more characters becomes its
    bigrams (all required) plus the run as a phrase, so characters that merely appear apart do
    not match; one CJK character is its own term. The last alphabetic word matches as a prefix."""
    terms: list[str] = []
    phrases: list[str] = []
    runs = _WORD.findall(query.lower())
    for i, run in enumerate(runs):
        if _CJK.match(run):
            if len(run) == 1:
                terms.append(run)
            else:
                terms.extend(run[j : j + 2] for j in range(len(run) - 1))
                phrases.append(run)
        else:
            word = run[:64]
            terms.append(f"{word}:*" if i == len(runs) - 1 else word)
    return list(dict.fromkeys(terms)), phrases


def _tsquery_literal(term: str) -> str:
    prefix = term.endswith(":*")
    word = term[:-2] if prefix else term
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'" + (":*" if prefix else "")


def compile_query(query: object) -> tuple[str, list[str]]:
    """``(raw tsquery, CJK phrases to verify with ILIKE)`` for a user's search text, shared by
    message search and customer conversation search. Every term is required; the last alphabetic
    word matches as a prefix.

    Raises ``ServiceError("invalid", field="q")`` for an empty query, one over 200 characters,
    or one with nothing searchable (only punctuation).
    """
    if not isinstance(query, str) or not query.strip():
        raise ServiceError("invalid", _("Type something to search for."), field="q")
    if len(query) > QUERY_MAX:
        raise ServiceError(
            "invalid",
            _("The search is longer than %(n)d characters.") % {"n": QUERY_MAX},
            field="q",
        )
    terms, phrases = _query_terms(query)
    if not terms:
        raise ServiceError("invalid", _("Search for words or characters."), field="q")
    return " & ".join(_tsquery_literal(t) for t in terms), phrases


def message_search(
    *,
    member_key: str,
    query: object,
    conversation_id: int | None = None,
    before_id: int | None = None,
    limit: int = 20,
) -> tuple[list[Message], bool]:
    """Messages the member can see that match ``query`` (IM-9), newest first.

    Visible: conversations where the member is an active participant; recalled messages,
    system and recall rows are never found, nor internal notes for visitors. Every term must
    match; CJK phrases must appear as written (verified with ``ILIKE`` on the candidates found by
    the index). Keyset pagination: pass the last result's id as ``before_id``. Returns
    ``(messages, has_more)``; ``limit`` 1-50.

    Raises ``ServiceError("invalid", field="q")`` for an empty query, one over 200 characters,
    or one with nothing searchable (only punctuation).
    """
    tsquery, phrases = compile_query(query)
    visible = selectors.active_memberships(member_key=member_key)
    if conversation_id is not None:
        visible = visible.filter(conversation_id=conversation_id)
    qs = (
        Message.objects.select_related("attachment", "sticker", "conversation")
        .filter(
            conversation_id__in=visible.values("conversation_id"),
            recalled_at__isnull=True,
            msg_type__in=[
                Message.Type.TEXT,
                Message.Type.IMAGE,
                Message.Type.VOICE,
                Message.Type.VIDEO,
                Message.Type.FILE,
            ],
        )
        .filter(search_vector=SearchQuery(tsquery, search_type="raw", config="simple"))
    )
    if member_key.startswith("v:"):
        qs = qs.filter(internal=False)
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    for phrase in phrases:
        qs = qs.filter(content__icontains=phrase)
    rows = list(qs.order_by("-id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def highlight(text: str, query: str) -> str:
    """A plain-text snippet of ``text`` (≤ 160 chars) around the first query word it contains."""
    lowered = text.lower()
    at = -1
    for run in _WORD.findall(query.lower()):
        at = lowered.find(run)
        if at >= 0:
            break
    if at < 0 or len(text) <= SNIPPET:
        return text[:SNIPPET]
    start = max(0, at - SNIPPET // 3)
    snippet = text[start : start + SNIPPET]
    return ("…" if start else "") + snippet + ("…" if start + SNIPPET < len(text) else "")


def messages_around(
    *, conversation_id: int, seq: int, limit: int, include_internal: bool = True
) -> tuple[list[Message], bool, bool]:
    """A page of about ``limit`` messages centred on ``seq`` (to jump to a search hit), oldest
    first. Returns ``(messages, has_before, has_after)``."""
    qs = Message.objects.select_related("attachment", "sticker").filter(
        conversation_id=conversation_id
    )
    if not include_internal:
        qs = qs.filter(internal=False)
    half = max(limit // 2, 1)
    before = list(qs.filter(seq__lt=seq).order_by("-seq")[: half + 1])
    after = list(qs.filter(seq__gte=seq).order_by("seq")[: limit - half + 1])
    has_before = len(before) > half
    has_after = len(after) > limit - half
    before = before[:half]
    before.reverse()
    return before + after[: limit - half], has_before, has_after


def index_refresh(*, batch: int = 2000) -> Iterator[int]:
    """Recompute ``search_vector`` of every message of the current schema, in batches; yields
    the number done after each batch (for progress bars). Recalled and system rows get none."""
    last = 0
    while True:
        rows = list(
            Message.objects.filter(pk__gt=last)
            .order_by("pk")
            .select_related("attachment")
            .only("pk", "content", "msg_type", "recalled_at", "attachment__name")[:batch]
        )
        if not rows:
            return
        with transaction.atomic():
            for row in rows:
                text = ""
                if row.recalled_at is None and row.msg_type not in (
                    Message.Type.SYSTEM,
                    Message.Type.RECALL,
                ):
                    text = index_terms(
                        row.content or (row.attachment.name if row.attachment_id else "")
                    )
                Message.objects.filter(pk=row.pk).update(
                    search_vector=SearchVector(Value(text), config="simple") if text else None
                )
        last = rows[-1].pk
        yield len(rows)
