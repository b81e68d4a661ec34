"""Real-browser tests: daphne serving the test database, Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import LiveServer, daphne_start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[2]
# Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests make
# between browser steps are plain blocking calls, which Django allows once told so.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

if not Path(CHROMIUM).exists():
    pytest.skip(
        "real-browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def daphne_server(django_db_setup: None) -> Iterator[LiveServer]:
    """One daphne process serving HTTP and websockets from the test database."""
    try:
        server = daphne_start(name="e2e-daphne")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, per module: Playwright's sync API runs an event loop in this thread while it is
    open, which the asyncio tests of later modules could not start theirs beside."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield instance
        instance.close()
