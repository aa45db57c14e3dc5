#!/usr/bin/env bash
# Set up and run the whole test suite: installs what it needs, starts a real Elasticsearch test server,
# checks lint and import contracts, checks a non-editable install, runs pytest (desktop tests offscreen,
# real-window ones under Xvfb; the service container is built and run by tests/test_container.py), stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

ES_DATA="$(mktemp -d)"
trap 'bash scripts/stop-test-elasticsearch.sh >/dev/null 2>&1 || true; rm -rf "$ES_DATA"' EXIT
IMAGE_SEARCH_TEST_ES_URL="$(bash scripts/start-test-elasticsearch.sh "$ES_DATA" | tail -n 1)"
export IMAGE_SEARCH_TEST_ES_URL
echo "Elasticsearch test server: $IMAGE_SEARCH_TEST_ES_URL"

.venv/bin/ruff check .
.venv/bin/lint-imports
bash scripts/test-install.sh
xvfb-run -a -s '-screen 0 1280x800x24' .venv/bin/python -m pytest -p no:cacheprovider "$@"
