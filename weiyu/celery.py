"""The Celery application. Tasks take a tenant ``schema`` argument and enter it explicitly."""

import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weiyu.settings")

app = Celery("weiyu")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: the message header every published task carries: when it was published (Unix s); /metrics
#: reads it off the oldest waiting task to tell the Celery lag (tenants.metrics)
SENT_AT_HEADER = "weiyu_sent_at"


@before_task_publish.connect(weak=False)
def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp the publishing time on every task message (web processes, beat, workers)."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


#: True in a Celery worker (its main process and the pool's children, forked after
#: ``worker_init``): what it counts for /metrics goes to Redis, since no scrape reads its memory
#: (tenants.metrics)
IN_WORKER = False


@worker_init.connect(weak=False)
def mark_worker(**_: Any) -> None:
    """Mark this process (and the pool's children it forks) as a Celery worker."""
    global IN_WORKER  # noqa: PLW0603 (a process-wide fact, set once at start)
    IN_WORKER = True
