"""Fixtures of the knowledge-base tests: the embedding service as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import EmbedServer


@pytest.fixture(scope="module")
def embed_server(django_db_setup: None, django_db_blocker) -> Iterator[EmbedServer]:
    """``manage.py embed_server`` on the test Redis, warm; stopped after the module."""
    from tests.servers import embed_server_start

    with django_db_blocker.unblock():
        server = embed_server_start(name="embed-kbase")
    yield server
    server.stop()
