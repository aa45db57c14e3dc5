"""ElasticStore against a real Elasticsearch (see tests/es_fixtures.py for how the server is found).

Vectors are small synthetic unit vectors; expectations come from exact NumPy search.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from core.config import Settings
from core.store import open_store
from core.store.base import IdentityMismatch, ImageRecord, ModelIdentity, SearchFilter, StoreError
from core.store.elastic import ElasticStore

# conftest.py may load these too; naming them here keeps this file runnable on its own.
pytest_plugins = ["tests.es_fixtures"]

IDENTITY = ModelIdentity("gem", 32, "random-0")


def unit_vectors(n: int, dims: int, seed: int = 0, clusters: int = 0, spread: float = 0.35) -> np.ndarray:
    """Random unit vectors; with `clusters`, grouped around that many centres (like real descriptors)."""
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.standard_normal((clusters, dims))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dims)) / np.sqrt(dims)
    else:
        x = rng.standard_normal((n, dims))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_records(n: int, root: str = "/photos") -> list[ImageRecord]:
    return [
        ImageRecord(id=f"id{i:06d}", path=f"{root}/album{i % 4}/img{i:05d}.jpg", name=f"img{i:05d}.jpg",
                    folder=f"{root}/album{i % 4}", size=1000 + i, mtime_ns=1_700_000_000_000_000_000 + i,
                    hash=f"h{i}", width=640, height=480)
        for i in range(n)
    ]


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ query), kind="stable")[:k])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- with the shared test server -------------------------------------------------------------------------
def test_a_fresh_alias_is_empty(elastic_store, es_url, es_alias):
    store = elastic_store
    assert store.backend == "elasticsearch"
    assert store.identity is None
    assert store.count() == 0
    assert store.get("nope") is None and store.get_by_path("/nope") is None and store.vector("nope") is None
    assert store.knn(unit_vectors(1, 32)[0], 5) == []
    assert list(store.records()) == [] and list(store.near_pairs(0.9)) == []
    store.delete(["nope"])
    store.finish()
    assert store.location() == f"{es_url} index {es_alias}"
    with pytest.raises(StoreError, match="not initialised"):
        store.upsert(make_records(1), unit_vectors(1, 32))


def test_protocol_end_to_end(elastic_store):
    store = elastic_store
    records, vectors = make_records(500), unit_vectors(500, 32, clusters=8)
    store.initialize(IDENTITY)
    assert store.identity == IDENTITY
    for start in range(0, 500, 128):
        store.upsert(records[start : start + 128], vectors[start : start + 128])
    store.finish()

    assert store.count() == 500
    assert store.get("id000042") == records[42]
    assert store.get_by_path(records[7].path) == records[7]
    np.testing.assert_allclose(store.vector("id000042"), vectors[42], atol=1e-6)

    # kNN: the exact neighbours (these sizes leave HNSW no room to miss) with exact cosine scores.
    for q in (0, 99, 313):
        hits = store.knn(vectors[q], 10)
        expected = exact_top(vectors, vectors[q], 10)
        assert [h.record.id for h in hits] == [records[i].id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], vectors[expected] @ vectors[q], atol=1e-5)
        assert hits[0].record == records[q]

    under = list(store.records(under="/photos/album1/"))
    assert [r.path for r in under] == sorted(r.path for r in records if r.folder == "/photos/album1")
    assert list(store.records(under="/photos/album")) == []  # a folder, not a string prefix
    assert sorted(r.id for r in store.records()) == [r.id for r in records]

    store.delete(["id000001", "id000002", "missing"])
    store.finish()
    assert store.count() == 498 and store.get("id000001") is None


def test_identity_lives_in_the_mapping_behind_an_alias(elastic_store, es_url, es_alias):
    elastic_store.initialize(IDENTITY)
    elastic_store.initialize(IDENTITY)  # idempotent
    other = ElasticStore(es_url, es_alias)  # a second process: reads the identity from the server
    assert other.identity == IDENTITY
    es = elastic_store._es
    concrete = f"{es_alias}-gem-32-random-0"
    assert list(es.indices.get_alias(name=es_alias)) == [concrete]
    mapping = es.indices.get_mapping(index=concrete)[concrete]["mappings"]
    assert mapping["_meta"]["identity"] == IDENTITY.to_dict()
    vector = mapping["properties"]["vector"]
    assert (vector["similarity"], vector["index_options"]["type"], vector["dims"]) == ("dot_product", "int8_hnsw", 32)

    with pytest.raises(IdentityMismatch) as error:
        other.initialize(ModelIdentity("fc1", 32, "imagenet"))
    message = str(error.value)
    assert IDENTITY.label() in message and "vgg16-fc1-32d-imagenet" in message and "--es-index" in message

    # Weights ids like md5:<hex> must give a valid index name.
    assert elastic_store.index_name(ModelIdentity("fc1", 4096, "md5:ABC123")) == f"{es_alias}-fc1-4096-md5-abc123"


def test_an_existing_index_is_searched_by_its_own_type(es_url, es_alias):
    """bbq's 1-bit codes need more re-scoring than int8: the index's type decides, not the opener's default."""
    identity = ModelIdentity("gem", 64, "random-0")
    records, vectors = make_records(400), unit_vectors(400, 64, clusters=8)
    builder = ElasticStore(es_url, es_alias, index_type="bbq_hnsw")
    builder.initialize(identity)
    builder.upsert(records, vectors)
    builder.finish()
    builder.close()
    store = ElasticStore(es_url, es_alias)  # int8_hnsw for new indices
    for q in (3, 200):
        hits = store.knn(vectors[q], 10)
        expected = exact_top(vectors, vectors[q], 10)
        assert [h.record.id for h in hits] == [records[i].id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], vectors[expected] @ vectors[q], atol=1e-5)
    clause = store._knn_clause(vectors[0], 10, SearchFilter())
    assert clause["rescore_vector"] == {"oversample": 10.0} and clause["num_candidates"] == 50
    store.close()


