"""Keeping semantic vectors in step with the knowledge base (when :mod:`kbase.embeddings` is
available): an edit enqueues :func:`embed_task` (registered as ``kbase.tasks.embed_task``) after
commit; imports compute them in batches directly."""

from __future__ import annotations

from celery import shared_task
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from kbase import embeddings, multilingual, text
from kbase.models import Article, FaqItem

BATCH = 64
MODELS = {"faq": FaqItem, "article": Article}


def embed(kind: str, ids: list[int], *, progress=None) -> int:
    """Compute and store the vectors of these items now; returns how many. ``progress(n)`` is
    called after each batch (the import's progress bar)."""
    if not ids or not embeddings.available():
        return 0
    model = MODELS[kind]
    done = 0
    for start in range(0, len(ids), BATCH):
        chunk = list(model.objects.filter(pk__in=ids[start : start + BATCH]))
        texts = [
            embeddings.item_text(*(
                (item.question, item.answer) if kind == "faq" else (item.title, item.body)
            ))
            for item in chunk
        ]  # fmt: skip
        vectors = embeddings.encode(texts) if texts else []
        warm(kind, chunk)
        now = timezone.now()
        for item, vector in zip(chunk, vectors, strict=True):
            model.objects.filter(pk=item.pk).update(embedding=vector, updated_at=now)
        done += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return done


def warm(kind: str, items: list) -> int:
    """Encode the robot's multilingual piece vectors (:func:`kbase.text.item_parts`, kept in
    Redis by :func:`kbase.multilingual.vectors`) of those ``items`` (FaqItem or Article rows)
    that contain Chinese, so the first Chinese question about them does not wait for it (~15 ms
    a piece). Returns how many pieces; 0 when the multilingual model is not installed."""
    if not multilingual.available():
        return 0
    pieces: list[str] = []
    for item in items:
        title, body = (item.question, item.answer) if kind == "faq" else (item.title, item.body)
        if text.has_cjk(title) or text.has_cjk(body):
            pieces += text.item_parts(title, body)
    if pieces:
        multilingual.vectors(pieces)
    return len(pieces)


def embed_later(kind: str, ids: list[int]) -> None:
    """After the current transaction commits, have a worker compute these vectors."""
    if not ids or not embeddings.available():
        return
    schema = connection.schema_name

    def send() -> None:
        embed_task.delay(schema, kind, list(ids))

    transaction.on_commit(send)


@shared_task(name="kbase.tasks.embed_task", acks_late=True)
def embed_task(schema: str, kind: str, ids: list[int]) -> int:
    """Compute the sentence vectors of FAQ items (``kind`` ``faq``) or articles (``article``)
    of one tenant; returns how many were stored (0 when semantic search is not installed)."""
    with schema_context(schema):
        return embed(kind, ids)
