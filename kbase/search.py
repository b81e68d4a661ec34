"""Knowledge-base search (KB-3): keywords, embeddings, or both.

Keywords: PostgreSQL full text over the jieba/word tokens of :mod:`kbase.text`, ranked with
``ts_rank_cd`` (question/title hits weigh more). A query first asks for items that contain *every*
term; when that gives fewer than ``limit`` results, items with *any* term follow, ranked lower.
Embeddings (:mod:`kbase.embeddings`, when installed): cosine similarity of sentence vectors; the
query's vector comes from the embedding service (:mod:`kbase.embed_service`), never from a model
in this process.
Hybrid: the cosine similarity plus a bonus for the keyword match (at most
:data:`KEYWORD_WEIGHT`), so exact words still count where the embeddings are weak (Chinese). Results are plain dicts:
``{"type": "faq" | "article", "id", "external_id", "title", "snippet" (plain text, Markdown
rendered and stripped), "text" (the whole answer,
or the article's Markdown), "score", "similarity", "keyword", "kb": {"id", "name"}, "url"}``
(``url``: the help-center page of a published public article, else null; ``similarity``: the
cosine similarity -1 … 1 when the semantic or hybrid mode ran and the item had a vector, else
null; ``keyword``: the full-text rank, null when the keyword query did not find the item).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db.models import F, QuerySet

from kbase import embed_service, embeddings, text
from kbase.models import Article, FaqItem, KnowledgeBase

#: most matching rows ranked per query and kind (the GIN index finds them; ranking reads each)
CANDIDATES = 2000


def _query(terms: list[str], joiner: str) -> SearchQuery:
    # terms contain only word characters (kbase.text), so they are safe inside a raw tsquery
    return SearchQuery(f" {joiner} ".join(terms), config="simple", search_type="raw")


def _escape(term: str) -> str:
    return term.replace("'", "")


MODES = ("keyword", "semantic", "hybrid")
#: candidates each ranking contributes to the hybrid
POOL = 50
#: the most the keyword match adds to a cosine similarity in hybrid mode (bench/kb_search.py)
KEYWORD_WEIGHT = 0.1


@dataclass
class SearchResult:
    """What :func:`search_run` found: ``results`` (the dicts of the module docstring, best first)
    and the ``mode`` that ranked them (``keyword`` when semantic search was unavailable);
    ``vector``: the query's vector (384 floats, normalised) when the embedding service gave one."""

    results: list[dict[str, Any]]
    mode: str
    vector: list[float] | None = None


def search(
    *,
    q: str,
    kb_ids: list[int] | None = None,
    public_only: bool = False,
    limit: int = 10,
    mode: str | None = None,
    exclude_kb_ids: Collection[int] = (),
) -> list[dict[str, Any]]:
    """Ranked FAQ items and articles for ``q``: the ``results`` of :func:`search_run`."""
    return search_run(
        q=q,
        kb_ids=kb_ids,
        public_only=public_only,
        limit=limit,
        mode=mode,
        exclude_kb_ids=exclude_kb_ids,
    ).results


def search_run(
    *,
    q: str,
    kb_ids: list[int] | None = None,
    public_only: bool = False,
    limit: int = 10,
    mode: str | None = None,
    exclude_kb_ids: Collection[int] = (),
) -> SearchResult:
    """Ranked FAQ items and articles for ``q``, and the mode that ranked them. ``kb_ids``
    narrows the knowledge bases; ``public_only`` keeps to public ones and published articles;
    ``exclude_kb_ids`` leaves knowledge bases out (those the reader may not see,
    :mod:`kbase.access`).
    ``mode``: ``keyword`` (full text), ``semantic`` (embeddings) or ``hybrid`` (the cosine
    similarity plus a keyword bonus, see the module docstring); the default is hybrid. The query
    vector comes from the embedding service (:mod:`kbase.embed_service`, asked before the
    keyword query runs so both proceed together); when it is off, absent or does not answer
    within its deadline, every mode falls back to keyword — never an error. ``ValueError`` for
    an unknown mode."""
    if mode not in (None, *MODES):
        raise ValueError(f"unknown search mode {mode!r}")
    mode = mode or "hybrid"
    pending = embed_service.query_vector_request(text=q) if mode != "keyword" else None
    terms = [_escape(t) for t in text.query_terms(q) if t][:32]
    faq, articles = _scope(kb_ids=kb_ids, public_only=public_only, exclude_kb_ids=exclude_kb_ids)
    wide = limit if pending is None else POOL
    keyword = _keyword(terms, faq, articles, wide) if terms else []
    vector = pending.result() if pending is not None else None
    if vector is None:
        return SearchResult(results=keyword[:limit], mode="keyword")
    semantic: list[tuple[str, int, float]] = []
    for kind, model, qs in (("faq", FaqItem, faq), ("article", Article, articles)):
        semantic += [(kind, pk, score) for pk, score in embeddings.nearest(model, vector, qs, POOL)]
    semantic.sort(key=lambda hit: -hit[2])
    cosine = {(kind, pk): score for kind, pk, score in semantic}
    if mode == "semantic":
        fused = [((kind, pk), score) for kind, pk, score in semantic]
    else:
        # similarity plus a keyword bonus: the keyword score scaled to 0..KEYWORD_WEIGHT
        # (items outside the semantic pool get the pool's lowest similarity)
        floor = min(cosine.values(), default=0.0)
        best = max((r["score"] for r in keyword), default=0.0) or 1.0
        scores = dict(cosine)
        for r in keyword:
            key = (r["type"], r["id"])
            scores[key] = scores.get(key, floor) + KEYWORD_WEIGHT * r["score"] / best
        fused = sorted(scores.items(), key=lambda kv: -kv[1])
    known = {(r["type"], r["id"]): r for r in keyword}
    wanted = [key for key, _score in fused[:limit]]
    rows = {
        "faq": FaqItem.objects.select_related("kb").in_bulk([pk for k, pk in wanted if k == "faq"]),
        "article": Article.objects.select_related("kb").in_bulk(
            [pk for k, pk in wanted if k == "article"]
        ),
    }
    out = []
    for (kind, pk), score in fused[:limit]:
        row = rows[kind].get(pk)
        if row is None:
            continue
        result = dict(known.get((kind, pk)) or _result(kind, row, score, terms))
        result["keyword"] = known[(kind, pk)]["score"] if (kind, pk) in known else None
        similarity = cosine.get((kind, pk))
        result["similarity"] = round(similarity, 6) if similarity is not None else None
        result["score"] = round(score, 6)
        out.append(result)
    return SearchResult(results=out, mode=mode, vector=vector)