def test_vectors_stay_out_of_source_but_come_back(elastic_store, es_alias):
    elastic_store.initialize(IDENTITY)
    vectors = unit_vectors(3, 32)
    elastic_store.upsert(make_records(3), vectors)
    elastic_store.finish()  # vector() is a search: it sees writes once refreshed
    raw = elastic_store._es.get(index=es_alias, id="id000001")["_source"]
    assert "vector" not in raw and "words" not in raw and raw["name"] == "img00001.jpg"
    np.testing.assert_allclose(elastic_store.vector("id000001"), vectors[1], atol=1e-6)


def test_re_upsert_is_idempotent(elastic_store):
    store = elastic_store
    store.initialize(IDENTITY)
    records, vectors = make_records(300), unit_vectors(300, 32)
    store.upsert(records, vectors)
    store.upsert(records, vectors)
    changed = [ImageRecord(**{**r.to_dict(), "size": 7}) for r in records[:10]]
    store.upsert(changed, unit_vectors(10, 32, seed=5))
    store.finish()
    assert store.count() == 300
    assert store.get(records[3].id).size == 7
    np.testing.assert_allclose(store.vector(records[3].id), unit_vectors(10, 32, seed=5)[3], atol=1e-6)


def test_upsert_checks_its_input(elastic_store):
    elastic_store.initialize(IDENTITY)
    with pytest.raises(StoreError, match="32 dimensions"):
        elastic_store.upsert(make_records(2), unit_vectors(2, 16))
    with pytest.raises(StoreError, match="zero or non-finite vector"):
        elastic_store.upsert(make_records(1), np.zeros((1, 32), np.float32))
    with pytest.raises(StoreError, match="non-finite"):
        elastic_store.upsert(make_records(1), np.full((1, 32), np.nan, np.float32))
    # Nearly-unit vectors (float rounding upstream) are accepted.
    elastic_store.upsert(make_records(1), unit_vectors(1, 32) * 1.001)


