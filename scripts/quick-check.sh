#!/usr/bin/env bash
# The quick check before a commit: lint, import contracts and the fast test tier (`pytest -m "not slow"`: no
# VGG16 graph, Elasticsearch, Chromium, Docker or child process; tests/conftest.py says what is slow).
# Needs the set-up of scripts/setup.sh --test; scripts/test.sh runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/lint-imports
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -p no:cacheprovider -q -m "not slow" "$@"