def scope_items(
    *, kb_ids: list[int] | None, public_only: bool, exclude: set[tuple[str, int]], limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` FAQ items, then articles, of the scope (as :func:`search_run`'s
    ``kb_ids`` / ``public_only``) that are not in ``exclude`` (``(type, id)`` pairs), oldest
    first, as result dicts with ``score`` 0 and no ``keyword`` / ``similarity``: candidates for a
    comparison that the search's ranking cannot make (the robot's Chinese questions,
    :mod:`kefu.robot.decision`)."""
    faq, articles = _scope(kb_ids=kb_ids, public_only=public_only)
    out: list[dict[str, Any]] = []
    for kind, qs in (("faq", faq), ("article", articles)):
        left = limit - len(out)
        if left <= 0:
            break
        skip = [pk for k, pk in exclude if k == kind]
        for row in qs.exclude(pk__in=skip).order_by("pk")[:left]:
            result = _result(kind, row, 0.0, [])
            result["keyword"] = None
            out.append(result)
    return out


def _scope(
    *, kb_ids: list[int] | None, public_only: bool, exclude_kb_ids: Collection[int] = ()
) -> tuple[QuerySet, QuerySet]:
    kbs: QuerySet[KnowledgeBase] = KnowledgeBase.objects.all()
    if kb_ids is not None:
        kbs = kbs.filter(pk__in=kb_ids)
    if exclude_kb_ids:
        kbs = kbs.exclude(pk__in=exclude_kb_ids)
    if public_only:
        kbs = kbs.filter(is_public=True)
    faq = FaqItem.objects.filter(kb__in=kbs, is_published=True).select_related("kb")
    articles = Article.objects.filter(kb__in=kbs).select_related("kb")
    if public_only:
        articles = articles.filter(status=Article.Status.PUBLISHED)
    return faq, articles


def _keyword(terms: list[str], faq: QuerySet, articles: QuerySet, limit: int) -> list[dict]:
    """Full-text ranking: items with every term first, then items with any term (at half
    weight, and always after the former)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    tier: dict[tuple[str, int], int] = {}
    for level, (joiner, penalty) in enumerate((("&", 1.0), ("|", 0.5))):
        query = _query(terms, joiner)
        for kind, qs in (("faq", faq), ("article", articles)):
            # rank at most CANDIDATES matching rows: a query of common words can match most of a
            # large knowledge base, and ranking is per row (bench/kb_search.py)
            candidates = qs.filter(search_vector=query).values("pk")[:CANDIDATES]
            rows = (
                qs.filter(pk__in=candidates)
                .annotate(rank=SearchRank(F("search_vector"), query, cover_density=True))
                .order_by("-rank", "pk")[: limit * 2]
            )
            for row in rows:
                key = (kind, row.pk)
                if key not in found:
                    found[key] = _result(kind, row, float(row.rank) * penalty, terms)
                    tier[key] = level
        if len(found) >= limit or len(terms) == 1:
            break
    # an item with every term stays ahead of any item with only some, whatever their ranks
    return sorted(
        found.values(),
        key=lambda r: (tier[(r["type"], r["id"])], -r["score"], r["type"], r["id"]),
    )[:limit]


def _result(kind: str, row: Any, score: float, terms: list[str]) -> dict[str, Any]:
    if kind == "faq":
        title, body = row.question, row.answer
        url = None
    else:
        title, body = row.title, row.body
        url = (
            f"/help/{row.kb_id}/{row.slug}"
            if row.kb.is_public and row.status == Article.Status.PUBLISHED
            else None
        )
    return {
        "type": kind,
        "id": row.pk,
        "external_id": row.external_id,
        "title": title,
        "snippet": text.snippet(text.markdown_text(body), terms),
        "text": body,
        "score": round(score, 6),
        "similarity": None,
        "keyword": round(score, 6),
        "kb": {"id": row.kb_id, "name": row.kb.name},
        "url": url,
    }