TEXT_FILES = [  # (folder, name)
    ("/pics/Summer 2020", "Holiday Beach.JPG"),
    ("/pics/Summer 2020", "straße.png"),
    ("/pics/winter", "ÄRGER-1.jpg"),
    ("/pics/winter", "star*.png"),
    ("/pics/Straße", "plain.jpg"),
    ("/pics/Straße", "q?.jpg"),
    ("/pics/winter", "beachball.gif"),
]


@pytest.mark.parametrize("text", ["beach", "BEACH holiday", "STRASSE", "ärger", "summer beach", "star*", "q?",
                                  "r*", "winter plain", "2020", "pics", "nomatch", "a b c", "*"])
def test_text_filter_matches_the_embedded_store(elastic_store, text):
    """Every word must be a case-insensitive (casefold) substring of the file name or of the folder."""
    records = [ImageRecord(f"t{i}", f"{folder}/{name}", name, folder, 1, 1, "h", 1, 1)
               for i, (folder, name) in enumerate(TEXT_FILES)]
    elastic_store.initialize(IDENTITY)
    elastic_store.upsert(records, unit_vectors(len(records), 32))
    elastic_store.finish()
    words = [w.casefold() for w in SearchFilter(text=text).words()]
    expected = {r.id for r in records if all(w in r.name.casefold() or w in r.folder.casefold() for w in words)}
    hits = elastic_store.knn(unit_vectors(1, 32, seed=9)[0], 100, SearchFilter(text=text))
    assert {h.record.id for h in hits} == expected


def test_min_and_max_score(elastic_store):
    records, vectors = make_records(400), unit_vectors(400, 32, clusters=5)
    elastic_store.initialize(IDENTITY)
    elastic_store.upsert(records, vectors)
    elastic_store.finish()
    query = vectors[0]
    scores = vectors @ query
    for low, high in [(0.5, None), (None, 0.6), (0.2, 0.4), (0.9999, None), (1.5, None)]:
        hits = elastic_store.knn(query, 10, SearchFilter(min_score=low, max_score=high))
        allowed = [i for i in np.argsort(-scores) if (low is None or scores[i] >= low)
                   and (high is None or scores[i] <= high)]
        assert [h.record.id for h in hits] == [records[i].id for i in allowed[:10]], (low, high)
        assert all((low is None or h.score >= low) and (high is None or h.score <= high) for h in hits)


