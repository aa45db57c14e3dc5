#!/usr/bin/env bash
# Start a throwaway single-node Elasticsearch for tests and CI, without Docker.
#
#   scripts/start-test-elasticsearch.sh [DATA_DIR]
#
# Fetches the pinned "integ-test-zip" distribution from Maven Central with Maven (once; the zip is
# cached outside the repo), starts it daemonised on 127.0.0.1 on a free port with security off, waits
# until the cluster is yellow or green, and prints KEY=value lines then the URL as the LAST line of
# stdout:   export IMAGE_SEARCH_TEST_ES_URL=$(scripts/start-test-elasticsearch.sh | tail -n 1)
# DATA_DIR (kept by the stop script) lets a test restart a server on the same data; without it the
# data lives in a temporary folder that scripts/stop-test-elasticsearch.sh deletes.
#
# Needs: Java 17+ (ES_JAVA_HOME, else JAVA_HOME, else `java` on PATH; 21+ turns on the SIMD vector
# code paths), Maven (`mvn`) for the first download, unzip, curl, python3.
# Environment knobs: IMAGE_SEARCH_ES_HEAP (512m), IMAGE_SEARCH_ES_START_TIMEOUT (seconds, 120),
# IMAGE_SEARCH_ES_CACHE, IMAGE_SEARCH_ES_RUNTIME_DIR, IMAGE_SEARCH_ES_USER (user when run as root).
set -euo pipefail

# 8.19 is the newest line published as integ-test-zip on Maven Central (no 9.x there), so the Python
# client is pinned to elasticsearch>=8.19,<9. docker-compose.elastic.yml uses the same version.
ES_VERSION="8.19.21"
ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"

CACHE_DIR="${IMAGE_SEARCH_ES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-search/elasticsearch}"
RUNTIME_DIR="${IMAGE_SEARCH_ES_RUNTIME_DIR:-${TMPDIR:-/tmp}/image-search-es-$(id -u)}"
HEAP="${IMAGE_SEARCH_ES_HEAP:-512m}"
START_TIMEOUT="${IMAGE_SEARCH_ES_START_TIMEOUT:-120}"
ES_USER="${IMAGE_SEARCH_ES_USER:-nobody}"

die() { echo "start-test-elasticsearch: $*" >&2; exit 1; }

for tool in unzip curl python3; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done

# Elasticsearch refuses to run as root, so as root (CI) it runs as an unprivileged user, and every
# folder it touches must be reachable by that user: /root is not, hence the unpack under RUNTIME_DIR.
as_es() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    id "$ES_USER" >/dev/null 2>&1 || die "running as root needs an unprivileged user; '$ES_USER' does not exist (set IMAGE_SEARCH_ES_USER)"
    as_es() { runuser -u "$ES_USER" -- "$@"; }
    DIST_PARENT="$RUNTIME_DIR/dist"
else
    DIST_PARENT="$CACHE_DIR"
fi

mkdir -p "$CACHE_DIR" "$RUNTIME_DIR/instances" "$DIST_PARENT"
chmod 755 "$RUNTIME_DIR" "$RUNTIME_DIR/instances"
ZIP="$CACHE_DIR/elasticsearch-${ES_VERSION}.zip"
ES_HOME="$DIST_PARENT/elasticsearch-${ES_VERSION}"

# One download/unpack at a time when several servers start at once.
exec 9>"$CACHE_DIR/.lock"
command -v flock >/dev/null && flock 9

if [ ! -s "$ZIP" ]; then
    command -v mvn >/dev/null || die "'mvn' is needed to download $ARTIFACT (apt-get install maven)"
    echo "downloading $ARTIFACT ..." >&2
    tmp_dl="$(mktemp -d "$CACHE_DIR/download.XXXXXX")"
    if ! mvn -q -B dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$tmp_dl" >&2; then
        rm -rf "$tmp_dl"
        die "could not download $ARTIFACT from Maven Central"
    fi
    mv "$tmp_dl/elasticsearch-${ES_VERSION}.zip" "$ZIP"
    rm -rf "$tmp_dl"
fi

