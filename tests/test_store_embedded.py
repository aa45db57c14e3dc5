"""The embedded index's own behaviour: schema versions and migrations, its SQLite layout, the matrix cache.
What both backends share is in tests/test_store_contract.py."""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import numpy as np
import pytest

from core.store.base import ImageRecord, InvalidRecord, ModelIdentity, SearchFilter, StoreError
from core.store.embedded import DB_NAME, SCHEMA, EmbeddedStore

IDENTITY = ModelIdentity("gem", 8, "random-0")

# What `main` wrote before schema versions (user_version 0): one path per image, as TEXT.
V1_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE, name TEXT NOT NULL, folder TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, vector BLOB NOT NULL
);
"""


def unit(n: int, seed: int = 0, dims: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rec(image_id: str, *paths: str) -> ImageRecord:
    return ImageRecord(image_id, paths, 10, 1, 2, 3, "h", 4, 3)


@pytest.fixture
def store(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.initialize(IDENTITY)
    yield store
    store.close()


def write_v1_index(folder, n: int) -> np.ndarray:
    vectors = unit(n)
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(V1_SQL)
    db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(IDENTITY.to_dict()),))
    db.executemany("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?)",
                   [(f"{i:032x}", f"/photos/Zürich/img{i}.jpg", f"img{i}.jpg", "/photos/Zürich", 1000 + i, 7 * i,
                     f"hash{i}", 640, 480, vectors[i].tobytes()) for i in range(n)])
    db.commit()
    db.close()
    return vectors


def test_a_v1_index_is_migrated_once_losing_nothing(tmp_path, caplog):
    n = 2500  # more than one page of the migration
    vectors = write_v1_index(tmp_path, n)
    calls = []
    with caplog.at_level(logging.INFO, logger="core.store.embedded"):
        store = EmbeddedStore(tmp_path, progress=lambda done, total: calls.append((done, total)))
    # Steps 1 -> 2 (pages of 1,000) and 2 -> 3 (pages of 10,000 vectors) each count up to n.
    assert calls == [(1000, n), (2000, n), (n, n), (n, n)]
    assert "from schema 1 to 2: 2500 images" in caplog.text and "from schema 2 to 3: 2500 images" in caplog.text
    assert store.identity == IDENTITY and store.count() == n
    record = store.get(f"{42:032x}")
    assert record == ImageRecord(f"{42:032x}", ("/photos/Zürich/img42.jpg",), 1042, 294, 0, 0, "hash42", 640, 480)
    assert store.get_by_path("/photos/Zürich/img42.jpg") == record
    np.testing.assert_array_equal(store.vector(f"{42:032x}"), vectors[42])
    hits = store.knn(vectors[7], 3, SearchFilter(text="ZÜRICH img7"))
    assert hits[0].record.id == f"{7:032x}" and hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert len(list(store.records(under="/photos/Zürich"))) == n
    store.close()

    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == \
        {"meta", "images", "image_paths", "dead_slots"}
    db.close()
    calls.clear()
    EmbeddedStore(tmp_path, progress=lambda done, total: calls.append((done, total))).close()
    assert calls == []  # not again


def test_an_empty_v1_index_is_migrated(tmp_path):
    write_v1_index(tmp_path, 0)
    store = EmbeddedStore(tmp_path)
    assert store.identity == IDENTITY and store.count() == 0
    store.upsert([rec("a", "/a.jpg")], unit(1))
    assert store.get("a") == rec("a", "/a.jpg")


def test_an_index_from_a_newer_version_is_refused(tmp_path):
    EmbeddedStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA + 1}")
    db.close()
    with pytest.raises(StoreError, match=f"newer image-search \\(schema {SCHEMA + 1}; this version knows up to "
                                         f"{SCHEMA}\\)"):
        EmbeddedStore(tmp_path)


def test_wrong_width_vectors_never_reach_the_table(tmp_path, store):
    """Regression: they used to be committed, and the index could never be opened again."""
    store.upsert([rec("a", "/a.jpg")], unit(1))
    with pytest.raises(InvalidRecord, match=r"shape \(1, 8\)"):
        store.upsert([rec("b", "/b.jpg")], unit(1, dims=16))
    store.close()
    reopened = EmbeddedStore(tmp_path)
    assert reopened.count() == 1 and [h.record.id for h in reopened.knn(unit(1)[0], 5)] == ["a"]
    reopened.close()


def test_paths_are_kept_as_raw_bytes(tmp_path, store):
    odd = os.fsdecode(b"/photos/caf\xe9\n.jpg")
    store.upsert([rec("a", odd)], unit(1))
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("SELECT path, typeof(path) FROM image_paths").fetchall() == [(b"/photos/caf\xe9\n.jpg", "blob")]
    db.close()


def test_knn_many_in_blocks_equals_one_query_at_a_time(store, monkeypatch):
    vectors = unit(300, seed=1)
    store.upsert([rec(f"i{i}", f"/p/{i}.jpg") for i in range(300)], vectors)
    monkeypatch.setattr("core.store.embedded.SCORE_BLOCK", 1000)  # 3 queries a block
    queries = unit(10, seed=2)
    many = store.knn_many(queries, 5, SearchFilter(min_score=-0.2))
    for query, hits in zip(queries, many, strict=True):
        expected = np.argsort(-(vectors @ query), kind="stable")[:5]
        assert [h.record.id for h in hits] == [f"i{i}" for i in expected]


def test_the_cache_follows_writes_of_another_process(tmp_path, store):
    store.upsert([rec("a", "/p/a.jpg"), rec("b", "/p/b.jpg")], unit(2))
    assert len(store.knn(unit(1)[0], 10)) == 2
    other = EmbeddedStore(tmp_path)
    other.update([rec("a", "/q/renamed.jpg")])
    other.delete(["b"])
    other.close()
    hits = store.knn(unit(1)[0], 10, SearchFilter(text="renamed"))
    assert [h.record.id for h in hits] == ["a"]


def test_unusable_data_dir_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the index"):
        EmbeddedStore(blocker / "data")