def test_near_pairs_match_exact_search(elastic_store):
    base = unit_vectors(300, 32, clusters=10)
    noise = np.random.default_rng(3).standard_normal((25, 32)).astype(np.float32) * 0.02
    near = base[:25] + noise
    vectors = np.vstack([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    records = make_records(len(vectors))
    elastic_store.initialize(IDENTITY)
    elastic_store.upsert(records, vectors)
    elastic_store.finish()

    threshold = 0.95
    sims = vectors @ vectors.T
    expected = {(records[a].id, records[b].id) for a, b in zip(*np.nonzero(sims >= threshold), strict=True) if a < b}
    found = list(elastic_store.near_pairs(threshold))
    pairs = [(a, b) for a, b, _ in found]
    assert len(pairs) == len(set(pairs)) and all(a < b for a, b in pairs)
    assert set(pairs) == expected and len(expected) >= 25
    index = {r.id: n for n, r in enumerate(records)}
    for a, b, score in found:
        assert score == pytest.approx(float(sims[index[a], index[b]]), abs=1e-5)


def test_a_plain_index_under_the_alias_name_is_refused(elastic_store, es_alias):
    elastic_store._es.indices.create(index=es_alias)
    with pytest.raises(StoreError, match="not an alias"):
        elastic_store.initialize(IDENTITY)


def test_open_store_builds_it_from_settings(es_url, es_alias):
    store = open_store(Settings(backend="elasticsearch", es_url=es_url, es_index=es_alias, es_timeout_s=3))
    try:
        assert isinstance(store, ElasticStore) and store.location() == f"{es_url} index {es_alias}"
        assert store.timeout_s == 3 and store.identity is None
    finally:
        store.close()


# -- faults without a server -----------------------------------------------------------------------------
def test_server_not_running_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{closed_port()}"
    store = open_store(Settings(backend="elasticsearch", es_url=url))
    calls = [lambda: store.identity, store.count, lambda: store.initialize(IDENTITY), lambda: store.get("x"),
             lambda: store.knn(unit_vectors(1, 32)[0], 3), lambda: list(store.records()), store.finish]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreError, match=re.escape(url) + ".*is the server running"):
            call()
        assert time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(StoreError, match=re.escape(url) + ".*did not answer within 1 s"):
            ElasticStore(url, timeout_s=1).count()
        assert time.monotonic() - started < 5


def test_a_server_that_is_not_elasticsearch_is_named():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(StoreError, match="is not Elasticsearch"):
            _ = ElasticStore(url).identity
    finally:
        server.shutdown()


# -- a dedicated server, killed mid-ingest -----------------------------------------------------------------
def test_kill_9_mid_ingest_then_rerun_gives_one_doc_per_id(es_servers):
    data_dir = es_servers.data_dir()
    server = es_servers.start(data_dir)
    n, batch, dims = 8_000, 100, 16
    identity = ModelIdentity("gem", dims, "random-0")
    records, vectors = make_records(n), unit_vectors(n, dims)
    store = ElasticStore(server.url, "crash")
    store.initialize(identity)

    acknowledged: list[int] = []
    errors: list[StoreError] = []

    def ingest() -> None:
        try:
            for start in range(0, n, batch):
                store.upsert(records[start : start + batch], vectors[start : start + batch])
                acknowledged.append(start + batch)
        except StoreError as exc:
            errors.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 5 and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    worker.join(60)
    store.close()
    assert not worker.is_alive()
    assert errors, "the ingest finished before the kill; make it longer"
    assert server.url in str(errors[0])
    done = acknowledged[-1]
    assert 0 < done < n

    restarted = es_servers.start(data_dir)
    store = ElasticStore(restarted.url, "crash")
    try:
        assert store.identity == identity
        store.finish()
        assert store.count() >= done  # every acknowledged batch survived the kill (translog fsync)
        for start in range(0, n, batch):  # the re-run: same ids, so replacements, not duplicates
            store.upsert(records[start : start + batch], vectors[start : start + batch])
        store.finish()
        assert store.count() == n
        ids = [r.id for r in store.records()]
        assert len(ids) == n and set(ids) == {r.id for r in records}
        np.testing.assert_allclose(store.vector(records[n - 1].id), vectors[n - 1], atol=1e-6)
    finally:
        store.close()


# -- the real command line ---------------------------------------------------------------------------------
def test_cli_indexes_and_searches_with_elasticsearch(es_url, es_alias, tmp_path):
    from tests.photos import write_photos

    photos = write_photos(tmp_path / "photos", names=["coffee", "rocket", "astronaut", "chelsea", "camera"])
    base = ["--backend", "elasticsearch", "--es-url", es_url, "--es-index", es_alias, "--weights", "random"]

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "core", *base, *args], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    report = json.loads(cli("index", "--json", str(tmp_path / "photos")))
    assert report["count"] == len(photos) == 5
    query = str(photos[0])
    result = json.loads(cli("search", query, "-k", "3", "--json").splitlines()[0])
    assert len(result["results"]) == 3
    assert result["results"][0]["path"] == os.path.realpath(query) and result["results"][0]["score"] > 0.999
    assert json.loads(cli("index", "--json", str(tmp_path / "photos")))["count"] == 5  # incremental, no dupes
    info = json.loads(cli("info", "--json"))
    assert info["backend"] == "elasticsearch" and info["count"] == 5 and es_alias in info["location"]
