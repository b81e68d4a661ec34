#!/usr/bin/env bash
# Install and run the test suite (pytest). Uses DATABASE_URL/REDIS_URL when set, otherwise
# embedded PostgreSQL and Redis. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh" requirements-dev.txt
exec .venv/bin/python scripts/test.py "$@"
