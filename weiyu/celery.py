"""The Celery application. Tasks take a tenant ``schema`` argument and enter it explicitly."""

import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

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
