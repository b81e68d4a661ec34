#!/usr/bin/env bash
# ESLint on the browser code (static/, without static/vendor; see eslint.config.js). Installs the
# pinned tools from package-lock.json into node_modules/ when they are missing or out of date.
# Needs node (20.19+) and npm. Extra arguments go to eslint (e.g. --fix).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/eslint ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node_modules/.bin/eslint --max-warnings=0 static eslint.config.js "$@"
