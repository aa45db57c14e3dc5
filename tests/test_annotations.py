"""Tags and photo metadata beside the index, on both backends (the real Elasticsearch test server included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.metadata import PhotoMetadata
from core.paths import query_words
from core.store.annotations import InvalidTag, PhotoFilter, annotations_for, clean_tags, date_bound

pytest_plugins = ["tests.es_fixtures", "tests.side_fixtures"]


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


def test_tags_metadata_and_matching(open_store, records):
    recs, vectors = records(["a.jpg", "b.jpg", "c.jpg"])
    a, b, c = (r.id for r in recs)
    store = open_store()
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
    store = open_store()  # a restart: new connections, nothing cached
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


def test_labels_apart_from_tags_matched_by_words(open_store, records):
    recs, vectors = records(["a.jpg", "b.jpg", "c.jpg"])
    a, b, c = (r.id for r in recs)
    store = open_store()
    store.upsert(recs, vectors)
    store.finish()
    notes = annotations_for(store)
    notes.put_records(recs, {a: meta(1)})
    notes.set_tags(a, ["Holiday"])
    assert notes.unlabelled([c, a, b, a, "unknown"]) == [c, a, b, "unknown"]
    notes.set_labels({a: ["tabby, tabby cat", " Egyptian cat ", "TABBY, tabby cat"], b: []})
    assert notes.unlabelled([a, b, c]) == [c]  # b was labelled: nothing above the confidence
    got = notes.get_many([a, b, c])
    assert got[a].labels == ("tabby, tabby cat", "Egyptian cat") and got[a].tags == ("Holiday",)
    assert got[a].labelled and got[b].labelled and got[b].labels == () and not got[c].labelled
    assert got[a].taken_local == "2024-05-01T12:00:00"  # labels leave metadata and tags alone
    assert notes.tags(a) == ["Holiday"] and notes.tag_counts() == {"Holiday": 1}

    def ids(text):
        return notes.matching_ids(query_words(text))

    assert ids("EGYPTIAN") == {a} and ids('"tabby cat"') == {a} and ids("holiday tabby") == {a}
    notes.set_labels({a: ["goldfish"]})  # replaces
    assert ids("tabby") == set() and ids("goldfish") == {a}
    notes.add_tags([a], ["Beach"])  # a tag change keeps the labels
    assert notes.get_many([a])[a].labels == ("goldfish",)
    with pytest.raises(InvalidTag, match="control"):
        notes.set_labels({b: ["a\nb"]})
    with pytest.raises(InvalidTag, match="list"):
        notes.set_labels({b: "goldfish"})
    assert notes.get_many([b])[b].labels == ()  # nothing written
    notes.close()
    store.close()


def test_a_side_table_from_before_labels_is_migrated(tmp_path, records, identity):
    import sqlite3

    from core.store.embedded import EmbeddedStore

    recs, vectors = records(["a.jpg"])
    store = EmbeddedStore(tmp_path / "data")
    store.initialize(identity)
    store.upsert(recs, vectors)
    store.finish()
    db = sqlite3.connect(tmp_path / "data" / "index.sqlite3")
    db.execute("""CREATE TABLE annotations (
        id TEXT PRIMARY KEY, tags TEXT NOT NULL DEFAULT '[]', taken TEXT, taken_local TEXT, taken_source TEXT,
        camera TEXT, lens TEXT, path_words TEXT NOT NULL DEFAULT '[]', words TEXT NOT NULL DEFAULT '')""")
    db.execute("INSERT INTO annotations VALUES (?, '[\"Old\"]', NULL, NULL, 'mtime', NULL, NULL, '[]', 'old')",
               (recs[0].id,))
    db.commit()
    db.close()
    notes = annotations_for(store)
    assert notes.tags(recs[0].id) == ["Old"] and notes.unlabelled([recs[0].id]) == [recs[0].id]
    notes.set_labels({recs[0].id: ["goldfish"]})
    assert notes.get_many([recs[0].id])[recs[0].id].labels == ("goldfish",)
    assert notes.metadata_ids() == {recs[0].id}
    notes.close()
    store.close()


def test_a_version_1_side_index_is_migrated(request, records, identity):
    """Version 1: no labels, words searched by wildcards in `words`; its documents are rewritten once."""
    from elasticsearch import Elasticsearch

    from core.store.elastic import ElasticStore

    recs, vectors = records(["a.jpg"])
    url = request.getfixturevalue("es_url")
    store = ElasticStore(url, request.getfixturevalue("es_alias"))
    store.initialize(identity)
    store.upsert(recs, vectors)
    store.finish()
    keyword, stored = {"type": "keyword"}, {"type": "keyword", "index": False, "doc_values": False}
    searched = {"type": "keyword", "doc_values": False}
    version_1 = {"id": keyword, "tags": keyword, "taken": stored, "taken_local": keyword, "taken_source": keyword,
                 "camera": stored, "camera_words": searched, "lens": stored, "path_words": stored, "words": searched}
    index = f"{store.alias}-annotations"
    es = Elasticsearch(url)
    es.indices.create(index=index, mappings={"dynamic": "strict", "properties": version_1})
    es.index(index=index, id=recs[0].id, refresh=True, document={
        "id": recs[0].id, "tags": ["Old"], "taken": "2024-05-01T12:00:00", "taken_local": "2024-05-01T12:00:00",
        "taken_source": "exif", "camera": "Canon EOS R5", "camera_words": "canon eos r5", "lens": None,
        "path_words": ["a.jpg", "/photos"], "words": ["a.jpg", "/photos", "old", "canon eos r5"]})
    notes = annotations_for(store)
    assert notes.matching_ids(["old"]) == notes.matching_ids(["a.jp"]) == {recs[0].id}  # found after migrating
    assert notes.matching_ids(None, camera=["eos"]) == {recs[0].id}
    assert notes.tags(recs[0].id) == ["Old"] and notes.unlabelled([recs[0].id]) == [recs[0].id]
    assert es.indices.get_mapping(index=index)[index]["mappings"]["_meta"] == {"version": 2}
    notes.set_labels({recs[0].id: ["goldfish"]})
    assert notes.get_many([recs[0].id])[recs[0].id].labels == ("goldfish",)
    assert notes.matching_ids(["goldfish"]) == {recs[0].id}
    assert annotations_for(store).matching_ids(["goldfish", "old"]) == {recs[0].id}  # a second open: no migration
    es.close()
    store.close()


def test_suffixes_find_every_substring():
    from core.store.annotations import suffixes

    texts = ["img_01.jpg", "/photos/2024"]
    found = suffixes(texts)
    for text in texts:
        for start in range(len(text)):
            for end in range(start + 1, len(text) + 1):
                assert any(s.startswith(text[start:end]) for s in found)
    assert len(found) == len(set(found)) == 10 + 12
    assert suffixes(["abab"]) == ["ab", "abab", "b", "bab"]
