"""Celery tasks of the knowledge base. The task an edit enqueues is defined beside its service
(:func:`kbase.indexing.embed_task`, registered as ``kbase.tasks.embed_task``) and re-exported here,
where Celery's autodiscovery finds it."""

from __future__ import annotations

from kbase.indexing import embed_task

__all__ = ["embed_task"]
