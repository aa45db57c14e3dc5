"""The VectorStore contract (core/store/base.py), one suite run against both backends: the embedded store
in a temporary folder and a real Elasticsearch server (tests/es_fixtures.py).

Vectors are small synthetic unit vectors; expectations come from exact NumPy search (these sizes leave
HNSW no room to miss).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from core.store.base import (
    IdentityMismatch,
    ImageRecord,
    InvalidRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    VectorStore,
)
from core.store.elastic import ElasticStore
from core.store.embedded import EmbeddedStore

pytest_plugins = ["tests.es_fixtures"]

DIMS = 8
IDENTITY = ModelIdentity("gem", DIMS, "random-0")
LATIN1 = os.fsdecode(b"/photos/caf\xe9.jpg")  # not valid UTF-8: a str with a lone surrogate
NFC = unicodedata.normalize("NFC", "/photos/Zürich/café.jpg")
NFD = unicodedata.normalize("NFD", "/photos/Zürich/café.jpg")
NEWLINE = "/photos/two\nlines.jpg"


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rec(image_id: str, *paths: str, size: int = 100, digest: str = "h0") -> ImageRecord:
    return ImageRecord(image_id, paths, size, 1_700_000_000_123_456_789, 1_700_000_001_000_000_000, 4242, digest,
                       640, 480)


Opener = Callable[[], VectorStore]


@pytest.fixture(params=["embedded", "elasticsearch"])
def opener(request, tmp_path) -> Opener:
    """Opens a store on one fresh index; a second call is another process's view of the same index."""
    if request.param == "embedded":
        return lambda: EmbeddedStore(tmp_path / "index")
    url, alias = request.getfixturevalue("es_url"), request.getfixturevalue("es_alias")
    return lambda: ElasticStore(url, alias)


@pytest.fixture
def fresh(opener) -> Iterator[VectorStore]:
    store = opener()
    yield store
    store.close()


@pytest.fixture
def store(fresh) -> VectorStore:
    fresh.initialize(IDENTITY)
    return fresh


def snapshot(store: VectorStore) -> list[tuple[ImageRecord, list[float]]]:
    return [(r, store.vector(r.id).tolist()) for r in sorted(store.records(), key=lambda r: r.id)]


ODD = [rec("latin1", LATIN1), rec("nfc", NFC), rec("nfd", NFD), rec("newline", NEWLINE),
       rec("links", "/photos/a/IMG_1.jpg", "/photos/b/IMG_1 copy.jpg", "/archive/IMG_1.jpg")]


def test_records_round_trip_losslessly_by_id_and_every_path(store):
    store.upsert(ODD, unit(len(ODD)))
    assert store.count() == len(ODD)
    for r in ODD:
        assert store.get(r.id) == r
        for path in r.paths:
            assert store.get_by_path(path) == r
    assert store.get_by_path(LATIN1).paths == (LATIN1,) and os.fsencode(LATIN1) == b"/photos/caf\xe9.jpg"
    assert store.get_by_path(NFC).id == "nfc" and store.get_by_path(NFD).id == "nfd"  # two different names
    assert store.get_by_path("/photos/caf\ufffd.jpg") is None  # the display text is not the name
    assert store.get("nope") is None and store.get_by_path("/nope") is None and store.vector("nope") is None
    assert store.get_many(["nfd", "nope", "latin1", "nfd"]) == {"nfd": ODD[2], "latin1": ODD[0]}
    assert store.get_many([]) == {}


def test_a_very_long_path(store):
    folder = "/" + "/".join(f"{n:02d}" + "é" * 120 for n in range(15))  # ~3,700 bytes, under PATH_MAX
    long = rec("long", f"{folder}/Ünïcode name.jpg")
    store.upsert([long], unit(1))
    assert store.get("long") == long and store.get_by_path(long.path) == long
    assert [h.record for h in store.knn(unit(1)[0], 5, SearchFilter(text="14ÉÉÉ ünïcode"))] == [long]
    assert list(store.records(under=folder)) == [long]


