#!/usr/bin/env bash
# Stop the Elasticsearch servers that scripts/start-test-elasticsearch.sh started.
#
#   scripts/stop-test-elasticsearch.sh            # every one of them
#   scripts/stop-test-elasticsearch.sh URL|PORT   # only those
#
# Each server gets SIGTERM, then SIGKILL after 30 s. Its instance folder (config, logs, and the data
# when no DATA_DIR was given) is deleted; a DATA_DIR passed to the start script is kept.
set -uo pipefail

RUNTIME_DIR="${IMAGE_SEARCH_ES_RUNTIME_DIR:-${TMPDIR:-/tmp}/image-search-es-$(id -u)}"
INSTANCES="$RUNTIME_DIR/instances"
[ -d "$INSTANCES" ] || exit 0

if [ $# -gt 0 ]; then
    ports=()
    for arg in "$@"; do
        port="${arg%/}"
        ports+=("${port##*:}")
    done
else
    ports=()
    for dir in "$INSTANCES"/*/; do
        [ -d "$dir" ] && ports+=("$(basename "$dir")")
    done
fi

# Only a pid whose command line is an Elasticsearch server of this instance is ours: after a reboot
# or a crash the number may belong to another process.
is_ours() {
    local pid="$1" instance="$2"
    [ -r "/proc/$pid/cmdline" ] || { kill -0 "$pid" 2>/dev/null; return; }
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$instance"
}

for port in "${ports[@]}"; do
    instance="$INSTANCES/$port"
    [ -d "$instance" ] || { echo "no test server on port $port" >&2; continue; }
    pid="$(cat "$instance/es.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && is_ours "$pid" "$instance"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "Elasticsearch pid $pid ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        echo "stopped Elasticsearch on port $port (pid $pid)"
    fi
    rm -rf "$instance"
done
exit 0
