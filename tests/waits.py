"""Waiting in tests: on a condition, never on the clock, with deadlines made for a busy machine.

The suite runs on two cores shared with other work, where a frame, a Celery task or a page can
take many seconds to come. A test waits for the thing it needs (a row, a frame, a mail) and only
fails when it has not come after a deadline far beyond what a healthy run needs, so a slow
machine makes a run slower, never red. ``WEIYU_TEST_WAIT_S`` changes the deadlines (seconds).

Checks that something does *not* happen (no second mail, no frame to the other tenant) still
need a quiet window; they keep their short ones — a slow machine can only make them pass
without proving much, not fail.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_S = float(os.environ.get("WEIYU_TEST_WAIT_S", "60"))
"""Deadline for one thing to happen (a row written by a worker, a frame, a server starting)."""

WAIT_MS = int(WAIT_S * 1000)
"""The same for Playwright, which counts in milliseconds."""


def wait_until(
    condition: Callable[[], T], *, timeout: float = WAIT_S, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``condition()`` until it returns something truthy, and return that.

    Raises ``AssertionError`` (naming ``what``) after ``timeout`` seconds; the last call is made
    after the deadline, so a condition that became true while the machine stalled still counts.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = WAIT_S,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """:func:`wait_until` for async tests: ``condition`` may be a coroutine function (wrap
    database reads with ``database_sync_to_async``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what or condition}")
        await asyncio.sleep(interval)


def fresh_window(window_s: int, need_s: float = 20.0) -> None:
    """Wait until at least ``need_s`` seconds of the current clock-aligned rate-limit window
    (:mod:`weiyu.ratelimit`, windows of ``window_s`` seconds) remain, so that the requests a test
    counts against a budget all fall in one window instead of being split over two."""
    wait_until(lambda: window_s - time.time() % window_s > need_s, what="a fresh window")
