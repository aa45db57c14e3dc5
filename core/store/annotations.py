"""Tags and photo metadata of each image, kept beside the index and keyed by image id.

An image id follows the image through renames, moves and re-indexing (core/store/base.py), so its tags do
too. Like the "not duplicates" decisions (decisions.py) this is side data (core/store/side.py): on the
embedded store a table `annotations` in the index's SQLite file; on Elasticsearch a side index
`<alias>-annotations`, one whole document per image.

Labels are the names VGG16's own ImageNet classifier gives an image (set_labels, written by the labelling
pass): stored apart from the user's tags, matched by words search like them. An image is "labelled" once
set_labels has written it, even with no label (nothing above the confidence); `unlabelled` lists the others.

Besides tags and metadata each row keeps the folded (core.paths.fold) names and folders of the image as of
its last indexing. Words-only searches select candidates by them and its tags, labels and camera (embedded:
`words`, those texts joined by newlines; Elasticsearch: `suffixes`, see ElasticAnnotations), and the engine
checks them against the current records, so a stale name can cost a match until the next indexing run,
never give a wrong one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime, time
from typing import Any, Protocol

from typing_extensions import override

from core.errors import INVALID, UserError
from core.metadata import PhotoMetadata
from core.paths import fold, query_words, words_match
from core.store.base import ImageRecord, StoreError, VectorStore
from core.store.side import SideIndex, SideTable, side_index, side_table

log = logging.getLogger(__name__)

SIDE_INDEX_SUFFIX = "-annotations"
SEPARATOR = "\n"  # between folded fields in `words`: a word holding it never matches (query_words splits on it)
PAGE = 1000
# `labels`: a JSON list, NULL while the image was never labelled. Tables written before labels existed get
# the column by migration (EmbeddedAnnotations._migrate), so it comes last in both.
TABLE_SQL = """CREATE TABLE IF NOT EXISTS annotations (
    id TEXT PRIMARY KEY, tags TEXT NOT NULL DEFAULT '[]', taken TEXT, taken_local TEXT, taken_source TEXT,
    camera TEXT, lens TEXT, path_words TEXT NOT NULL DEFAULT '[]', words TEXT NOT NULL DEFAULT '', labels TEXT)"""
COLUMNS = ("id", "tags", "taken", "taken_local", "taken_source", "camera", "lens", "path_words", "words", "labels")
INDEX_SQL = "CREATE INDEX IF NOT EXISTS annotations_taken ON annotations (taken_local)"


_KEYWORD, _STORED = {"type": "keyword"}, {"type": "keyword", "index": False, "doc_values": False}
_SEARCHED = {"type": "keyword", "doc_values": False}
# The side index's mapping (ElasticAnnotations). Version 1 had `words` (searched by wildcards) and no labels;
# version 2 added the labels and `suffixes` and writes no `words` (kept in the mapping of migrated indices).
VERSION = 2
FIELDS = {"id": _KEYWORD, "tags": _KEYWORD, "taken": _STORED, "taken_local": _KEYWORD, "taken_source": _KEYWORD,
          "camera": _STORED, "camera_words": _SEARCHED, "lens": _STORED, "path_words": _STORED,
          "labels": _KEYWORD, "labelled": {"type": "boolean"}, "suffixes": _SEARCHED}


class InvalidTag(UserError, ValueError):
    """A tag that cannot be stored (a comma, a control character); the message is for users."""

    kind = INVALID
    title = "Invalid tag"


@dataclass(frozen=True)
class Annotation:
    """The side data of one image. `taken`: ISO 8601 (with an offset when the photo recorded one);
    `taken_local`: the recorded wall-clock time "YYYY-MM-DDTHH:MM:SS" that date filters compare."""

    tags: tuple[str, ...] = ()
    taken: str | None = None
    taken_local: str | None = None
    taken_source: str | None = None  # "exif" or "mtime"
    camera: str | None = None
    lens: str | None = None
    path_words: tuple[str, ...] = ()  # folded names and folders at the last indexing
    labels: tuple[str, ...] = ()  # VGG16 classifier labels, apart from the user's tags
    labelled: bool = False  # set_labels has written this image (its labels may still be empty)

    def folded_fields(self) -> list[str]:
        """The folded texts a word may match here: tags, labels and camera (names and folders come from the
        record)."""
        return [fold(t) for t in (*self.tags, *self.labels)] + ([fold(self.camera)] if self.camera else [])

    def words(self) -> str:
        """The searchable text: path_words and folded_fields joined by SEPARATOR (the embedded table's
        `words` column; what ElasticAnnotations derives `suffixes` from)."""
        return SEPARATOR.join([*self.path_words, *self.folded_fields()])

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON can hold it (tuples as lists); from_dict reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Annotation:
        """The annotation to_dict wrote; fields it lacks (written by an older version) take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})



