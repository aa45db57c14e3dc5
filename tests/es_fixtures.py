"""Fixtures for tests against a real Elasticsearch; load with `pytest_plugins = ["tests.es_fixtures"]`.

IMAGE_SEARCH_TEST_ES_URL names the server, started by scripts/start-test-elasticsearch.sh:
    export IMAGE_SEARCH_TEST_ES_URL=$(scripts/start-test-elasticsearch.sh | tail -n 1)
In CI (CI=true) a missing or unreachable server fails these tests, so that they cannot silently not run;
on a developer machine they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ES_URL_VAR = "IMAGE_SEARCH_TEST_ES_URL"
REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO / "scripts" / "start-test-elasticsearch.sh"
STOP_SCRIPT = REPO / "scripts" / "stop-test-elasticsearch.sh"


def es_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must start one: export {ES_URL_VAR}=$({START_SCRIPT.relative_to(REPO)} | "
                    "tail -n 1)", pytrace=False)
    pytest.skip(f"{reason} (set {ES_URL_VAR}, see scripts/start-test-elasticsearch.sh)")


@pytest.fixture(scope="session")
def es_url() -> str:
    """The URL of the shared test server; fails (CI) or skips (elsewhere) when there is none."""
    url = os.environ.get(ES_URL_VAR, "").strip().rstrip("/")
    if not url:
        es_unavailable(f"{ES_URL_VAR} is not set")
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=5) as response:
            response.read()
    except (OSError, ValueError) as exc:
        es_unavailable(f"Elasticsearch at {url} is unreachable: {exc}")
    return url


def drop_indices(url: str, alias: str) -> None:
    """Delete every index a test made under `alias` (the server refuses wildcard deletes)."""
    from elasticsearch import Elasticsearch

    with Elasticsearch(url, request_timeout=30) as es:
        names = list(es.indices.get(index=f"{alias},{alias}-*", ignore_unavailable=True, allow_no_indices=True))
        if names:
            es.indices.delete(index=names, ignore_unavailable=True)


@pytest.fixture
def es_alias(es_url) -> Iterator[str]:
    """A fresh index name (alias) for one test; its indices are deleted afterwards."""
    alias = f"test-{uuid.uuid4().hex[:12]}"
    yield alias
    drop_indices(es_url, alias)


@pytest.fixture
def elastic_store(es_url, es_alias):
    """An ElasticStore on a fresh alias of the shared test server."""
    from core.store.elastic import ElasticStore

    store = ElasticStore(es_url, es_alias)
    yield store
    store.close()


@dataclass
class EsServer:
    url: str
    pid: int
    data_dir: Path
    log: Path


class EsServers:
    """Starts dedicated servers with the start script (for tests that kill one), and cleans up after."""

    def __init__(self):
        self.started: list[EsServer] = []
        self.data_dirs: list[Path] = []

    def data_dir(self) -> Path:
        # Not pytest's tmp_path: as root the server runs as an unprivileged user, who may not enter it.
        path = Path(tempfile.mkdtemp(prefix="image-search-es-test-"))
        self.data_dirs.append(path)
        return path

    def start(self, data_dir: Path) -> EsServer:
        out = subprocess.run(["bash", str(START_SCRIPT), str(data_dir)], capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            pytest.fail(f"start-test-elasticsearch.sh failed ({out.returncode}):\n{out.stderr[-3000:]}")
        lines = out.stdout.strip().splitlines()
        info = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
        server = EsServer(lines[-1], int(info["ES_PID"]), Path(info["ES_DATA_DIR"]), Path(info["ES_LOG"]))
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        if self.started:
            subprocess.run(["bash", str(STOP_SCRIPT), *(s.url for s in self.started)], capture_output=True,
                           timeout=120)
        for path in self.data_dirs:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def es_servers(es_url) -> Iterator[EsServers]:
    """Dedicated servers; depends on es_url so that it runs exactly where the other Elasticsearch tests run."""
    servers = EsServers()
    yield servers
    servers.stop_all()
