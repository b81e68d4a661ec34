"""Whether the robot answers, offers choices or declines (step 1 of :mod:`kefu.robot`).

A cosine threshold alone cannot tell a right answer from a confident wrong one
(docs/benchmarks.md, "The robot's decision"): a paraphrase of the right item and an unrelated
question often score alike. The decision reads more of what the search found:

- **Language**: the question's language (:func:`question_language`). The embedding model and the
  keyword tokens cover English and Chinese; a question written in another language is never
  answered, whatever it happens to match.
- **Exact question**: a question that is an item's question (its title), or one half of a
  bilingual title (Chinese, then English), is answered with that item — this is also what a
  "Did you mean" choice sends.
- **Re-ranking** (:func:`rerank`): the top hits are scored again by the question's best match
  among each item's pieces — its question, its answer, their sentences — so a bilingual item or
  a long answer is not diluted in one vector.
- **Semantic** (the embedding service answered; English): the best hit's re-ranked score
  (cosine similarity plus the keyword bonus) and its lead over the second hit. A score of at
  least :data:`ANSWER_SCORE` (or the channel's ``min_confidence``, when higher) with a clear
  lead → answer; a plausible similarity but a close second → *suggest* the top three ("Did you
  mean…" choices); below → decline. A close second is common and not an error: the knowledge
  base often holds near-duplicate items.
- **Meaning, Chinese** (a Chinese question, the multilingual model of
  :mod:`kbase.multilingual` installed): the English model reads no Chinese, so the question is
  compared by multilingual-e5-small with the pieces of the items the search found plus, up to
  :data:`ZH_CANDIDATES`, the other items of the knowledge bases (a paraphrase often shares no
  word with its item: "下单后几天能发出" / "多久发货"). The best piece's similarity of at least
  :data:`ZH_ANSWER_SIMILARITY` with a lead of :data:`ZH_ANSWER_MARGIN` over the next item →
  answer; at least :data:`ZH_SUGGEST_SIMILARITY` → suggest; below → decline.
- **Keywords** (no embedding service, ``WEIYU_SEMANTIC=off``, or a Chinese question without the
  multilingual model): the share of the question's words found in an item (question words
  fully, answer-only words half). Every word, and more than the next item → answer; half →
  suggest.

The thresholds were tuned on the 40 queries of bench/data/zaragoza_queries.jsonl and on
bench/data/robot_tuning.jsonl only (the Chinese ones on bench/data/robot_tuning_zh.jsonl);
bench/data/robot_heldout.jsonl and bench/data/robot_heldout_zh.jsonl measure them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kbase import embed_service, multilingual, text
from kbase.search import SearchResult, scope_items, search_run

#: hits offered as "Did you mean…" choices at most
SUGGESTIONS = 3
#: hits the robot reads (re-ranked, shown to an LLM)
TOP_HITS = 4
#: sentences of an item's answer compared with the question one by one, at most
PART_SENTENCES = 8
#: part vectors kept by a process (each ~3 KB)
PART_CACHE = 4096

#: the hybrid score (cosine similarity after :func:`rerank` + keyword bonus) an answer's best
#: hit needs at least — or the channel's ``min_confidence`` when that is higher
ANSWER_SCORE = 0.60
#: … and its lead over the second hit
ANSWER_MARGIN = 0.10
#: hits are offered as choices from this cosine similarity of the best one
SUGGEST_SIMILARITY = 0.45

#: term coverage (0 … 1) needed to answer by keywords alone (no embedding service, and Chinese
#: questions, which the English embedding model does not read), and to offer choices
ANSWER_COVERAGE = 1.0
SUGGEST_COVERAGE = 0.5

#: Chinese questions (multilingual model): items compared besides the search's hits, at most —
#: each piece is encoded once (then kept), ~15 ms on one core
ZH_CANDIDATES = 40
#: … the best piece's e5 cosine similarity an answer needs (e5 similarities are compressed:
#: unrelated short Chinese questions score 0.80-0.88 against an FAQ, bench/robot.py)
ZH_ANSWER_SIMILARITY = 0.89
#: … and its lead over the next item's
ZH_ANSWER_MARGIN = 0.02
#: … and from which the top items are offered as choices
ZH_SUGGEST_SIMILARITY = 0.88
#: e5 similarity that maps to a confidence of 0 (:func:`meaning_confidence`)
ZH_FLOOR = 0.74

#: languages the robot understands (embedding model and keyword tokens)
UNDERSTOOD = ("en", "zh")
#: languages a question is told apart from (py3langid knows 97; fewer, common ones make its
#: probabilities on short questions usable)
LANGUAGES = (
    "en", "zh", "ja", "ko", "es", "fr", "de", "sv", "pt", "it", "nl", "ru", "ar", "vi", "th",
    "id", "tr", "pl", "da", "no", "fi",
)  # fmt: skip
#: probability py3langid must give a language (among :data:`LANGUAGES`)
LANGUAGE_PROBABILITY = 0.85

_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTERS = re.compile(r"[^\W\d_]+", re.UNICODE)
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_lock = threading.Lock()
_parts_cache: OrderedDict[str, list[float]] = OrderedDict()


@dataclass
class Decision:
    """What the robot does with a question. ``action``: ``answer`` (``hits`` holds the one item
    to answer with), ``suggest`` (``hits``: up to :data:`SUGGESTIONS` items offered as choices)
    or ``decline`` (``hits`` empty). ``confidence`` 0 … 1: how sure the robot is of the best hit
    (what ``meta.robot.confidence`` shows). ``reason``: ``exact``, ``sure``, ``unsure``,
    ``no_match`` or ``language``. ``language``: the question's language (ISO 639-1, e.g. ``en``,
    ``zh``, ``sv``) or None when too short to tell."""

    action: str
    hits: list[dict[str, Any]] = field(default_factory=list)
    confidence: float = 0.0
    reason: str = "no_match"
    language: str | None = None


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    with _lock:
        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        identifier.set_languages(list(LANGUAGES))
        return identifier


def question_language(question: str) -> str | None:
    """The language a question is written in, as far as it can be told: ``zh`` for Chinese
    characters without kana or hangul, ``ja`` / ``ko`` with them, else what py3langid finds
    among :data:`LANGUAGES` with a probability of at least :data:`LANGUAGE_PROBABILITY` — in a
    question of three or more words when it is written in Latin letters; None when it cannot be
    told (short keyword questions such as "refund" or "ID06")."""
    if _KANA.search(question):
        return "ja"
    if _HANGUL.search(question):
        return "ko"
    if _CJK.search(question):
        return "zh"
    words = _LETTERS.findall(question)
    # a short question is often a keyword of the knowledge base, whatever py3langid thinks —
    # unless it has no Latin letter at all (Cyrillic, Arabic, Thai …)
    if not words or (len(words) < 3 and _LATIN.search(question)):
        return None
    language, probability = _identifier().classify(question)
    return language if probability >= LANGUAGE_PROBABILITY else None


def coverage(question: str, hit: dict[str, Any]) -> float:
    """Share of the question's search terms found in ``hit``, 0 … 1: a term in the title counts
    1, a term only in the body ½."""
    terms = set(text.query_terms(question))
    if not terms:
        return 0.0
    title = set(text.tokens(hit["title"]))
    body = set(text.tokens(hit.get("text") or ""))
    found = sum(1.0 if t in title else 0.5 if t in body else 0.0 for t in terms)
    return found / len(terms)


def _normal(value: str) -> str:
    return " ".join(text.tokens(value))


def _exact(question: str, hits: list[dict[str, Any]]) -> dict[str, Any] | None:
    asked = _normal(question)
    if not asked:
        return None
    for hit in hits:
        title = hit["title"]
        # either half of a bilingual title (Chinese, then English) matches too
        parts = {title, *re.split(r"(?<=[？?!！。])\s*", title)}
        if any(_normal(p) == asked for p in parts if p.strip()):
            return hit
    return None


def decide(
    question: str, hits: list[dict[str, Any]], *, semantic: bool, min_confidence: float = 0.5
) -> Decision:
    """Decide what the robot does with ``question`` given the search ``hits`` (best first, the
    dicts of :mod:`kbase.search`). ``semantic``: whether the search ran with embeddings (hits
    then carry ``similarity`` and a hybrid ``score``); ``min_confidence``: the channel's
    threshold (0 … 1) on the best hit's confidence — its hybrid score, or its term coverage when
    judged by keywords. Pure: reads nothing else."""
    language = question_language(question)
    if language is not None and language not in UNDERSTOOD:
        return Decision("decline", reason="language", language=language)
    if not hits:
        return Decision("decline", language=language)
    exact = _exact(question, hits)
    if exact is not None:
        return Decision("answer", [exact], 1.0, "exact", language)
    if language == "zh" and hits[0].get("meaning") is not None:
        return _by_meaning(hits, min_confidence, language)
    if semantic and language != "zh" and hits[0].get("similarity") is not None:
        return _by_similarity(hits, min_confidence, language)
    return _by_words(question, hits, min_confidence, language)


def meaning_confidence(similarity: float) -> float:
    """A multilingual-e5 cosine similarity as a confidence 0 … 1 on the English model's
    scale: :data:`ZH_ANSWER_SIMILARITY` maps to :data:`ANSWER_SCORE` (0.6), 0.99 to 1.0,
    :data:`ZH_FLOOR` and below to 0 — so a channel's ``min_confidence`` means about the same for
    both."""
    scale = ANSWER_SCORE / (ZH_ANSWER_SIMILARITY - ZH_FLOOR)
    return round(max(0.0, min(1.0, (similarity - ZH_FLOOR) * scale)), 4)


def _by_meaning(
    hits: list[dict[str, Any]], min_confidence: float, language: str | None
) -> Decision:
    best, choices = hits[0], hits[:SUGGESTIONS]
    lead = best["meaning"] - (hits[1]["meaning"] if len(hits) > 1 else ZH_FLOOR)
    sure = meaning_confidence(best["meaning"])
    if (
        best["meaning"] >= ZH_ANSWER_SIMILARITY
        and sure >= min_confidence
        and lead >= ZH_ANSWER_MARGIN
    ):
        return Decision("answer", [best], sure, "sure", language)
    if best["meaning"] >= ZH_SUGGEST_SIMILARITY:
        return Decision("suggest", choices, sure, "unsure", language)
    return Decision("decline", confidence=sure, language=language)


def _by_similarity(
    hits: list[dict[str, Any]], min_confidence: float, language: str | None
) -> Decision:
    best, choices = hits[0], hits[:SUGGESTIONS]
    lead = best["score"] - (hits[1]["score"] if len(hits) > 1 else 0.0)
    sure = round(max(0.0, min(1.0, best["score"])), 4)
    if sure >= max(ANSWER_SCORE, min_confidence) and lead >= ANSWER_MARGIN:
        return Decision("answer", [best], sure, "sure", language)
    if best["similarity"] >= SUGGEST_SIMILARITY:
        return Decision("suggest", choices, sure, "unsure", language)
    return Decision("decline", confidence=sure, language=language)


def _by_words(
    question: str, hits: list[dict[str, Any]], min_confidence: float, language: str | None
) -> Decision:
    # ranked by coverage here: the search's order may come from a similarity that means
    # nothing for this question (a Chinese one read by the English model)
    covered = sorted(((coverage(question, h), n) for n, h in enumerate(hits)), key=lambda c: -c[0])
    ranked = [hits[n] for _c, n in covered]
    cover = covered[0][0]
    second = covered[1][0] if len(covered) > 1 else 0.0
    sure = round(cover, 4)
    if cover >= max(ANSWER_COVERAGE, min_confidence) and second < cover:
        return Decision("answer", ranked[:1], sure, "sure", language)
    if cover >= SUGGEST_COVERAGE:
        return Decision("suggest", ranked[:SUGGESTIONS], sure, "unsure", language)
    return Decision("decline", confidence=sure, language=language)


def parts(hit: dict[str, Any]) -> list[str]:
    """The pieces of an item the question is compared with one by one: its question (title), its
    answer (the first 1,000 characters), and their sentences — so a bilingual item, or a long
    answer whose one sentence is the point, is not diluted in a single vector."""
    return text.item_parts(hit["title"], hit.get("text") or "", sentences=PART_SENTENCES)


def _part_vectors(texts: list[str]) -> dict[str, list[float]] | None:
    with _lock:
        known = {t: _parts_cache[t] for t in texts if t in _parts_cache}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        # the robot runs in a worker, not on the websocket path: it can wait longer than a search
        got = embed_service.vectors(texts=missing, wait_s=max(3.0, 2 * embed_service.timeout_s()))
        if got is None:
            return None
        with _lock:
            for t, v in zip(missing, got, strict=True):
                _parts_cache[t] = v
                known[t] = v
            while len(_parts_cache) > PART_CACHE:
                _parts_cache.popitem(last=False)
    return known


def rerank(found: SearchResult) -> list[dict[str, Any]]:
    """The hits of a semantic or hybrid search, re-scored by the question's best match among each
    item's :func:`parts` (their vectors from the embedding service, kept in Redis and per process): a hit's
    ``similarity`` becomes the highest cosine similarity of the question with its question, its
    answer or one of their sentences (never lower than before), its ``score`` that plus its
    keyword bonus, and the hits are sorted again. Keyword results, or a service that does not
    answer, leave the hits as they were."""
    import numpy as np

    hits = found.results
    if found.vector is None or not hits:
        return hits
    pieces = {id(h): parts(h) for h in hits}
    vectors = _part_vectors([t for p in pieces.values() for t in p])
    if vectors is None:
        return hits
    query = np.asarray(found.vector, dtype=np.float32)
    out = []
    for hit in hits:
        matrix = np.asarray([vectors[t] for t in pieces[id(hit)]], dtype=np.float32)
        best = float((matrix @ query).max())
        before = hit.get("similarity")
        bonus = max(0.0, hit["score"] - before) if before is not None else 0.0
        similarity = max(best, before if before is not None else best)
        out.append(
            {**hit, "similarity": round(similarity, 6), "score": round(similarity + bonus, 6)}
        )
    out.sort(key=lambda h: -h["score"])
    return out


def rank_by_meaning(
    question: str, hits: list[dict[str, Any]], *, kb_ids: list[int] | None
) -> list[dict[str, Any]]:
    """The :data:`TOP_HITS` best of ``hits`` plus, up to :data:`ZH_CANDIDATES` in all, the
    other public items of ``kb_ids`` (None: all), ranked by ``meaning``: the highest
    multilingual-e5 cosine similarity (-1 … 1) of ``question`` with one of the item's
    :func:`parts` (:mod:`kbase.multilingual`; pieces' vectors kept). Each returned hit gains
    ``meaning``; the rest of it is as the search gave it."""
    import numpy as np

    seen = {(h["type"], h["id"]) for h in hits}
    candidates = list(hits[:ZH_CANDIDATES])
    if len(candidates) < ZH_CANDIDATES:
        candidates += scope_items(
            kb_ids=kb_ids, public_only=True, exclude=seen, limit=ZH_CANDIDATES - len(candidates)
        )
    if not candidates:
        return []
    pieces = [parts(h) for h in candidates]
    known = multilingual.vectors([p for group in pieces for p in group])
    query = multilingual.encode([question])[0]
    out = []
    for hit, group in zip(candidates, pieces, strict=True):
        if not group:
            continue
        matrix = np.asarray([known[p] for p in group], dtype=np.float32)
        out.append({**hit, "meaning": round(float((matrix @ query).max()), 6)})
    out.sort(key=lambda h: -h["meaning"])
    return out[:TOP_HITS]


def consider(
    question: str,
    *,
    kb_ids: list[int] | None,
    min_confidence: float,
    mode: str | None = None,
    meaning: bool = True,
) -> tuple[SearchResult, Decision]:
    """Search the public knowledge bases ``kb_ids`` (None: all) for ``question`` as the robot
    does (:data:`TOP_HITS` hits, :func:`rerank` unless the question is Chinese; a Chinese one is
    ranked by :func:`rank_by_meaning` when the multilingual model is installed and ``mode`` is
    not ``keyword``), then :func:`decide`. Returns the search (its ``results`` re-ranked) and the
    decision. ``mode``: as :func:`kbase.search.search_run`; ``meaning=False`` judges Chinese
    questions by their words even with the multilingual model (what bench/robot.py compares)."""
    chinese = question_language(question) == "zh"
    if chinese and meaning and mode != "keyword" and multilingual.available():
        found = search_run(
            q=question, kb_ids=kb_ids, public_only=True, limit=ZH_CANDIDATES, mode=mode
        )
        ranked = rank_by_meaning(question, found.results, kb_ids=kb_ids)
        found = SearchResult(results=ranked, mode=found.mode, vector=found.vector)
    else:
        found = search_run(q=question, kb_ids=kb_ids, public_only=True, limit=TOP_HITS, mode=mode)
    if not chinese:
        # the English model finds any two Chinese sentences alike: no re-ranking by pieces
        found = SearchResult(results=rerank(found), mode=found.mode, vector=found.vector)
    semantic = found.mode != "keyword"
    return found, decide(question, found.results, semantic=semantic, min_confidence=min_confidence)