if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    tmp_unpack="$(mktemp -d "$DIST_PARENT/unpack.XXXXXX")"
    unzip -q "$ZIP" -d "$tmp_unpack"
    rm -rf "$ES_HOME"
    mv "$tmp_unpack/elasticsearch-${ES_VERSION}" "$ES_HOME"
    rm -rf "$tmp_unpack"
    chmod -R a+rX "$ES_HOME" "$DIST_PARENT"
fi
flock -u 9 2>/dev/null || true

if [ -z "${ES_JAVA_HOME:-}" ]; then
    if [ -n "${JAVA_HOME:-}" ]; then
        ES_JAVA_HOME="$JAVA_HOME"
    else
        java_bin="$(command -v java)" || die "no Java found: install Java 17+ or set ES_JAVA_HOME"
        ES_JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$java_bin")")")"
    fi
fi
[ -x "$ES_JAVA_HOME/bin/java" ] || die "ES_JAVA_HOME=$ES_JAVA_HOME has no bin/java"

# A port that is free now; another process could take it before Elasticsearch binds it, in which case
# startup fails with a clear "address in use" in the log tail below.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
INSTANCE="$RUNTIME_DIR/instances/$PORT"
rm -rf "$INSTANCE"
mkdir -p "$INSTANCE/logs" "$INSTANCE/tmp"
cp -r "$ES_HOME/config" "$INSTANCE/config"  # per-instance config: the keystore is written there

if [ $# -ge 1 ] && [ -n "$1" ]; then
    mkdir -p "$1"
    DATA_DIR="$(cd "$1" && pwd)"
else
    DATA_DIR="$INSTANCE/data"
    mkdir -p "$DATA_DIR"
fi
echo "$DATA_DIR" >"$INSTANCE/data_dir"
echo "$URL" >"$INSTANCE/url"
if [ "$(id -u)" = 0 ]; then
    chown -R "$ES_USER" "$INSTANCE" "$DATA_DIR"
    as_es test -w "$DATA_DIR" || die "user '$ES_USER' cannot write $DATA_DIR (a parent folder is closed to it); pick a DATA_DIR under /tmp"
fi

CLUSTER="image-search-test-$PORT"
LOG="$INSTANCE/logs/$CLUSTER.log"

# disk.threshold_enabled=false: a nearly full CI disk must not turn indices read-only or leave new
# shards unassigned; this server holds test data only.
if ! as_es env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$INSTANCE/config" ES_TMPDIR="$INSTANCE/tmp" \
    ES_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP" \
    "$ES_HOME/bin/elasticsearch" -d -p "$INSTANCE/es.pid" \
    -E cluster.name="$CLUSTER" \
    -E node.name="$CLUSTER" \
    -E discovery.type=single-node \
    -E xpack.security.enabled=false \
    -E network.host=127.0.0.1 \
    -E http.port="$PORT" \
    -E path.data="$DATA_DIR" \
    -E path.logs="$INSTANCE/logs" \
    -E cluster.routing.allocation.disk.threshold_enabled=false \
    >"$INSTANCE/logs/console.log" 2>&1; then
    echo "Elasticsearch failed to start; console output:" >&2
    tail -n 40 "$INSTANCE/logs/console.log" >&2 || true
    tail -n 40 "$LOG" >&2 2>/dev/null || true
    exit 1
fi

deadline=$((SECONDS + START_TIMEOUT))
until curl -fsS -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null | grep -q '"status":"\(yellow\|green\)"'; do
    pid="$(cat "$INSTANCE/es.pid" 2>/dev/null || true)"
    if [ $SECONDS -ge $deadline ] || { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; }; then
        echo "Elasticsearch at $URL did not become healthy within ${START_TIMEOUT}s; log tail:" >&2
        tail -n 60 "$LOG" >&2 2>/dev/null || tail -n 60 "$INSTANCE/logs/console.log" >&2 || true
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 1
done

echo "ES_VERSION=$ES_VERSION"
echo "ES_PID=$(cat "$INSTANCE/es.pid")"
echo "ES_PID_FILE=$INSTANCE/es.pid"
echo "ES_DATA_DIR=$DATA_DIR"
echo "ES_LOG=$LOG"
echo "$URL"
