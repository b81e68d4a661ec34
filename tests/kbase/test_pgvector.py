"""Semantic search on pgvector: the semantic-search tests run again, in a child pytest, against
the embedded PostgreSQL (pgserver), which ships the extension. The machine's own PostgreSQL may
not have it, in which case the main run covers the exact numpy path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from kbase import embeddings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not embeddings.available(), reason="requirements-semantic.txt is not installed"
)


def test_semantic_search_on_pgvector(tmp_path):
    import pgserver

    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    try:
        assert "1 row" in server.psql(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector';"
        )
        env = dict(
            os.environ,
            DATABASE_URL=f"postgresql://postgres@{quote(str(pgdata), safe='')}/postgres",
            WEIYU_EXPECT_PGVECTOR="1",
            # the cluster is removed whole afterwards; dropping the test database in it first
            # only adds a step that, on a loaded machine, failed with the server going away
            WEIYU_TEST_KEEP_DB="1",
            # the child's embedding service under keys of its own
            CHANNEL_PREFIX=f"{os.environ.get('CHANNEL_PREFIX', 'weiyu')}pgv",
        )
        result = subprocess.run(
            [
                sys.executable, "-m", "pytest", "tests/kbase/test_semantic.py",
                "-q", "-p", "no:cacheprovider", "-x",
            ],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        server.cleanup()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout
