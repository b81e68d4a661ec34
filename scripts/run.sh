#!/usr/bin/env bash
# Install and run Weiyu with a demo tenant: embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL
# are set, then the Procfile processes (daphne, celery worker, celery beat, the embedding service)
# on $PORT (default 8000).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh" requirements.txt
exec .venv/bin/python scripts/run.py "$@"