def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags as stored: trimmed, empty ones dropped, one per folded spelling (the first kept, case as typed).
    Raises InvalidTag for a comma (tags are listed comma-separated) or a control character."""
    return _cleaned(tags, "tag", commas=False)


def clean_labels(labels: Iterable[str]) -> list[str]:
    """Labels as stored: like clean_tags, but commas are allowed (ImageNet class names hold them: "tabby, tabby
    cat"). Raises InvalidTag for a control character or a label that is not text."""
    return _cleaned(labels, "label", commas=True)


def _cleaned(texts: Iterable[str], what: str, commas: bool) -> list[str]:
    kept: dict[str, str] = {}
    if isinstance(texts, str):  # one string is not a list of them (it would give one tag per character)
        raise InvalidTag(f"give a list of {what}s, not the text {texts!r}")
    for text in texts:
        if not isinstance(text, str):
            raise InvalidTag(f"a {what} must be text, got {text!r}")
        text = text.strip()
        if not commas and "," in text:
            raise InvalidTag(f"a {what} cannot hold a comma: {text!r} (give each {what} on its own)")
        if any(not c.isprintable() and not c.isspace() or c in "\n\r\t" for c in text):
            raise InvalidTag(f"a {what} cannot hold a control character: {text!r}")
        if text and fold(text) not in kept:
            kept[fold(text)] = text
    return list(kept.values())


def date_bound(text: str, end: bool) -> str:
    """A date filter's bound as the `taken_local` text it compares with (both bounds inclusive).

    `text`: ISO 8601 date ("2024-05-01") or date-time ("2024-05-01T10:00", an offset is ignored: photos are
    compared by the wall-clock time they recorded). A date-only upper bound (`end`) includes that whole day.
    Raises ValueError with a message for users."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max if end else time.min).isoformat(timespec="seconds")
        return datetime.fromisoformat(text).replace(tzinfo=None).isoformat(timespec="seconds")
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r} (e.g. 2024-05-01 or 2024-05-01T18:30)") \
            from None


@dataclass(frozen=True)
class PhotoFilter:
    """Date and camera constraints on a search. `after`/`before`: inclusive `taken_local` bounds (from
    date_bound); `camera`: words that must all be in the camera's name (core.paths rule)."""

    after: str | None = None
    before: str | None = None
    camera: str | None = None

    @classmethod
    def parse(cls, after: str | None = None, before: str | None = None, camera: str | None = None) -> PhotoFilter:
        """From user text (ISO 8601 dates or date-times); raises ValueError with a message for users."""
        return cls(date_bound(after, end=False) if after else None, date_bound(before, end=True) if before else None,
                   camera or None)

    def camera_words(self) -> list[str]:
        """The folded words of `camera` (core.paths.query_words); empty without one."""
        return query_words(self.camera)

    def active(self) -> bool:
        """Whether any constraint is set (a date bound or a camera word)."""
        return bool(self.after or self.before or self.camera_words())

    def accepts(self, a: Annotation | None) -> bool:
        """The reference check in Python (what both backends' queries select)."""
        if not self.active():
            return True
        if a is None:
            return False
        if (self.after or self.before) and not a.taken_local:
            return False
        if self.after and a.taken_local < self.after or self.before and a.taken_local > self.before:
            return False
        camera = fold(a.camera) if a.camera else ""
        return all(w in camera for w in self.camera_words())


class Annotations(Protocol):
    """Tags and metadata beside one index. Errors: StoreError with a message for users; InvalidTag."""

    def set_tags(self, image_id: str, tags: Iterable[str]) -> list[str]:
        """Replace the tags of one image; returns them as stored (clean_tags)."""

    def add_tags(self, ids: Iterable[str], words: Iterable[str]) -> None:
        """Add tags to each image (a tag already there in another case is kept as it was)."""

    def remove_tags(self, ids: Iterable[str], words: Iterable[str]) -> None:
        """Remove tags from each image, matched by their folded form ("beach" removes "Beach")."""

    def tags(self, image_id: str) -> list[str]:
        """The tags of one image (empty when it has none)."""

    def tag_counts(self) -> dict[str, int]:
        """How many images carry each tag, by its spelling."""

    def set_labels(self, labels: Mapping[str, Sequence[str]]) -> None:
        """Replace the classifier labels of these image ids (clean_labels; an empty list is "no label above
        the confidence") and mark them labelled. Tags and metadata stay. Raises InvalidTag before writing."""

    def unlabelled(self, ids: Iterable[str]) -> list[str]:
        """The ids among `ids` (in their order, once each) that set_labels never wrote."""

    def put_metadata(self, image_id: str, meta: PhotoMetadata) -> None:
        """Store what read_metadata found for one image (its tags stay)."""

    def put_records(self, records: Sequence[ImageRecord], metadata: Mapping[str, PhotoMetadata]) -> None:
        """Refresh the names and folders of these records and, for ids in `metadata`, their metadata;
        tags stay. Called by the indexer for every record it writes."""

    def get_many(self, ids: Iterable[str]) -> dict[str, Annotation]:
        """Annotations by id; ids never annotated are absent."""

    def put(self, rows: Mapping[str, Annotation]) -> None:
        """Write these annotations whole, by image id (the undo of a trash puts back what was there)."""

    def metadata_ids(self) -> set[str]:
        """The ids whose photo metadata has been read (the indexer reads it for the others)."""

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the rows of deleted images (their tags go with them)."""

    def matching_ids(self, words: Sequence[str] | None = None, after: str | None = None,
                     before: str | None = None, camera: Sequence[str] | None = None) -> set[str]:
        """Ids whose `words` (names, folders, tags, labels, camera) hold every folded word, taken within the
        inclusive `taken_local` bounds (date_bound), and whose camera holds every folded camera word."""

    def newest(self, words: Sequence[str] | None, after: str | None, before: str | None,
               camera: Sequence[str] | None, limit: int, offset: int = 0) -> dict[str, Annotation]:
        """The annotations of `matching_ids`, newest first by `taken_local` (undated last), one page of them
        (a dict in that order)."""

    def close(self) -> None:
        """Release the connection (the store itself stays open)."""


def matches(record: ImageRecord, note: Annotation | None, words: list[str]) -> bool:
    """The one rule (core.paths.words_match) over a record's current names and folders, its tags, labels and
    camera."""
    return words_match(words, record.folded_fields() + (note.folded_fields() if note else []))


def search_words(store: VectorStore, annotations: Annotations, text: str | None, k: int,
                 photo: PhotoFilter) -> list[ImageRecord]:
    """Images matching every word of `text` and `photo`, newest first by date taken (undated last); at most
    k. Candidates come from the annotations a page at a time, each checked against its current record
    (`matches`): a stale name in the annotations costs a match, never gives a wrong one. Raises StoreError."""
    words, camera = query_words(text), photo.camera_words()
    found: list[ImageRecord] = []
    # k and a margin for stale candidates: each candidate is fetched twice (annotation and record), so a
    # larger page costs more than the rare second round trip it saves.
    offset, page = 0, k + max(10, k // 5)
    while len(found) < k:
        notes = annotations.newest(words, photo.after, photo.before, camera, page, offset)
        if not notes:
            break
        offset += len(notes)
        records = store.get_many(notes)
        found += [records[i] for i, note in notes.items() if i in records and matches(records[i], note, words)]
        if len(notes) < page:  # the last page: asking again would cost a round trip for nothing
            break
    return found[:k]


def annotations_for(store: VectorStore) -> Annotations:
    """The annotations kept beside `store` (an EmbeddedStore or an ElasticStore). Raises StoreError."""
    if store.backend == "embedded":
        return EmbeddedAnnotations(side_table(store, [TABLE_SQL, INDEX_SQL]))
    if store.backend == "elasticsearch":
        return ElasticAnnotations(side_index(store, SIDE_INDEX_SUFFIX, FIELDS, VERSION, source_excludes=["suffixes"],
                                             on_open=_migrate))
    raise StoreError(f"no annotations for a {store.backend!r} index")


def _with_metadata(a: Annotation, meta: PhotoMetadata) -> Annotation:
    return replace(a, taken=meta.taken_iso(), taken_local=meta.taken_local(), taken_source=meta.taken_source,
                   camera=meta.camera, lens=meta.lens)


def _with_paths(a: Annotation, record: ImageRecord) -> Annotation:
    return replace(a, path_words=tuple(record.folded_fields()))


def _with_tags(a: Annotation, tags: Iterable[str]) -> Annotation:
    return replace(a, tags=tuple(tags))


def _added(tags: Sequence[str], words: Iterable[str]) -> list[str]:
    return clean_tags([*tags, *words])


def _removed(tags: Sequence[str], words: Iterable[str]) -> list[str]:
    gone = {fold(w.strip()) for w in words}
    return [t for t in tags if fold(t) not in gone]


class _Base(Annotations):
    """The read-modify-write operations both backends share; each backend reads and writes whole rows."""

    def _read(self, ids: list[str]) -> dict[str, Annotation]:
        raise NotImplementedError

    def _write(self, rows: dict[str, Annotation]) -> None:
        raise NotImplementedError

    def _change(self, ids: Iterable[str], change: Callable[[str, Annotation], Annotation]) -> None:
        """Read, change (image id, its annotation or an empty one) and write back whole rows, a page at a time."""
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), PAGE):
            chunk = ids[start:start + PAGE]
            rows = self._read(chunk)
            self._write({i: change(i, rows.get(i, Annotation())) for i in chunk})

    @override
    def get_many(self, ids: Iterable[str]) -> dict[str, Annotation]:
        ids = list(dict.fromkeys(ids))
        found: dict[str, Annotation] = {}
        for start in range(0, len(ids), PAGE):
            found.update(self._read(ids[start:start + PAGE]))
        return found

    @override
    def put(self, rows: Mapping[str, Annotation]) -> None:
        items = list(rows.items())
        for start in range(0, len(items), PAGE):
            self._write(dict(items[start:start + PAGE]))

    @override
    def set_tags(self, image_id: str, tags: Iterable[str]) -> list[str]:
        cleaned = clean_tags(tags)
        self._change([image_id], lambda _, a: _with_tags(a, cleaned))
        return cleaned

    @override
    def add_tags(self, ids: Iterable[str], words: Iterable[str]) -> None:
        words = clean_tags(words)
        self._change(ids, lambda _, a: _with_tags(a, _added(a.tags, words)))

    @override
    def remove_tags(self, ids: Iterable[str], words: Iterable[str]) -> None:
        words = list(words)
        self._change(ids, lambda _, a: _with_tags(a, _removed(a.tags, words)))

    @override
    def tags(self, image_id: str) -> list[str]:
        found = self._read([image_id]).get(image_id)
        return list(found.tags) if found else []

    @override
    def set_labels(self, labels: Mapping[str, Sequence[str]]) -> None:
        cleaned = {i: tuple(clean_labels(names)) for i, names in labels.items()}
        self._change(cleaned, lambda i, a: replace(a, labels=cleaned[i], labelled=True))

    @override
    def unlabelled(self, ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(ids))
        found = self.get_many(ids)
        return [i for i in ids if i not in found or not found[i].labelled]

    @override
    def put_metadata(self, image_id: str, meta: PhotoMetadata) -> None:
        self._change([image_id], lambda _, a: _with_metadata(a, meta))

    @override
    def put_records(self, records: Sequence[ImageRecord], metadata: Mapping[str, PhotoMetadata]) -> None:
        by_id = {r.id: r for r in records}

        def change(image_id: str, a: Annotation) -> Annotation:
            a = _with_paths(a, by_id[image_id])
            return _with_metadata(a, metadata[image_id]) if image_id in metadata else a

        self._change(by_id, change)

    @override
    def matching_ids(self, words=None, after=None, before=None, camera=None) -> set[str]:
        found: set[str] = set()
        offset = 0
        while page := self._select(words, after, before, camera, 10_000, offset, False):
            found.update(page)
            offset += len(page)
        return found

    @override
    def newest(self, words, after, before, camera, limit, offset=0) -> dict[str, Annotation]:
        return self._select(words, after, before, camera, limit, offset, True)

    def _select(self, words, after, before, camera, limit, offset, full: bool) -> dict[str, Annotation | None]:
        """One page of matches, newest first; with their annotations when `full` (else None each)."""
        raise NotImplementedError


class EmbeddedAnnotations(_Base):
    """Annotations in the table `annotations` of the embedded index's SQLite file (a SideTable).

    Searches scan an in-memory copy of each row's words, date and camera, newest first (matching in memory
    beats scanning the table's pages: bench/text_search.py), reloaded when any connection has written.
    """

    def __init__(self, table: SideTable):
        self.table = table
        self._rows: tuple[list[str], list[str | None], list[str], list[str]] | None = None
        self._rows_version: int | None = None
        with table.writing("migrate the annotations") as db:
            # A table written before labels existed gets their column (its rows: never labelled).
            if "labels" not in {row[1] for row in db.execute("PRAGMA table_info(annotations)")}:
                db.execute("ALTER TABLE annotations ADD COLUMN labels TEXT")

    def _read(self, ids: list[str]) -> dict[str, Annotation]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.table.reading("read the annotations") as db:
            rows = db.execute(
                "SELECT id, tags, taken, taken_local, taken_source, camera, lens, path_words, labels FROM annotations "
                f"WHERE id IN ({marks})", ids).fetchall()
        return {row[0]: _from_row(row) for row in rows}

    def _write(self, rows: dict[str, Annotation]) -> None:
        values = [(i, json.dumps(a.tags), a.taken, a.taken_local, a.taken_source, a.camera, a.lens,
                   json.dumps(a.path_words), a.words(), json.dumps(a.labels) if a.labelled else None)
                  for i, a in rows.items()]
        with self.table.writing("write the annotations") as db:
            db.executemany(f"INSERT OR REPLACE INTO annotations ({', '.join(COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(COLUMNS))})", values)
            self._rows = None  # data_version does not change for this connection's own writes

    @override
    def tag_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        with self.table.reading("read the tags") as db:
            for (tags,) in db.execute("SELECT tags FROM annotations WHERE tags != '[]'"):
                counts.update(json.loads(tags))
        return dict(counts)

    @override
    def metadata_ids(self) -> set[str]:
        with self.table.reading("read the annotations") as db:
            return {row[0] for row in db.execute("SELECT id FROM annotations WHERE taken_source IS NOT NULL")}

    @override
    def forget(self, ids: Iterable[str]) -> None:
        with self.table.writing("forget annotations") as db:
            db.executemany("DELETE FROM annotations WHERE id = ?", [(i,) for i in ids])
            self._rows = None

    def _select(self, words, after, before, camera, limit, offset, full):
        ids, taken, texts, cameras = self._searchable()
        rows = range(len(ids))
        if after or before:
            low, high = after or "", before or "\uffff"
            rows = [n for n in rows if taken[n] and low <= taken[n] <= high]
        for word in words or ():
            rows = [n for n in rows if word in texts[n]]
        for word in camera or ():
            rows = [n for n in rows if word in cameras[n]]
        page = [ids[n] for n in rows[offset:offset + limit]]
        if not full:
            return dict.fromkeys(page)
        found = self._read(page)
        return {i: found[i] for i in page if i in found}

    def _searchable(self) -> tuple[list[str], list[str | None], list[str], list[str]]:
        """Ids, taken_local, words and folded camera of every row, newest first (undated last)."""
        with self.table.reading("search the annotations") as db:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if self._rows is None or version != self._rows_version:
                rows = db.execute("SELECT id, taken_local, words, camera FROM annotations "
                                  "ORDER BY taken_local IS NULL, taken_local DESC, id").fetchall()
                self._rows = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                              [fold(r[3]) if r[3] else "" for r in rows])
                self._rows_version = version
            return self._rows

    @override
    def close(self) -> None:
        self.table.close()


class ElasticAnnotations(_Base):
    """Annotations in the side index `<alias>-annotations` (a SideIndex), one document per image id (its _id).

    Words are matched as substrings without a leading-wildcard query (which walks every term of the field:
    41-80 ms at 100k images, bench/text_search.py): each document carries `suffixes`, every suffix of each
    of its folded texts (names, folders, tags, labels, camera), computed in Python, and a word is a
    substring of a text exactly when it is a prefix of one of its suffixes, which a `prefix` query finds by
    seeking the term dictionary. The test server has no analysis plugins, so no n-gram analyser is needed.
    Side indices of version 1 (before labels and suffixes) are migrated once when first opened (_migrate).
    """

    def __init__(self, side: SideIndex):
        self.side = side

    def _read(self, ids: list[str]) -> dict[str, Annotation]:
        if not ids:
            return {}
        with self.side.guard("read the annotations"):
            if not self.side.exists():
                return {}
            docs = self.side.es.mget(index=self.side.name, ids=ids, source_excludes=["suffixes"])["docs"]
        return {d["_id"]: _from_doc(d["_source"]) for d in docs if d.get("found")}

    def _write(self, rows: dict[str, Annotation]) -> None:
        with self.side.guard("write the annotations"):
            self.side.create()
            # Refreshed: a tag is visible to the next search at once, in any process.
            self.side.write(((i, _doc(i, a)) for i, a in rows.items()), "annotations")

    @override
    def tag_counts(self) -> dict[str, int]:
        with self.side.guard("read the tags"):
            if not self.side.exists():
                return {}
            response = self.side.es.search(index=self.side.name, size=0, aggs={
                "tags": {"terms": {"field": "tags", "size": 65_536}}})
        return {b["key"]: b["doc_count"] for b in response["aggregations"]["tags"]["buckets"]}

    @override
    def metadata_ids(self) -> set[str]:
        with self.side.guard("read the annotations"):
            if not self.side.exists():
                return set()
            return {hit["_id"] for hit in self.side.scan({"_source": False,
                                                          "query": {"exists": {"field": "taken_source"}}})}

    @override
    def forget(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        with self.side.guard("forget annotations"):
            if ids and self.side.exists():
                self.side.delete(ids)

    def _select(self, words, after, before, camera, limit, offset, full):
        conditions: list[dict[str, Any]] = [{"prefix": {"suffixes": w}} for w in words or ()]
        # A few distinct cameras: a wildcard over their terms is cheap, and exact (the kNN filter relies on it).
        conditions += [{"wildcard": {"camera_words": {"value": f"*{_escape(w)}*"}}} for w in camera or ()]
        if after or before:
            bounds = {**({"gte": after} if after else {}), **({"lte": before} if before else {})}
            conditions.append({"range": {"taken_local": bounds}})
        # Deep pages use search_after past 10,000 (from + size is capped by index.max_result_window).
        with self.side.guard("search the annotations"):
            if not self.side.exists():
                return {}
            found: dict[str, Annotation | None] = {}
            after_key = None
            skip = offset
            while len(found) < limit:
                size = min(10_000, limit - len(found) + skip)
                body: dict[str, Any] = {
                    "query": {"bool": {"filter": conditions}}, "size": size,
                    "_source": {"excludes": ["suffixes"]} if full else False,
                    "sort": [{"taken_local": {"order": "desc", "missing": "_last"}}, {"id": "asc"}],
                    "track_total_hits": False}
                if after_key is not None:
                    body["search_after"] = after_key
                hits = self.side.es.search(index=self.side.name, **body)["hits"]["hits"]
                if not hits:
                    break
                after_key = hits[-1]["sort"]
                taken = hits[skip:]
                skip = max(0, skip - len(hits))
                found.update((h["_id"], _from_doc(h["_source"]) if full else None) for h in taken)
                if len(hits) < size:
                    break
        return dict(list(found.items())[:limit])

    @override
    def close(self) -> None:
        """Nothing to release: the client belongs to the store."""


def _migrate(side: SideIndex, version: int) -> None:
    """Bring a side index of an older version to VERSION: map the new fields (allowed on a live index;
    "dynamic": "strict" refuses them until then) and rewrite every document whole, from its _source."""
    if version >= VERSION:
        return
    log.info("migrating the annotations in %s from version %d to %d", side.name, version, VERSION)
    side.put_mapping()
    side.write(((d["_id"], _doc(d["_id"], _from_doc(d["_source"]))) for d in side.scan({"query": {"match_all": {}}})),
               "annotations")


def _from_row(row: tuple) -> Annotation:
    labels = json.loads(row[8]) if row[8] is not None else None
    return Annotation(tuple(json.loads(row[1])), *row[2:7], tuple(json.loads(row[7])), tuple(labels or ()),
                      labels is not None)


def _doc(image_id: str, a: Annotation) -> dict[str, Any]:
    return {"id": image_id, "tags": list(a.tags), "taken": a.taken, "taken_local": a.taken_local,
            "taken_source": a.taken_source, "camera": a.camera, "camera_words": fold(a.camera) if a.camera else None,
            "lens": a.lens, "path_words": list(a.path_words), "labels": list(a.labels), "labelled": a.labelled,
            "suffixes": suffixes(a.words().split(SEPARATOR))}


def _from_doc(doc: dict[str, Any]) -> Annotation:
    return Annotation(tuple(doc.get("tags") or ()), doc.get("taken"), doc.get("taken_local"),
                      doc.get("taken_source"), doc.get("camera"), doc.get("lens"), tuple(doc.get("path_words") or ()),
                      tuple(doc.get("labels") or ()), bool(doc.get("labelled")))


def suffixes(texts: Iterable[str]) -> list[str]:
    """Every non-empty suffix of each text, once: a word is a substring of a text exactly when it is a prefix
    of one of the text's suffixes. A text of n characters gives n suffixes."""
    return sorted({text[start:] for text in texts for start in range(len(text))})


def _escape(word: str) -> str:
    """A literal word inside an Elasticsearch wildcard pattern."""
    return "".join("\\" + c if c in "\\*?" else c for c in word)
