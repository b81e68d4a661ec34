"""The API's documentation page (/api/v1/docs/, Swagger UI over /api/v1/schema/) renders in real
Chromium under the production Content-Security-Policy, with its files served from here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_csp import _watch
from tests.servers import LiveServer, daphne_start
from tests.waits import WAIT_MS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def docs_server(django_db_setup: None) -> Iterator[LiveServer]:
    """A daphne with the policy on (WEIYU_CSP=1, as WEIYU_ENV=production does)."""
    server = daphne_start(name="e2e-api-docs", WEIYU_CSP="1")
    yield server
    server.stop()


def test_the_documentation_page_works_under_the_policy(docs_server, browser) -> None:
    problems: list[str] = []
    outside: list[str] = []
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        _watch(page, problems)
        page.on(
            "request",
            lambda r: outside.append(r.url) if "acme.localhost" not in r.url else None,
        )
        response = page.goto(docs_server.url("acme.localhost", "/api/v1/docs/"))
        assert "script-src 'self'" in response.headers["content-security-policy"]
        # Swagger UI loaded the schema and lists the operations, the bearer scheme among them
        page.locator(".opblock-summary-path", has_text="/api/v1/tickets").first.wait_for(
            timeout=WAIT_MS
        )
        page.locator("button.authorize").click()
        page.get_by_text("bearerAuth").first.wait_for(timeout=WAIT_MS)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert problems == []
    assert outside == []
