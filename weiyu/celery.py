"""The Celery application. Tasks take a tenant ``schema`` argument and enter it explicitly."""

import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

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


def _db_connection() -> Any:
    from django.db import DEFAULT_DB_ALIAS, connections

    return connections[DEFAULT_DB_ALIAS]


@task_prerun.connect(weak=False)
def db_connection_check(task: Any = None, **_: Any) -> None:
    """Before a task in a worker: the connection kept from the previous task (settings
    ``CELERY_DB_REUSE_MAX``) is checked (one ``SELECT 1``) and dropped when PostgreSQL closed it
    meanwhile, so the task opens a fresh one instead of failing. Not for eager tasks."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    conn = _db_connection()
    if conn.connection is not None and not conn.is_usable():
        conn.close()


@task_postrun.connect(weak=False)
def db_transaction_drop(task: Any = None, **_: Any) -> None:
    """After a task in a worker: a transaction the task left open is not carried into the next
    task (its connection goes back to the pool, rolled back). Not for eager tasks."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    conn = _db_connection()
    if conn.connection is not None and (conn.in_atomic_block or not conn.get_autocommit()):
        conn.close()
