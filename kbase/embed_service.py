"""The embedding service: query vectors for knowledge-base search, computed outside the web process.

The sentence model (torch, about ten times the heap of a web process) must not share a process or a GIL
with the websocket path, so web processes never load it. A search that needs a query vector asks
``python manage.py embed_server`` (:func:`serve`, the Procfile's ``embed`` line) over Redis and
waits at most ``WEIYU_EMBED_TIMEOUT_S`` (1.5 s); when the service is absent or late, the search
answers by keywords, as when semantic search is not installed, and the log says so once per
outage. Item vectors (FAQ items, articles) are still computed by the Celery worker
(:mod:`kbase.indexing`).

Protocol, on ``settings.REDIS_URL`` under ``settings.REDIS_KEY_PREFIX`` (bench/kb_search.py
measures it against a Celery task with a Redis result backend):

- ``<prefix>:embed:alive`` — set by a service whose model is loaded, expires after
  :data:`ALIVE_TTL_S` and is refreshed every second. Without it a client does not ask at all.
- ``<prefix>:embed:requests`` — a list; a client ``LPUSH``es ``{"id", "text", "expires"}``
  (``expires``: Unix time in seconds after which nobody waits for the answer any more).
- ``<prefix>:embed:reply:<id>`` — a list; the service ``RPUSH``es the vector as packed float64
  (384 values, normalised, rounded to 6 decimals like :func:`kbase.embeddings.encode`) and lets
  the key expire after :data:`REPLY_TTL_S`; the client ``BLPOP``s it until its deadline.

The service takes up to :data:`BATCH` waiting requests at a time and encodes them together, and
drops those whose client has given up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

from kbase import embeddings

logger = logging.getLogger(__name__)

#: seconds the ``alive`` key outlives the service's last heartbeat
ALIVE_TTL_S = 5
#: seconds an unread reply is kept
REPLY_TTL_S = 30
#: requests encoded together at most
BATCH = 32
#: seconds the vector of an item's piece is kept in Redis (:func:`vectors`)
TEXT_TTL_S = 7 * 24 * 3600
_state_lock = threading.Lock()
_down_reason: str | None = None


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:embed:{name}"


def timeout_s() -> float:
    """Seconds a search waits for its query vector (``WEIYU_EMBED_TIMEOUT_S``, default 1.5)."""
    return float(getattr(settings, "WEIYU_EMBED_TIMEOUT_S", 1.5))


@lru_cache(maxsize=4)
def _client(url: str, timeout: float) -> Any:
    import redis

    # the socket outlives the longest BLPOP; a dead Redis fails fast on connect
    return redis.Redis.from_url(
        url, socket_timeout=timeout + 2, socket_connect_timeout=0.5, health_check_interval=30
    )


def _redis() -> Any:
    return _client(settings.REDIS_URL, timeout_s())


def _mark_down(reason: str) -> None:
    global _down_reason  # noqa: PLW0603 - one log line per outage
    with _state_lock:
        first = _down_reason is None
        _down_reason = reason
    if first:
        logger.warning(
            "semantic search unavailable (%s); knowledge-base search uses keywords only until "
            "the embedding service answers (python manage.py embed_server)",
            reason,
        )


def _mark_up() -> None:
    global _down_reason
    with _state_lock:
        was_down, _down_reason = _down_reason is not None, None
    if was_down:
        logger.warning("the embedding service answers again; semantic search is back")


def _turned_off() -> bool:
    return os.environ.get("WEIYU_SEMANTIC", "").lower() in ("off", "0", "false")


@dataclass
class Pending:
    """A query vector asked for; :meth:`result` waits for it."""

    reply_key: str
    deadline: float

    def result(self) -> list[float] | None:
        """The 384-dimension query vector, or ``None`` when the service did not answer before
        the deadline (or Redis failed); never raises."""
        wait = self.deadline - time.monotonic()
        try:
            # BLPOP's timeout is in seconds (fractions since Redis 6); 0 would mean forever
            got = _redis().blpop([self.reply_key], timeout=max(wait, 0.001))
        except Exception as exc:  # any Redis trouble means keyword search
            _mark_down(f"Redis error: {exc}")
            return None
        if got is None:
            _mark_down(f"no answer within {timeout_s():g} s")
            return None
        _mark_up()
        return array("d", got[1]).tolist()


def query_vector_request(*, text: str) -> Pending | None:
    """Ask the embedding service for the vector of ``text`` (a search query) without waiting;
    ``None`` when semantic search is off (``WEIYU_SEMANTIC=off``), the service is not running
    or Redis fails — the caller then searches by keywords. Never raises."""
    if _turned_off():
        return None
    request_id = uuid.uuid4().hex
    reply_key = _key(f"reply:{request_id}")
    deadline = time.monotonic() + timeout_s()
    payload = json.dumps({"id": request_id, "text": text, "expires": time.time() + timeout_s()})
    try:
        client = _redis()
        if not client.exists(_key("alive")):
            _mark_down("the embedding service is not running")
            return None
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(_key("requests"), payload)
            # a service that died leaves no endless list behind
            pipe.expire(_key("requests"), REPLY_TTL_S)
            pipe.execute()
    except Exception as exc:  # any Redis trouble means keyword search
        _mark_down(f"Redis error: {exc}")
        return None
    return Pending(reply_key=reply_key, deadline=deadline)


def query_vector(*, text: str) -> list[float] | None:
    """The normalised 384-dimension vector of ``text`` from the embedding service, waiting at
    most :func:`timeout_s` seconds; ``None`` when it is unavailable (see
    :func:`query_vector_request`). Never raises."""
    pending = query_vector_request(text=text)
    return pending.result() if pending is not None else None


def vectors(*, texts: list[str], wait_s: float | None = None) -> list[list[float]] | None:
    """The vectors of several ``texts`` (pieces of knowledge-base items), asked for together so
    the service encodes them in one batch. Vectors are kept in Redis for :data:`TEXT_TTL_S`
    (``<prefix>:embed:text:<sha1 of the text>``), shared by every process, so an item's pieces
    are encoded once, not per question. Waits at most ``wait_s`` seconds (default
    :func:`timeout_s`) for those not kept; ``None`` when any is missing (service off, absent,
    late, Redis failing). Never raises."""
    if _turned_off() or not texts:
        return None if texts else []
    keys = [_key("text:" + hashlib.sha1(t.encode()).hexdigest()) for t in texts]  # noqa: S324 - a cache key
    try:
        client = _redis()
        kept = client.mget(keys)
        if any(v is None for v in kept) and not client.exists(_key("alive")):
            _mark_down("the embedding service is not running")
            return None
    except Exception as exc:  # any Redis trouble means no vectors
        _mark_down(f"Redis error: {exc}")
        return None
    wanted = [n for n, v in enumerate(kept) if v is None]
    deadline = time.monotonic() + (wait_s if wait_s is not None else timeout_s())
    expires = time.time() + (deadline - time.monotonic())
    replies = {}
    try:
        with client.pipeline(transaction=False) as pipe:
            for n in wanted:
                request_id = uuid.uuid4().hex
                replies[n] = _key(f"reply:{request_id}")
                payload = {"id": request_id, "text": texts[n], "expires": expires}
                pipe.lpush(_key("requests"), json.dumps(payload))
            pipe.expire(_key("requests"), REPLY_TTL_S)
            pipe.execute()
    except Exception as exc:  # any Redis trouble means no vectors
        _mark_down(f"Redis error: {exc}")
        return None
    out = [array("d", v).tolist() if v is not None else None for v in kept]
    for n in wanted:
        vector = Pending(reply_key=replies[n], deadline=deadline).result()
        if vector is None:
            return None
        out[n] = vector
        try:
            client.set(keys[n], array("d", vector).tobytes(), ex=TEXT_TTL_S)
        except Exception as exc:  # the vector is good; only keeping it failed
            _mark_down(f"Redis error: {exc}")
    return out  # type: ignore[return-value]


def serve(*, stop: threading.Event, ready: threading.Event | None = None) -> None:
    """Answer query-vector requests until ``stop`` is set (checked at least every second).

    Loads the sentence model first (:mod:`kbase.embeddings`; a few seconds) and only then
    announces itself, so a client never waits for a load. ``ready`` is set once it answers.
    Raises ``RuntimeError`` when semantic search is not available in this process.
    """
    import redis

    if not embeddings.available():
        raise RuntimeError("semantic search is not available in this process")
    embeddings.encode(["warm-up"])
    client = _client(settings.REDIS_URL, 1.0)
    beat_at = 0.0
    logger.info("embedding service ready (pid %s)", os.getpid())
    try:
        while not stop.is_set():
            try:
                beat_at = _serve_once(client, embeddings, beat_at, ready)
            except redis.RedisError as exc:
                # Redis restarting: keep the model, try again each second
                logger.warning("embedding service: Redis error (%s); retrying", exc)
                stop.wait(1.0)
                beat_at = 0.0
    finally:
        # clients stop asking at once instead of waiting for the key to expire (unless another
        # service has announced itself since)
        try:
            if client.get(_key("alive")) == str(os.getpid()).encode():
                client.delete(_key("alive"))
        except redis.RedisError:
            pass


def _serve_once(client: Any, embeddings: Any, beat_at: float, ready: Any) -> float:
    """One turn of :func:`serve`: heartbeat when due, then at most one batch (waits up to 1 s
    for it); returns when the next heartbeat is due."""
    now = time.monotonic()
    if now >= beat_at:
        client.set(_key("alive"), os.getpid(), ex=ALIVE_TTL_S)
        beat_at = now + 1.0
        if ready is not None:
            ready.set()
    requests = _key("requests")
    got = client.brpop([requests], timeout=1)
    if got is None:
        return beat_at
    fresh = []
    for item in [got[1], *(client.rpop(requests, BATCH - 1) or [])]:
        try:
            request = json.loads(item)
            if float(request["expires"]) > time.time():
                fresh.append((str(request["id"]), str(request["text"])[:1000]))
        except (ValueError, KeyError, TypeError):
            logger.warning("embedding service: a malformed request was dropped")
    if not fresh:
        return beat_at
    vectors = embeddings.encode([text for _id, text in fresh])
    with client.pipeline(transaction=False) as pipe:
        for (request_id, _text), vector in zip(fresh, vectors, strict=True):
            reply = _key(f"reply:{request_id}")
            pipe.rpush(reply, array("d", vector).tobytes())
            pipe.expire(reply, REPLY_TTL_S)
        pipe.execute()
    return beat_at
