#!/usr/bin/env bash
# Packaging check: a non-editable `pip install .` into a fresh virtualenv gives a working CLI and HTTP API
# (page and OpenAPI file included, no Qt, no TensorFlow), and `pip install '.[desktop]'` the desktop app.
# Run by scripts/test.sh; pip's cache makes the second run quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
work="$(mktemp -d)"
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" .
bin="$work/venv/bin"
cd "$work"  # away from the source tree: only the installed copy can be imported

"$bin/python" - <<'PY'
import importlib.util, sys
for absent in ("PySide6", "tensorflow"):
    if importlib.util.find_spec(absent) is not None:
        sys.exit(f"the base install pulled in {absent}")
import core
assert "site-packages" in core.__file__, core.__file__
PY
export IMAGE_SEARCH_DATA_DIR="$work/data" IMAGE_SEARCH_WEIGHTS=random IMAGE_SEARCH_CONFIG="$work/none.toml"
"$bin/image-search" info --json | grep -q '"count": 0'
port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/image-search" serve --port "$port" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
  sleep 1
done
# To files first: `curl | grep -q` fails under pipefail when grep stops reading early (curl gets SIGPIPE).
curl -fs "http://127.0.0.1:$port/" -o "$work/page.html" && grep -qi "<html" "$work/page.html" \
  || { cat "$work/serve.log"; echo "the page is missing"; exit 1; }
curl -fs "http://127.0.0.1:$port/api/openapi.json" -o "$work/openapi.json" && grep -q '"openapi"' "$work/openapi.json" \
  || { cat "$work/serve.log"; echo "the OpenAPI file is missing"; exit 1; }
kill "$server"; wait "$server" 2>/dev/null || true; server=""
echo "base install: CLI, API, page and OpenAPI work"

cd - >/dev/null
"${pip[@]}" '.[desktop]'
cd "$work"
QT_QPA_PLATFORM=offscreen "$bin/image-search" gui --self-test --timeout 120 | tee "$work/self-test.json"
grep -q '"window_visible": true' "$work/self-test.json"
echo "desktop install: the app opens"