def test_vectors_are_stored_as_unit_rows(store):
    vectors = unit(3) * np.array([[1.0], [2.5], [0.3]], np.float32)  # renormalised on the way in
    store.upsert(ODD[:3], vectors)
    many = store.vectors(["nope", ODD[2].id, ODD[0].id, ODD[1].id])
    assert set(many) == {ODD[2].id, ODD[0].id, ODD[1].id} and store.vectors([]) == {}
    for r, v in zip(ODD[:3], unit(3), strict=True):
        got = store.vector(r.id)
        assert got.dtype == np.float32 and got.shape == (DIMS,)
        np.testing.assert_allclose(got, v, atol=1e-6)
        assert many[r.id].dtype == np.float32 and many[r.id].shape == (DIMS,)
        np.testing.assert_allclose(many[r.id], v, atol=1e-6)


def test_upsert_replaces_by_id(store):
    store.upsert(ODD, unit(len(ODD)))
    changed = rec("nfc", "/photos/renamed.jpg", size=7)
    store.upsert([changed], unit(1, seed=5))
    assert store.count() == len(ODD)
    assert store.get("nfc") == changed and store.get_by_path(NFC) is None
    np.testing.assert_allclose(store.vector("nfc"), unit(1, seed=5)[0], atol=1e-6)
    assert store.knn(unit(1, seed=5)[0], 1)[0].record == changed


def test_update_keeps_the_vector(store):
    vectors = unit(len(ODD))
    store.upsert(ODD, vectors)
    moved = rec("links", "/moved/IMG_1.jpg", size=101, digest="h9")
    store.update([moved, rec("unknown", "/photos/unknown.jpg")])  # unknown ids are ignored
    assert store.count() == len(ODD) and store.get("unknown") is None
    assert store.get_by_path("/photos/unknown.jpg") is None
    assert store.get("links") == moved
    assert store.get_by_path("/photos/a/IMG_1.jpg") is None and store.get_by_path("/moved/IMG_1.jpg") == moved
    np.testing.assert_allclose(store.vector("links"), vectors[4], atol=1e-6)
    hit = store.knn(vectors[4], 1, SearchFilter(text="moved"))[0]
    assert hit.record == moved and hit.score == pytest.approx(1.0, abs=1e-5)
    assert store.knn(vectors[4], 5, SearchFilter(text="archive")) == []


def test_a_path_names_one_image(store):
    """A write that gives a path to another image takes it from its holder; an image left without a path
    is gone with its file."""
    store.upsert([rec("a", "/p/1.jpg"), rec("b", "/p/2.jpg", "/p/3.jpg")], unit(2))
    store.upsert([rec("c", "/p/1.jpg", "/p/2.jpg")], unit(1, seed=3))
    assert store.get("a") is None and store.get("b") == rec("b", "/p/3.jpg")
    assert store.get_by_path("/p/1.jpg").id == "c" and store.get_by_path("/p/2.jpg").id == "c"
    np.testing.assert_allclose(store.vector("b"), unit(2)[1], atol=1e-6)
    store.update([rec("c", "/p/3.jpg")])
    assert store.get("b") is None and store.get_by_path("/p/3.jpg").id == "c"
    assert store.count() == 1 and [h.record.id for h in store.knn(unit(1)[0], 5)] == ["c"]


def test_delete(store):
    store.upsert(ODD, unit(len(ODD)))
    store.delete(["nfc", "links", "missing"])
    assert store.count() == len(ODD) - 2
    assert store.get("nfc") is None and store.get_by_path("/archive/IMG_1.jpg") is None
    assert {h.record.id for h in store.knn(unit(1)[0], 10)} == {"latin1", "nfd", "newline"}
    store.delete([])


def test_find_by_hash(store):
    store.upsert([rec("x", "/p/x.jpg", digest="aa"), rec("y", "/q/y.jpg", digest="aa"),
                  rec("z", "/p/z.jpg", digest="bb")], unit(3))
    assert [r.id for r in store.find_by_hash("aa")] == ["x", "y"]
    assert store.find_by_hash("bb") == [rec("z", "/p/z.jpg", digest="bb")] and store.find_by_hash("cc") == []


def exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ query), kind="stable")[:k])


