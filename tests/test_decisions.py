""""Not duplicates" decisions on both backends (the real Elasticsearch test server included)."""

from __future__ import annotations

import numpy as np
import pytest

from core.store.base import ImageRecord, ModelIdentity, new_image_id
from core.store.decisions import decisions_for, pair, pairs_of

pytest_plugins = ["tests.es_fixtures"]

IDENTITY = ModelIdentity("gem", 8, "random-0")


def records(n: int) -> tuple[list[ImageRecord], np.ndarray]:
    recs = [ImageRecord(new_image_id(), (f"/photos/{i}.jpg",), 1000 + i, 10**18 + i, 10**18 + i, 100 + i,
                        f"{i:032x}", 640, 480) for i in range(n)]
    vectors = np.random.default_rng(0).standard_normal((n, IDENTITY.dims)).astype(np.float32)
    return recs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def open_store(backend: str, tmp_path, request):
    if backend == "embedded":
        from core.store.embedded import EmbeddedStore

        return EmbeddedStore(tmp_path / "data")
    from core.store.elastic import ElasticStore

    return ElasticStore(request.getfixturevalue("es_url"), request.getfixturevalue("es_alias"))


@pytest.fixture(params=["embedded", "elasticsearch"])
def backend(request) -> str:
    return request.param


def test_pairs_are_stored_once_in_either_order():
    assert pair("b", "a") == pair("a", "b") == ("a", "b")
    assert pairs_of(["c", "a", "b", "a"]) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_decisions_survive_a_restart_and_leave_vectors_alone(backend, tmp_path, request):
    recs, vectors = records(4)
    a, b, c, d = (r.id for r in recs)
    store = open_store(backend, tmp_path, request)
    store.initialize(IDENTITY)
    store.upsert(recs, vectors)
    store.finish()
    decisions = decisions_for(store)
    assert decisions.excluded_pairs() == set()
    assert not decisions.is_excluded(a, b)
    assert decisions.mark_not_duplicates([b, a]) == 1
    assert decisions.mark_not_duplicates([a, c, d]) == 3  # a whole group: its three pairs
    decisions.close()
    store.close()

    store = open_store(backend, tmp_path, request)  # a restart: new connections, nothing cached
    store.initialize(IDENTITY)
    decisions = decisions_for(store)
    assert decisions.is_excluded(b, a) and decisions.is_excluded(d, c)
    assert not decisions.is_excluded(b, c)
    assert decisions.excluded_pairs() == {pair(a, b), pair(a, c), pair(a, d), pair(c, d)}
    assert store.count() == 4
    for record, vector in zip(recs, vectors, strict=True):
        np.testing.assert_allclose(store.vector(record.id), vector, atol=1e-6)
    assert [h.record.id for h in store.knn(vectors[0], 1)] == [a]

    decisions.reset()
    assert decisions.excluded_pairs() == set()
    assert not decisions.is_excluded(a, b)
    assert decisions.mark_not_duplicates([a, b]) == 1  # usable again after a reset
    assert decisions.excluded_pairs() == {pair(a, b)}
    decisions.close()
    store.close()


def test_marking_one_image_records_nothing(backend, tmp_path, request):
    store = open_store(backend, tmp_path, request)
    store.initialize(IDENTITY)
    decisions = decisions_for(store)
    assert decisions.mark_not_duplicates(["x"]) == 0
    assert decisions.excluded_pairs() == set()
    decisions.close()
    store.close()
