"""Celery tasks of the knowledge base: embeddings for semantic search, computed off the request."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import schema_context

from kbase import indexing


@shared_task(acks_late=True)
def embed_task(schema: str, kind: str, ids: list[int]) -> int:
    """Compute the sentence vectors of FAQ items (``kind`` ``faq``) or articles (``article``)
    of one tenant; returns how many were stored (0 when semantic search is not installed)."""
    with schema_context(schema):
        return indexing.embed(kind, ids)
