"""ElasticStore's own behaviour against a real Elasticsearch (see tests/es_fixtures.py for how the server is
found): its layout (alias, mapping, `_source`), schema migrations, faults, a kill -9. What both backends
share is in tests/test_store_contract.py.

Vectors are small synthetic unit vectors; expectations come from exact NumPy search.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
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

from bench.duplicates import segments
from core.config import Settings
from core.errors import EXIT_STATUS, HTTP_STATUS
from core.store import elastic, open_store
from core.store.base import IdentityMismatch, ImageRecord, ModelIdentity, SearchFilter, StoreError
from core.store.elastic import SCHEMA, ElasticStore, ExactSearchUnsupported

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
        ImageRecord(id=f"id{i:06d}", paths=(f"{root}/album{i % 4}/img{i:05d}.jpg",), size=1000 + i,
                    mtime_ns=1_700_000_000_000_000_000 + i, ctime_ns=1_700_000_000_000_000_000 + 2 * i, inode=i,
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
    assert store.backend == "elasticsearch" and store.identity is None and store.count() == 0
    assert store.vector("nope") is None and store.knn_many(unit_vectors(2, 32), 5) == [[], []]
    store.finish()
    assert store.location() == f"{es_url} index {es_alias}"


def test_knn_many_matches_exact_search_across_msearch_batches(elastic_store):
    store = elastic_store
    records, vectors = make_records(500), unit_vectors(500, 32, clusters=8)
    store.initialize(IDENTITY)
    for start in range(0, 500, 128):
        store.upsert(records[start : start + 128], vectors[start : start + 128])
    queries = vectors[:150]  # more than one _msearch request (MSEARCH_BATCH = 64)
    many = store.knn_many(queries, 10)
    for q, hits in enumerate(many):
        expected = exact_top(vectors, vectors[q], 10)
        assert [h.record.id for h in hits] == [records[i].id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], vectors[expected] @ vectors[q], atol=1e-5)
    # A max score makes it ask again for more neighbours, for each query that needs it.
    bounded = store.knn_many(queries[:3], 10, SearchFilter(max_score=0.5))
    for q, hits in enumerate(bounded):
        allowed = [i for i in exact_top(vectors, vectors[q], 500) if vectors[i] @ vectors[q] <= 0.5][:10]
        assert [h.record.id for h in hits] == [records[i].id for i in allowed]


def test_exact_search_is_refused_as_a_usage_error_by_store_and_api(es_url, es_alias, tmp_path):
    """Not "index unavailable" (HTTP 503): a clear 400, and exit status 2 on the command line (below)."""
    from core.api import create_app
    from core.engine import Engine

    settings = Settings(data_dir=str(tmp_path / "data"), weights="random", backend="elasticsearch", es_url=es_url,
                        es_index=es_alias)
    engine = Engine(settings)
    try:
        engine.store.initialize(engine.identity)
        (record,) = make_records(1)
        engine.store.upsert([record], unit_vectors(1, engine.identity.dims))
        with pytest.raises(ExactSearchUnsupported, match="embedded index only") as caught:
            engine.store.knn(unit_vectors(1, engine.identity.dims)[0], 3, SearchFilter(exact=True))
        assert HTTP_STATUS[caught.value.kind] == 400 and EXIT_STATUS[caught.value.kind] == 2

        client = create_app(engine, settings).test_client()
        response = client.get(f"/api/images/{record.id}/similar?exact=true")
        assert response.status_code == 400, response.get_json()
        assert "embedded index only" in response.get_json()["detail"]
        assert client.get(f"/api/images/{record.id}/similar").status_code == 200
    finally:
        engine.close()


def test_identity_lives_in_the_mapping_behind_an_alias(elastic_store, es_url, es_alias):
    elastic_store.initialize(IDENTITY)
    other = ElasticStore(es_url, es_alias)  # a second process: reads the identity from the server
    assert other.identity == IDENTITY
    es = elastic_store._es
    concrete = f"{es_alias}-gem-32-random-0"
    assert list(es.indices.get_alias(name=es_alias)) == [concrete]
    mapping = es.indices.get_mapping(index=concrete)[concrete]["mappings"]
    assert mapping["_meta"] == {"app": "image-search", "schema": SCHEMA, "identity": IDENTITY.to_dict(),
                                "index_type": "int8_hnsw"}
    vector = mapping["properties"]["vector"]
    assert (vector["similarity"], vector["index_options"]["type"], vector["dims"]) == ("dot_product", "int8_flat", 32)
    with pytest.raises(IdentityMismatch, match="--es-index"):
        other.initialize(ModelIdentity("fc1", 32, "imagenet"))
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


def test_a_new_index_is_written_flat_and_takes_its_graph_at_finish(elastic_store, es_url, es_alias, monkeypatch):
    """FLAT_WHILE_BUILDING: no graph is built while documents arrive (searches scan the flat segments
    exactly); finish() gives the index its graph type and merges, and the merged index walks a graph. An
    ingest that died before its finish() leaves the index flat and searchable until the next finish()."""
    monkeypatch.setattr(elastic, "LARGE_INGEST_DOCS", 600)
    store = elastic_store
    store.initialize(IDENTITY)
    index = store.index_name(IDENTITY)

    def vector_type(of: ElasticStore) -> str:
        return of._es.indices.get_mapping(index=index)[index]["mappings"]["properties"]["vector"][
            "index_options"]["type"]

    records, vectors = make_records(3000), unit_vectors(3000, 32, clusters=20)
    store.upsert(records, vectors)
    assert vector_type(store) == "int8_flat"
    for q in (7, 1500):
        expected = [records[i].id for i in exact_top(vectors, vectors[q], 10)]
        assert [h.record.id for h in store.knn(vectors[q], 10)] == expected
    store._es.close()  # no finish(): as if the process had died

    reopened = ElasticStore(es_url, es_alias)
    assert reopened.identity == IDENTITY and vector_type(reopened) == "int8_flat"
    reopened.finish()
    assert vector_type(reopened) == "int8_hnsw"
    deadline = time.monotonic() + 60
    while segments(reopened) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert segments(reopened) == 1
    queries = range(0, 3000, 150)
    profile = reopened._es.search(index=es_alias, knn=reopened._knn_clause(vectors[7], 10, SearchFilter()),
                                  profile=True, size=10)
    assert profile["profile"]["shards"][0]["dfs"]["knn"][0]["vector_operations_count"] < 3000 / 2  # a graph walk
    found = [len({h.record.id for h in reopened.knn(vectors[q], 10)}
                 & {records[i].id for i in exact_top(vectors, vectors[q], 10)}) for q in queries]
    assert sum(found) / (10 * len(found)) >= 0.95
    reopened.close()
    later = ElasticStore(es_url, es_alias)
    assert later.identity == IDENTITY and later._graph_type is None  # nothing left to change
    later.close()


def test_hnsw_candidates_grow_with_the_index(elastic_store):
    """50 candidates for 10 hits up to 100k documents (measured enough there), then 1 + log2(N / 100k) times
    as many: recall@10 fell to 0.945 at 1M with 50 (issue 16). Counted once a minute, and after own writes."""
    store = elastic_store
    store.initialize(IDENTITY)
    store.upsert(make_records(3), unit_vectors(3, 32))
    store.finish()
    assert store._knn_clause(unit_vectors(1, 32)[0], 10, SearchFilter())["num_candidates"] == 50
    assert store._size() == 3
    expected = {100_000: 50, 200_000: 100, 1_000_000: 217, 10_000_000: 383}
    for documents, candidates in expected.items():
        store._counted = (time.monotonic(), documents)  # as if counted just now
        assert store._candidates(10) == candidates
    assert store._candidates(5000) == elastic.MAX_CANDIDATES
    store.upsert(make_records(4), unit_vectors(4, 32))
    store.knn(unit_vectors(1, 32)[0], 10)  # refreshes after its own writes: counted again
    assert store._counted[1] == 4


def test_documents_keep_vectors_out_of_source_and_raw_path_bytes_in_it(elastic_store, es_alias):
    elastic_store.initialize(IDENTITY)
    odd = os.fsdecode(b"/photos/caf\xe9.jpg")
    record = ImageRecord("odd", (odd, "/photos/link.jpg"), 1, 2, 3, 4, "h", 5, 6)
    elastic_store.upsert([record], unit_vectors(1, 32))
    raw = elastic_store._es.get(index=es_alias, id="odd")["_source"]
    assert raw == {"paths": ["/photos/caf\ufffd.jpg", "/photos/link.jpg"],
                   "path_b64": [base64.b64encode(b).decode() for b in (b"/photos/caf\xe9.jpg", b"/photos/link.jpg")],
                   "size": 1, "mtime_ns": 2, "ctime_ns": 3, "inode": 4, "hash": "h", "width": 5, "height": 6}
    np.testing.assert_allclose(elastic_store.vector("odd"), unit_vectors(1, 32)[0], atol=1e-6)


def test_a_large_ingest_pauses_refresh_and_replicas_until_finish(elastic_store, es_url, es_alias, monkeypatch):
    """Over LARGE_INGEST_DOCS written, refresh and replicas are off; finish() restores them and starts a force
    merge into one segment; a process that died before finish() leaves a note in `_meta` that the next
    opening acts on. Multi-chunk upserts go through parallel_bulk, and paths moved between unrefreshed
    batches still end up with one image."""
    monkeypatch.setattr(elastic, "LARGE_INGEST_DOCS", 600)
    store = elastic_store
    store.initialize(IDENTITY)
    index = store.index_name(IDENTITY)

    def state() -> tuple[dict, dict]:
        settings = store._es.indices.get_settings(index=index, flat_settings=True)[index]["settings"]
        meta = store._es.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
        return {n: settings.get(f"index.{n}") for n in elastic.PAUSED_SETTINGS}, meta

    before, _ = state()
    records, vectors = make_records(1200), unit_vectors(1200, 32, clusters=8)
    sent = []  # (threads, chunk size) of each parallel_bulk call
    parallel_bulk = elastic.helpers.parallel_bulk
    monkeypatch.setattr(elastic.helpers, "parallel_bulk", lambda client, actions, thread_count, chunk_size, **kw: (
        sent.append((thread_count, chunk_size)) or parallel_bulk(client, actions, thread_count, chunk_size, **kw)))
    store.upsert(records[:500], vectors[:500])
    assert sent == [(2, 250)]  # one chunk's worth still goes out as two concurrent requests
    assert state()[0] == before
    store.upsert(records[500:], vectors[500:])  # 1400 actions: parallel_bulk, and the ingest is now large
    paused, meta = state()
    assert float(paused.pop("merge.policy.segments_per_tier")) == elastic.PAUSED_SEGMENTS_PER_TIER
    assert paused == {"number_of_replicas": "0", "auto_expand_replicas": "false", "refresh_interval": "-1"}
    assert meta["paused"] == before and meta["identity"] == IDENTITY.to_dict()
    # A path written by the last batch (not refreshed yet) moves to a new image: the old one loses it.
    moved = ImageRecord("new", (records[1100].path,), 1, 2, 3, 4, "h", 5, 6)
    store.upsert([moved], unit_vectors(1, 32, seed=9))
    store.finish()
    restored, meta = state()
    assert restored == before and "paused" not in meta and meta["schema"] == SCHEMA
    # ... and started a force merge on the server: the segments become one.
    deadline = time.monotonic() + 60
    while segments(store) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert segments(store) == 1
    assert store.count() == 1200 and store.get_by_path(records[1100].path).id == "new"
    assert store.get(records[1100].id) is None  # its only path moved: deleted
    np.testing.assert_allclose(store.vector(records[1199].id), vectors[1199], atol=1e-6)

    crashed = ElasticStore(es_url, es_alias)
    crashed.upsert(records[:700], vectors[:700])
    assert state()[0]["refresh_interval"] == "-1"
    crashed._es.close()  # no finish(), no close(): as if the process had died
    reopened = ElasticStore(es_url, es_alias)
    assert reopened.identity == IDENTITY and state()[0] == before and "paused" not in state()[1]
    reopened.close()


def test_re_upsert_is_idempotent(elastic_store):
    store = elastic_store
    store.initialize(IDENTITY)
    records, vectors = make_records(300), unit_vectors(300, 32)
    store.upsert(records, vectors)
    store.upsert(records, vectors)
    changed = [ImageRecord(**{**r.to_dict(), "size": 7}) for r in records[:10]]
    store.upsert(changed, unit_vectors(10, 32, seed=5))
    assert store.count() == 300
    assert store.get(records[3].id).size == 7
    np.testing.assert_allclose(store.vector(records[3].id), unit_vectors(10, 32, seed=5)[3], atol=1e-6)


# Today's `main` mapping (schema 1), as a test can build it: one `path` per document, `name` and `folder`.
def v1_mappings(identity: ModelIdentity) -> dict:
    text_and_keyword = {"type": "text", "fields": {"keyword": {"type": "keyword"}}}
    return {
        "dynamic": "strict",
        "_meta": {"app": "image-search", "schema": 1, "identity": identity.to_dict()},
        "_source": {"excludes": ["vector", "words"]},
        "properties": {
            "path": {"type": "keyword"}, "name": text_and_keyword, "folder": text_and_keyword,
            "words": {"type": "keyword", "doc_values": False}, "size": {"type": "long"},
            "mtime_ns": {"type": "long"}, "hash": {"type": "keyword"}, "width": {"type": "integer"},
            "height": {"type": "integer"},
            "vector": {"type": "dense_vector", "dims": identity.dims, "index": True, "similarity": "dot_product",
                       "index_options": {"type": "int8_hnsw"}},
        },
    }


def test_a_schema_1_index_is_migrated_once_losing_nothing(es_url, es_alias, caplog):
    n = 1200  # more than one bulk batch of the migration
    vectors = unit_vectors(n, 32, clusters=4)
    concrete = f"{es_alias}-gem-32-random-0"
    maker = ElasticStore(es_url, es_alias)
    es = maker._es
    es.indices.create(index=concrete, mappings=v1_mappings(IDENTITY), settings={"number_of_shards": 1})
    es.indices.update_aliases(actions=[{"add": {"index": concrete, "alias": es_alias, "is_write_index": True}}])
    from elasticsearch import helpers

    helpers.bulk(es, ({"_index": concrete, "_id": f"{i:032x}", "_source": {
        "path": f"/photos/Zürich/img{i}.jpg", "name": f"img{i}.jpg", "folder": "/photos/Zürich",
        "words": [f"img{i}.jpg", "/photos/zürich"], "size": 1000 + i, "mtime_ns": 7 * i, "hash": f"hash{i}",
        "width": 640, "height": 480, "vector": vectors[i].tolist()}} for i in range(n)), refresh=True)
    maker.close()

    calls = []
    with caplog.at_level(logging.INFO, logger="core.store.elastic"):
        store = ElasticStore(es_url, es_alias, progress=lambda done, total: calls.append((done, total)))
        assert store.identity == IDENTITY
    assert calls[-1] == (n, n) and len(calls) == 3
    assert "from schema 1 to 2: 1200 images" in caplog.text
    mapping = store._es.indices.get_mapping(index=concrete)[concrete]["mappings"]
    assert mapping["_meta"] == {"app": "image-search", "schema": SCHEMA, "identity": IDENTITY.to_dict()}
    assert store.count() == n
    record = store.get(f"{42:032x}")
    assert record == ImageRecord(f"{42:032x}", ("/photos/Zürich/img42.jpg",), 1042, 294, 0, 0, "hash42", 640, 480)
    assert store.get_by_path("/photos/Zürich/img42.jpg") == record
    np.testing.assert_allclose(store.vector(f"{42:032x}"), vectors[42], atol=1e-6)
    hits = store.knn(vectors[7], 3, SearchFilter(text="ZÜRICH img7"))
    assert hits[0].record.id == f"{7:032x}" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert sum(1 for _ in store.records(under="/photos/Zürich")) == n
    store.close()

    calls.clear()
    again = ElasticStore(es_url, es_alias, progress=lambda done, total: calls.append((done, total)))
    assert again.identity == IDENTITY and calls == []  # not again
    again.close()


def test_an_index_from_a_newer_version_is_refused(elastic_store, es_url, es_alias):
    elastic_store.initialize(IDENTITY)
    concrete = elastic_store.index_name(IDENTITY)
    elastic_store._es.indices.put_mapping(index=concrete, meta={"app": "image-search", "schema": SCHEMA + 1,
                                                                "identity": IDENTITY.to_dict()})
    with pytest.raises(StoreError, match=f"newer image-search \\(schema {SCHEMA + 1}"):
        _ = ElasticStore(es_url, es_alias).identity


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
        def do_GET(self):  # http.server's naming
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
    from bench.photos import write_photos

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
    refused = subprocess.run([sys.executable, "-m", "core", *base, "similar", query, "--exact"], capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "embedded index only" in refused.stderr, refused
