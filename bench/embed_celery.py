"""The Celery alternative for query vectors, measured by bench/embed_rtt.py only: a task on the
``embed`` queue answered through a Redis result backend (not used by the product)."""

from __future__ import annotations

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")
django.setup()

REDIS_URL = os.environ["REDIS_URL"]
app = Celery("embed_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue="embed",
    worker_prefetch_multiplier=1,
    result_expires=60,
    broker_connection_retry_on_startup=True,
)


@app.task(name="embed_bench.encode")
def encode_task(text: str) -> list[float]:
    """The vector of one query (loads the model at the first call)."""
    from kbase import embeddings

    return embeddings.encode([text])[0]
