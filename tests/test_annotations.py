"""Tags and photo metadata beside the index, on both backends (the real Elasticsearch test server included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from core.metadata import PhotoMetadata
from core.paths import query_words
from core.store.annotations import InvalidTag, PhotoFilter, annotations_for, clean_tags, date_bound
from core.store.base import ImageRecord, ModelIdentity, new_image_id

pytest_plugins = ["tests.es_fixtures"]

IDENTITY = ModelIdentity("gem", 8, "random-0")


def records(names: list[str]) -> tuple[list[ImageRecord], np.ndarray]:
    recs = [ImageRecord(new_image_id(), (f"/photos/{name}",), 1000 + i, 10**18 + i, 10**18 + i, 100 + i,
                        f"{i:032x}", 640, 480) for i, name in enumerate(names)]
    vectors = np.random.default_rng(0).standard_normal((len(names), IDENTITY.dims)).astype(np.float32)
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


def meta(day: int, camera: str | None = "Canon EOS R5", tz=None) -> PhotoMetadata:
    return PhotoMetadata(datetime(2024, 5, day, 12, 0, 0, tzinfo=tz), "exif", camera, "RF 50mm", 640, 480)


def test_clean_tags():
    assert clean_tags([" Beach ", "beach", "", "Zürich"]) == ["Beach", "Zürich"]
    with pytest.raises(InvalidTag, match="comma"):
        clean_tags(["a,b"])
    with pytest.raises(InvalidTag, match="control"):
        clean_tags(["a\nb"])


def test_date_bounds_are_inclusive_and_a_date_only_end_takes_the_whole_day():
    assert date_bound("2024-05-01", end=False) == "2024-05-01T00:00:00"
    assert date_bound("2024-05-01", end=True) == "2024-05-01T23:59:59"
    assert date_bound("2024-05-01T10:30", end=True) == "2024-05-01T10:30:00"
    assert date_bound("2024-05-01T10:30+02:00", end=False) == "2024-05-01T10:30:00"
    with pytest.raises(ValueError, match="ISO 8601"):
        date_bound("May 1st", end=False)


def test_tags_metadata_and_matching(backend, tmp_path, request):
    recs, vectors = records(["a.jpg", "b.jpg", "c.jpg"])
    a, b, c = (r.id for r in recs)
    store = open_store(backend, tmp_path, request)
    store.initialize(IDENTITY)
    store.upsert(recs, vectors)
    store.finish()
    notes = annotations_for(store)
    notes.put_records(recs, {a: meta(1), b: meta(2, "NIKON D750", timezone(timedelta(hours=-5))), c: meta(3, None)})
    assert notes.set_tags(a, ["Café", " Strand ", "café"]) == ["Café", "Strand"]
    notes.add_tags([a, b], ["STRASSE", "Beach"])
    notes.remove_tags([a], ["beach"])
    assert notes.tags(a) == ["Café", "Strand", "STRASSE"]
    assert notes.tags(b) == ["STRASSE", "Beach"]
    assert notes.tags(c) == []
    assert notes.tag_counts() == {"Café": 1, "Strand": 1, "STRASSE": 2, "Beach": 1}
    got = notes.get_many([a, b, "unknown"])
    assert set(got) == {a, b}
    assert got[b].taken == "2024-05-02T12:00:00-05:00" and got[b].taken_local == "2024-05-02T12:00:00"
    assert got[a].camera == "Canon EOS R5" and got[a].lens == "RF 50mm"

    def ids(text=None, after=None, before=None, camera=None):
        photo = PhotoFilter.parse(after, before, camera)
        return notes.matching_ids(query_words(text), photo.after, photo.before, photo.camera_words())

    # NFD and casefold: "cafe\u0301" is "café" decomposed; "straße" folds to "strasse".
    assert ids("cafe\u0301") == {a}
    assert ids("straße") == {a, b}
    assert ids("canon") == {a}  # the camera is a field words match
    assert ids("a.jpg") == {a}  # names as of the last indexing
    assert ids("photos") == {a, b, c}
    assert ids(after="2024-05-02") == {b, c}
    assert ids(before="2024-05-02") == {a, b}  # a date-only upper bound holds the whole day
    assert ids(after="2024-05-02", before="2024-05-02") == {b}
    assert ids(camera="nikon") == {b}
    assert list(notes.newest([], None, None, [], 10)) == [c, b, a]
    assert list(notes.newest([], None, None, [], 2, 1)) == [b, a]
    assert notes.newest([], None, None, [], 1)[c].camera is None
    notes.close()

    store.close()
    store = open_store(backend, tmp_path, request)  # a restart: new connections, nothing cached
    store.initialize(IDENTITY)
    notes = annotations_for(store)
    assert notes.tags(a) == ["Café", "Strand", "STRASSE"]
    assert notes.metadata_ids() == {a, b, c}
    notes.forget([a])
    assert notes.metadata_ids() == {b, c}
    assert store.vector(b) is not None  # side data never touches a vector
    notes.close()
    store.close()


def test_photo_filter_reference_check():
    from core.store.annotations import Annotation

    note = Annotation(taken_local="2024-05-02T12:00:00", camera="Canon EOS R5")
    assert PhotoFilter.parse("2024-05-02", "2024-05-02", "eos").accepts(note)
    assert not PhotoFilter.parse(after="2024-05-03").accepts(note)
    assert not PhotoFilter.parse(camera="nikon").accepts(note)
    assert PhotoFilter().accepts(None) and not PhotoFilter.parse(after="2024-01-01").accepts(None)