def test_knn_and_knn_many_order_and_scores(store):
    n = 60
    records = [rec(f"i{i:03d}", f"/photos/album{i % 3}/img{i:03d}.jpg") for i in range(n)]
    vectors = unit(n)
    store.upsert(records, vectors)
    queries = np.vstack([vectors[[0, 17]], unit(2, seed=7)])
    many = store.knn_many(queries, 7)
    assert len(many) == 4
    for query, hits in zip(queries, many, strict=True):
        expected = exact(vectors, query, 7)
        assert [h.record.id for h in hits] == [records[i].id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], vectors[expected] @ query, atol=1e-5)
        assert [h.record.id for h in store.knn(query, 7)] == [h.record.id for h in hits]
    assert many[0][0].record == records[0] and many[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert len(store.knn(queries[0], 1000)) == n
    assert store.knn(queries[0], 0) == [] and store.knn_many(queries[:0], 3) == []


def test_knn_many_on_an_empty_index(store):
    assert store.knn_many(unit(3), 5) == [[], [], []]


TEXT = [rec("t0", NFD), rec("t1", "/pics/zürich/Holiday Beach.JPG"), rec("t2", "/pics/Straße/plain.jpg"),
        rec("t3", "/pics/winter/star*.png"), rec("t4", "/pics/winter/q?.jpg"),
        rec("t5", LATIN1), rec("t6", "/pics/a/one.jpg", "/pics/b/Other Name.jpg")]


@pytest.mark.parametrize("text, expected", [
    ("café", {"t0"}),  # a composed query finds a decomposed name
    (unicodedata.normalize("NFD", "CAFÉ"), {"t0"}),
    ("ZÜRICH", {"t0", "t1"}), ("zürich beach", {"t1"}), ("STRASSE", {"t2"}), ('"holiday beach"', {"t1"}),
    ('"beach holiday"', set()), ("star*", {"t3"}), ("q?", {"t4"}), ("r*", {"t3"}), ("caf\ufffd", {"t5"}),
    ("other", {"t6"}), ("pics a one", {"t6"}), ("nomatch", set()), ("*", {"t3"}),
])
def test_text_filter_folds_case_and_normalisation(store, text, expected):
    store.upsert(TEXT, unit(len(TEXT)))
    hits = store.knn(unit(1, seed=9)[0], 100, SearchFilter(text=text))
    assert {h.record.id for h in hits} == expected
    reference = {r.id for r in TEXT if SearchFilter(text=text).accepts_record(r)}
    assert reference == expected  # the Python rule both backends mirror


def test_score_bounds_and_id_filter(store):
    n = 80
    records = [rec(f"i{i:03d}", f"/photos/img{i:03d}.jpg") for i in range(n)]
    vectors = unit(n)
    store.upsert(records, vectors)
    query = vectors[0]
    scores = vectors @ query
    for low, high in [(0.5, None), (None, 0.3), (0.0, 0.4), (0.9999, None), (1.5, None)]:
        hits = store.knn(query, 10, SearchFilter(min_score=low, max_score=high))
        allowed = [i for i in np.argsort(-scores) if (low is None or scores[i] >= low)
                   and (high is None or scores[i] <= high)]
        assert [h.record.id for h in hits] == [records[i].id for i in allowed[:10]], (low, high)
    some = frozenset({"i005", "i010", "i070"})
    assert {h.record.id for h in store.knn(query, 10, SearchFilter(ids=some))} == some
    assert store.knn(query, 10, SearchFilter(ids=frozenset())) == []


def test_records_under_any_of_several_paths(store):
    odd_folder = os.fsdecode(b"/photos/\xff\xfe")
    records = [rec("a1", "/a/x.jpg"), rec("a2", "/a/sub/y.jpg"), rec("ab", "/ab/z.jpg"),
               rec("both", "/b/link.jpg", "/a/link.jpg", "/a/sub/link2.jpg"), rec("odd", f"{odd_folder}/w.jpg"),
               rec("odd2", os.fsdecode(b"/photos/\xff\xfd/w.jpg"))]
    store.upsert(records, unit(len(records)))
    under_a = [r.id for r in store.records(under="/a")]
    assert sorted(under_a) == ["a1", "a2", "both"] and len(under_a) == 3  # each image once, never /ab
    assert sorted(r.id for r in store.records(under="/a/")) == ["a1", "a2", "both"]
    assert [r.id for r in store.records(under="/b")] == ["both"]
    assert [r.id for r in store.records(under=odd_folder)] == ["odd"]  # the bytes decide, not the display text
    assert list(store.records(under="/nowhere")) == []
    assert sorted(r.id for r in store.records()) == sorted(r.id for r in records)
    assert store.get("both") in store.records(under="/a/sub")


@pytest.mark.parametrize("case", ["wrong dims", "nan", "zero", "nul in path", "duplicate ids", "no path",
                                  "not a file name", "same path twice", "count mismatch", "negative size"])
def test_invalid_writes_change_nothing(store, case):
    store.upsert(ODD, unit(len(ODD)))
    before = snapshot(store)
    good = [rec("new1", "/new/1.jpg"), rec("new2", "/new/2.jpg")]
    records, vectors = good, unit(2, seed=4)
    if case == "wrong dims":
        vectors = np.ones((2, DIMS + 1), np.float32)
    elif case == "nan":
        vectors[1, 0] = np.nan
    elif case == "zero":
        vectors[1] = 0
    elif case == "nul in path":
        records = [good[0], rec("new2", "/new/2\x00.jpg")]
    elif case == "duplicate ids":
        records = [good[0], rec("new1", "/new/3.jpg")]
    elif case == "no path":
        records = [good[0], rec("new2")]
    elif case == "not a file name":
        records = [good[0], rec("new2", "/new/\ud800.jpg")]  # a surrogate that is no undecodable byte
    elif case == "same path twice":
        records = [good[0], rec("new2", "/new/1.jpg")]
    elif case == "count mismatch":
        vectors = unit(3)
    elif case == "negative size":
        records = [good[0], rec("new2", "/new/2.jpg", size=-1)]
    with pytest.raises(InvalidRecord):
        store.upsert(records, vectors)
    if case not in ("wrong dims", "nan", "zero", "count mismatch"):
        with pytest.raises(InvalidRecord):
            store.update([ODD[0], *records])
    assert snapshot(store) == before


def test_writes_before_initialize_raise(fresh):
    assert fresh.identity is None and fresh.count() == 0
    assert fresh.knn(unit(1)[0], 5) == [] and list(fresh.records()) == [] and fresh.get("x") is None
    assert fresh.get_many(["x"]) == {} and fresh.get_by_path("/x") is None and fresh.find_by_hash("h0") == []
    for write in (lambda: fresh.upsert([rec("a", "/a.jpg")], unit(1)), lambda: fresh.update([rec("a", "/a.jpg")]),
                  lambda: fresh.delete(["a"])):
        with pytest.raises(StoreError, match="not initialised"):
            write()
    assert fresh.identity is None and fresh.count() == 0


def test_identity_is_recorded_and_enforced(store, opener):
    store.initialize(IDENTITY)  # idempotent
    store.upsert(ODD[:1], unit(1))
    store.finish()
    other = opener()  # another process
    try:
        assert other.identity == IDENTITY and other.get("latin1") == ODD[0] and other.count() == 1
        with pytest.raises(IdentityMismatch, match="vgg16-gem-8d-random-0") as error:
            other.initialize(ModelIdentity("fc1", 4096, "random-0"))
        assert "vgg16-fc1-4096d-random-0" in str(error.value)
        assert other.identity == IDENTITY and other.count() == 1
    finally:
        other.close()


def test_writes_of_another_store_object_are_seen_after_finish(store, opener):
    store.upsert(ODD[:2], unit(2))
    assert len(store.knn(unit(1)[0], 10)) == 2  # its own writes: at once
    other = opener()
    try:
        other.upsert(ODD[2:], unit(len(ODD) - 2, seed=1))
        other.finish()
    finally:
        other.close()
    assert len(store.knn(unit(1)[0], 10)) == len(ODD) and store.count() == len(ODD)
    assert store.get_by_path(NEWLINE) == ODD[3]
