"""The embedded index on its own, with synthetic unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from core.store import IdentityMismatch, ImageRecord, ModelIdentity, SearchFilter, StoreError
from core.store.embedded import EmbeddedStore

IDENTITY = ModelIdentity("gem", 8, "random-0")


def records(n: int, folder: str = "/photos") -> list[ImageRecord]:
    return [ImageRecord(f"id{i}", f"{folder}/img{i}.jpg", f"img{i}.jpg", folder, 10, 1, "h", 4, 3) for i in range(n)]


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.initialize(IDENTITY)
    yield store
    store.close()


def test_knn_is_exact_and_sorted(store):
    vectors = unit(50)
    store.upsert(records(50), vectors)
    query = vectors[7]
    hits = store.knn(query, 5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert [h.record.id for h in hits] == [f"id{i}" for i in expected]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)


def test_upsert_replaces_by_id(store):
    store.upsert(records(5), unit(5))
    store.upsert(records(5), unit(5, seed=1))
    assert store.count() == 5
    assert np.allclose(store.vector("id3"), unit(5, seed=1)[3])
    assert store.knn(unit(5, seed=1)[3], 1)[0].record.id == "id3"


def test_delete_and_records_under_a_folder(store):
    store.upsert(records(3, "/a") + [ImageRecord("b1", "/ab/x.jpg", "x.jpg", "/ab", 1, 1, "h", 1, 1)], unit(4))
    assert [r.id for r in store.records(under="/a")] == ["id0", "id1", "id2"]  # not /ab
    store.delete(["id1"])
    assert store.get("id1") is None and store.count() == 3
    assert {h.record.id for h in store.knn(unit(4)[1], 10)} == {"id0", "id2", "b1"}


def test_filters(store):
    store.upsert(records(10), unit(10))
    assert [h.record.id for h in store.knn(unit(10)[0], 10, SearchFilter(text="IMG3"))] == ["id3"]
    assert store.knn(unit(10)[0], 10, SearchFilter(min_score=0.999))[0].record.id == "id0"
    assert all(h.record.id != "id0" for h in store.knn(unit(10)[0], 10, SearchFilter(max_score=0.99)))


def test_identity_is_recorded_and_enforced(tmp_path, store):
    store.upsert(records(1), unit(1))
    assert EmbeddedStore(tmp_path).identity == IDENTITY
    with pytest.raises(IdentityMismatch, match="vgg16-gem-8d-random-0"):
        EmbeddedStore(tmp_path).initialize(ModelIdentity("fc1", 4096, "random-0"))


def test_another_process_writes_are_seen(tmp_path, store):
    store.upsert(records(2), unit(2))
    assert len(store.knn(unit(2)[0], 10)) == 2
    other = EmbeddedStore(tmp_path)
    other.upsert(records(6), unit(6))
    other.close()
    assert len(store.knn(unit(2)[0], 10)) == 6


def test_near_pairs_each_pair_once(store):
    vectors = unit(4)
    vectors[3] = vectors[1]
    store.upsert(records(4), vectors)
    assert [(a, b) for a, b, _ in store.near_pairs(0.999)] == [("id1", "id3")]


def test_unusable_data_dir_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the index"):
        EmbeddedStore(blocker / "data")
