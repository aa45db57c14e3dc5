""""Not duplicates" decisions on both backends (the real Elasticsearch test server included)."""

from __future__ import annotations

import numpy as np

from core.store.decisions import decisions_for, pair, pairs_of

pytest_plugins = ["tests.es_fixtures", "tests.side_fixtures"]


def test_pairs_are_stored_once_in_either_order():
    assert pair("b", "a") == pair("a", "b") == ("a", "b")
    assert pairs_of(["c", "a", "b", "a"]) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_decisions_survive_a_restart_and_leave_vectors_alone(open_store, records):
    recs, vectors = records(["0.jpg", "1.jpg", "2.jpg", "3.jpg"])
    a, b, c, d = (r.id for r in recs)
    store = open_store()
    store.upsert(recs, vectors)
    store.finish()
    decisions = decisions_for(store)
    assert decisions.excluded_pairs() == set()
    assert not decisions.is_excluded(a, b)
    assert decisions.mark_not_duplicates([b, a]) == 1
    assert decisions.mark_not_duplicates([a, c, d]) == 3  # a whole group: its three pairs
    decisions.close()
    store.close()

    store = open_store()  # a restart: new connections, nothing cached
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


def test_marking_one_image_records_nothing(open_store):
    store = open_store()
    decisions = decisions_for(store)
    assert decisions.mark_not_duplicates(["x"]) == 0
    assert decisions.excluded_pairs() == set()
    decisions.close()
    store.close()
