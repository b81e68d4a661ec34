"""Run service calls from many threads at once, each inside the tenant like a real worker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection
from django_tenants.utils import schema_context

from tests.waits import WAIT_S


def in_threads(
    schema: str, fn: Callable[[Any], Any], items: Sequence[Any], threads: int
) -> list[Any]:
    """``fn(item)`` for every item, spread over ``threads`` threads released at the same instant.

    Each thread enters ``schema`` and closes its database connection at the end. Returns the
    results (in no particular order); re-raises the first error of any thread.
    """
    chunks = [list(items[n::threads]) for n in range(threads)]
    chunks = [chunk for chunk in chunks if chunk]
    barrier = threading.Barrier(len(chunks))
    results: list[Any] = []
    errors: list[BaseException] = []

    def work(chunk: list[Any]) -> None:
        try:
            barrier.wait(timeout=WAIT_S)
            with schema_context(schema):
                results.extend(fn(item) for item in chunk)
        except BaseException as exc:  # reported in the calling thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=2 * WAIT_S)
    assert not any(worker.is_alive() for worker in workers), "a worker thread hung"
    if errors:
        raise errors[0]
    return results
