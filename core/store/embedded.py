"""The default index: SQLite (records, raw path bytes, text) beside a memory-mapped vector file and an HNSW graph.

SQLite gives durability and crash safety (each write is one transaction, WAL journal). Vectors live in an
append-only file of float32 rows (core/store/vector_file.py), fsynced before the SQLite commit that
references them; each image's row is its `slot`. Search goes through a usearch HNSW graph over the rows
(or 8-bit codes of them, for some filters) with an exact float re-rank (core/store/ann.py), or an exact
scan (`exact=True`); so opening maps files instead of loading a matrix, and a search at 1M images takes
milliseconds (bench/embedded_index.py).
Slots of replaced and deleted vectors are listed in `dead_slots` until `finish` compacts the file.

Paths are stored as their raw bytes (`os.fsencode`) in a BLOB column: a name that is not valid UTF-8 is a
str with lone surrogates in Python, which SQLite's TEXT cannot hold. BLOBs compare with memcmp, so a
range on the path index finds the files under a folder exactly.

Schema versions live in `PRAGMA user_version` with a migration ladder (as rclip does): an index written
by an older version is migrated once, in one transaction, when it is opened; one from a newer version is
refused. Version 1 (user_version 0) is the layout before image ids were separated from paths; version 2
kept each vector as a BLOB in `images` and a words list as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from typing_extensions import override

from core.store.ann import VectorSearch, remove_quietly, saved_files
from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    VectorStore,
    cosine_clip,
    mismatch_message,
    validate,
)
from core.store.vector_file import VectorFile, compact, vector_path
from core.store.word_index import SEP, WordIndex

log = logging.getLogger(__name__)

DB_NAME = "index.sqlite3"
SCHEMA = 3  # the layout this code writes; PRAGMA user_version
# `words`: the folded fields (ImageRecord.folded_fields) joined by NUL (core/store/word_index.py).
# `slot`: the image's row in the vector file; meta `vector_rows` is how many rows are committed and
# `vector_generation` which file holds them (vector_file.vector_path).
IMAGES_SQL = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, hash TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    words TEXT NOT NULL, slot INTEGER NOT NULL UNIQUE
)"""
SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{IMAGES_SQL};
CREATE INDEX IF NOT EXISTS images_hash ON images (hash);
CREATE TABLE IF NOT EXISTS image_paths (
    path BLOB PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images (id), position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS image_paths_image ON image_paths (image_id, position);
CREATE TABLE IF NOT EXISTS dead_slots (slot INTEGER PRIMARY KEY);
"""
# Version 2's images table, which the 1 -> 2 step writes and the 2 -> 3 step converts.
IMAGES_V2_SQL = """
CREATE TABLE images (
    id TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, hash TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    words TEXT NOT NULL, vector BLOB NOT NULL
)"""
RECORD_COLUMNS = "id, size, mtime_ns, ctime_ns, inode, hash, width, height"
CHUNK = 500  # ids per `IN (...)`: SQLite's default limit on host parameters was 999 before 3.32
PAGE = 1000  # records per page when streaming
MIGRATION_LOG_EVERY = 10_000
# An exact knn_many scores a block of queries against the whole matrix at once: at most this many
# float32 scores (16 MB) per block, so memory stays flat however many queries come in.
SCORE_BLOCK = 1 << 22
MIGRATION_VECTOR_BATCH = 10_000  # vectors per append (and fsync) when moving them out of SQLite
# finish() compacts the vector file when this share of its rows is dead (and at least COMPACT_MIN_DEAD).
COMPACT_DEAD_SHARE = 0.25
COMPACT_MIN_DEAD = 10_000
# finish() adds rows to the graph once this many are outside it (an exact scan of them is ~2 ms).
GRAPH_TAIL_ROWS = 20_000
WORDS_REBUILD = 50_000  # changed texts kept beside the word index before it is read again

Progress = Callable[[int, int], None]  # (done, total) images of a migration


class EmbeddedStore(VectorStore):
    """The embedded `VectorStore` in `data_dir/index.sqlite3`. See core/store/base.py for the contract.

    Opening migrates an index of an older schema (logging at INFO and calling `progress(done, total)`);
    raises StoreError when the folder or file cannot be used or the index comes from a newer version.
    """

    backend = "embedded"

    def __init__(self, data_dir: str | Path, progress: Progress | None = None):
        self.data_dir = Path(data_dir).expanduser()
        self._lock = threading.RLock()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Transactions are explicit (BEGIN IMMEDIATE): the schema changes of a migration included.
            self._db = sqlite3.connect(self.data_dir / DB_NAME, check_same_thread=False, timeout=30,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the index in {self.data_dir}: {exc}") from exc
        self._vectors: VectorFile | None = None  # mapped once the identity (dimensions) is known
        self._search: VectorSearch | None = None
        self._generation = -1
        self._live = np.zeros(0, bool)  # per slot: referenced by an image
        self._words: WordIndex | None = None  # loaded by the first text filter
        self._data_version: int | None = None  # of the loaded state; None = not loaded
        try:
            self._open_schema(progress)
        except StoreError:
            self._db.close()
            raise

    # -- identity ---------------------------------------------------------------------------------
    @property
    @override
    def identity(self) -> ModelIdentity | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        return ModelIdentity.from_dict(json.loads(row[0])) if row else None

    @override
    def initialize(self, identity: ModelIdentity) -> None:
        with self._lock, self._transaction("record the model identity"):
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(identity.to_dict()),))
                return
            current = ModelIdentity.from_dict(json.loads(row[0]))
            if current != identity:
                raise IdentityMismatch(mismatch_message(current, identity, self.location()))
        self._data_version = None  # map the vector file now that its dimensions are known

    # -- writes -----------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """The vectors are appended to the vector file and fsynced before the transaction commits."""
        with self._lock:
            vectors = validate(records, vectors, self._dims())
            with self._transaction("write to the index"):
                self._refresh_cache()  # inside the write lock: the committed rows and generation now
                rows = len(self._live)
                dead = self._slots_of([r.id for r in records])
                self._db.executemany("DELETE FROM image_paths WHERE image_id = ?", [(r.id,) for r in records])
                released = self._release_paths(records)
                try:
                    slots = self._vectors.append(vectors, at=rows)
                except OSError as exc:
                    raise StoreError(f"cannot write the vectors of the index in {self.data_dir}: {exc}") from exc
                self._db.executemany(
                    f"INSERT OR REPLACE INTO images ({RECORD_COLUMNS}, words, slot) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(*_row(r), _text(r.folded_fields()), slot) for r, slot in zip(records, slots, strict=True)])
                self._insert_paths(records)
                dead += [slot for slot, _ in released.values() if slot is not None]
                self._db.executemany("INSERT OR IGNORE INTO dead_slots VALUES (?)", [(s,) for s in dead])
                self._set_meta("vector_rows", rows + len(records))
            self._grow(rows + len(records))
            self._kill(dead)
            for r, slot in zip(records, slots, strict=True):
                self._set_words(slot, _text(r.folded_fields()))
            self._apply_released(released)

    @override
    def update(self, records: Sequence[ImageRecord]) -> None:
        with self._lock:
            validate(records, None, self._dims())
            self._refresh_cache()
            with self._transaction("write to the index"):
                known = set(self._existing([r.id for r in records]))
                records = [r for r in records if r.id in known]
                self._db.executemany("DELETE FROM image_paths WHERE image_id = ?", [(r.id,) for r in records])
                released = self._release_paths(records)
                self._db.executemany(
                    "UPDATE images SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, hash = ?, width = ?, "
                    "height = ?, words = ? WHERE id = ?",
                    [(*_row(r)[1:], _text(r.folded_fields()), r.id) for r in records])
                self._insert_paths(records)
                slots = self._slot_map([r.id for r in records])
                dead = [slot for slot, words in released.values() if words is None and slot is not None]
                self._db.executemany("INSERT OR IGNORE INTO dead_slots VALUES (?)", [(s,) for s in dead])
            self._kill(dead)
            for r in records:
                if r.id in slots:  # ids not in the index are ignored (the contract)
                    self._set_words(slots[r.id], _text(r.folded_fields()))
            self._apply_released(released)

    @override
    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        with self._lock:
            self._dims()
            self._refresh_cache()
            with self._transaction("delete from the index"):
                dead = self._slots_of(ids)
                self._db.executemany("DELETE FROM image_paths WHERE image_id = ?", [(i,) for i in ids])
                self._db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
                self._db.executemany("INSERT OR IGNORE INTO dead_slots VALUES (?)", [(s,) for s in dead])
            self._kill(dead)

    def finish(self) -> None:
        """Checkpoint the journal; compact the vector file when a quarter of it is dead; add the rows
        outside the graph to it when they are many (minutes at a million rows: it runs at the end of an
        indexing run, and searches stay correct meanwhile)."""
        with self._lock:
            with self._reading():
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._refresh_cache()
            if self._vectors is None:
                return
            rows, dead = len(self._live), len(self._live) - int(self._live.sum())
            if dead >= max(COMPACT_MIN_DEAD, COMPACT_DEAD_SHARE * rows):
                self._compact()
            self.build_graph()

    def build_graph(self, progress: Progress | None = None) -> None:
        """Add the rows outside the HNSW graph to it when they are `GRAPH_TAIL_ROWS` or more (or build
        it), save it and its 8-bit codes beside the vector file and tell other processes (a meta write);
        write the codes of a graph saved without them. `progress(done, total)` counts vectors added."""
        with self._lock:
            self._refresh_cache()
            if self._search is None:
                return
            tail = len(self._live) - self._search.covered
            if tail < GRAPH_TAIL_ROWS and not self._search.lacks_codes():
                return
            log.info("adding %d vectors to the search graph of %s", tail, self.data_dir)
            try:
                self._search.extend(self._live, progress)
            except (OSError, RuntimeError) as exc:
                raise StoreError(f"cannot save the search graph in {self.data_dir}: {exc}") from exc
            with self._transaction("record the search graph"):
                self._set_meta("graph_rows", self._search.covered)

    # -- reads ------------------------------------------------------------------------------------
    @override
    def get(self, image_id: str) -> ImageRecord | None:
        return self.get_many([image_id]).get(image_id)

    @override
    def get_many(self, ids: Iterable[str]) -> dict[str, ImageRecord]:
        with self._lock, self._reading():
            return self._many(list(dict.fromkeys(ids)))

    @override
    def get_by_path(self, path: str) -> ImageRecord | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT image_id FROM image_paths WHERE path = ?", (_key(path),)).fetchone()
            return self._many([row[0]]).get(row[0]) if row else None

    @override
    def find_by_hash(self, content_hash: str) -> list[ImageRecord]:
        with self._lock, self._reading():
            ids = [row[0] for row in self._db.execute("SELECT id FROM images WHERE hash = ? ORDER BY id",
                                                      (content_hash,))]
            found = self._many(ids)
        return [found[i] for i in ids]

    @override
    def vector(self, image_id: str) -> np.ndarray | None:
        return self.vectors([image_id]).get(image_id)

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Copies of the mapped rows."""
        ids = list(dict.fromkeys(ids))
        with self._lock:
            self._refresh_cache()
            with self._reading():
                slots = self._slot_map(ids)
            if self._vectors is None:
                return {}
            matrix = self._vectors.matrix
            return {i: np.array(matrix[slots[i]]) for i in ids if i in slots and slots[i] < len(matrix)}

    @override
    def count(self) -> int:
        with self._lock, self._reading():
            return self._db.execute("SELECT count(*) FROM images").fetchone()[0]

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        """Streamed a page at a time (keyset paging on the path index), ordered by the raw bytes of the
        primary path, or with `under` of the first path under that folder; each image once."""
        if under is None:
            where, args = "p.position = 0", ()
        else:
            prefix = os.fsencode(under).rstrip(b"/") + b"/"
            bounds = (prefix, prefix[:-1] + b"0")  # "0" follows "/" in ASCII: every path below the folder
            # The image's first path under the folder only, so an image with two paths there comes once.
            where = ("p.path >= ? AND p.path < ? AND NOT EXISTS (SELECT 1 FROM image_paths q WHERE "
                     "q.image_id = p.image_id AND q.path >= ? AND q.path < ? AND q.path < p.path)")
            args = bounds + bounds
        last = b""
        while True:
            with self._lock, self._reading():
                rows = self._db.execute(f"SELECT p.path, p.image_id FROM image_paths p WHERE {where} AND p.path > ? "
                                        f"ORDER BY p.path LIMIT {PAGE}", (*args, last)).fetchall()
                found = self._many([row[1] for row in rows])
            for _, image_id in rows:
                if image_id in found:
                    yield found[image_id]
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        """See `knn_many`."""
        return self.knn_many(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, filters)[0]

    def knn_many(self, vectors: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[list[Hit]]:
        """Through the HNSW graph with an exact float re-rank (recall@10 >= 0.99, bench/embedded_index.py);
        a filter keeping a middling share of the images scans their 8-bit codes instead, one keeping few
        of them scans them exactly (ann.VectorSearch.plan); an exact scan with `filters.exact` (and always
        below ann.GRAPH_MIN_ROWS images). Scores are exact cosine similarities either way."""
        filters = filters or SearchFilter()
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2:
            raise StoreError(f"expected query vectors of shape (m, dims), got {queries.shape}")
        with self._lock:
            self._refresh_cache()
            if self._search is None or not self._live.any() or k <= 0:
                return [[] for _ in queries]
            if queries.shape[1] != self._vectors.dims:
                raise StoreError(f"query has {queries.shape[1]} dimensions; the index holds {self._vectors.dims}")
            mask = self._allowed(filters)
            found = self._search.search(queries, k, mask, exact=filters.exact, min_score=filters.min_score,
                                        max_score=filters.max_score, score_block=SCORE_BLOCK)
            with self._reading():
                ids = self._ids_of_slots(list({int(s) for slots, _ in found for s in slots}))
                records = self._many(list(ids.values()))
        return [[Hit(records[ids[s]], cosine_clip(float(score))) for s, score in zip(slots.tolist(), scores,
                                                                                     strict=True)
                 if s in ids and ids[s] in records] for slots, scores in found]

    @override
    def location(self) -> str:
        return str(self.data_dir)

    @override
    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema -----------------------------------------------------------------------------------
    def _open_schema(self, progress: Progress | None) -> None:
        """Create a new index, or bring an older one to SCHEMA; raise StoreError for a newer one."""
        with self._lock:
            if self._schema_version() == SCHEMA:  # the usual case needs no write lock (read-only media)
                return
        with self._lock, self._transaction("open the index"):
            version = self._schema_version()  # again: another process may have migrated meanwhile
            migrated = 0 < version < SCHEMA
            if version == 0:
                self._create_tables()
            while 0 < version < SCHEMA:
                MIGRATIONS[version](self, progress)
                version += 1
            self._db.execute(f"PRAGMA user_version = {SCHEMA}")
        if migrated:
            with self._lock, self._reading():
                self._db.execute("VACUUM")  # give back the pages the vectors took (2 GB at 1M x 512)
            self.build_graph(progress)

    def _schema_version(self) -> int:
        """The schema of the index file (0: none yet); StoreError when it is newer than this code."""
        with self._reading():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'images'").fetchone():
                version = 1  # written before schema versions were recorded
        if version > SCHEMA:
            raise StoreError(f"the index in {self.data_dir} was written by a newer image-search (schema "
                             f"{version}; this version knows up to {SCHEMA}): upgrade image-search, or "
                             "choose another --data-dir")
        return version

    def _migrate_1_to_2(self, progress: Progress | None) -> None:
        """Version 1 kept one path per image as TEXT in `images`. Ids stay; each path becomes the image's
        only path (raw bytes); ctime_ns and inode become 0, "unknown", so that the indexer re-checks the
        file by its content hash without re-embedding it."""
        total = self._db.execute("SELECT count(*) FROM images").fetchone()[0]
        log.info("migrating the index in %s from schema 1 to 2: %d images", self.data_dir, total)
        self._db.execute("ALTER TABLE images RENAME TO images_v1")
        self._db.execute(IMAGES_V2_SQL)
        self._create_tables()
        done = 0
        cursor = self._db.execute("SELECT id, path, size, mtime_ns, hash, width, height, vector FROM images_v1")
        while rows := cursor.fetchmany(PAGE):
            records = [ImageRecord(i, (path,), size, mtime, 0, 0, digest, w, h)
                       for i, path, size, mtime, digest, w, h, _ in rows]
            self._db.executemany(f"INSERT INTO images ({RECORD_COLUMNS}, words, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 [(*_row(r), json.dumps(r.folded_fields()), row[7]) for r, row in zip(records, rows,
                                                                                                      strict=True)])
            self._insert_paths(records)
            done += len(rows)
            if progress is not None:
                progress(done, total)
            if done % MIGRATION_LOG_EVERY < PAGE or done == total:
                log.info("migrated %d of %d images", done, total)
        self._db.execute("DROP TABLE images_v1")

    def _migrate_2_to_3(self, progress: Progress | None) -> None:
        """Version 2 kept each vector as a BLOB in `images` and words as JSON. The vectors move into the
        vector file (appended in pages, fsynced before this transaction commits), each image gets its
        row as `slot`, words become NUL-joined text. Ids, records and paths stay as they are."""
        total = self._db.execute("SELECT count(*) FROM images").fetchone()[0]
        log.info("migrating the index in %s from schema 2 to 3: %d images", self.data_dir, total)
        # Legacy mode: the rename must not rewrite image_paths' reference to `images` (the new table).
        self._db.execute("PRAGMA legacy_alter_table = ON")
        self._db.execute("ALTER TABLE images RENAME TO images_v2")
        self._db.execute("PRAGMA legacy_alter_table = OFF")
        self._db.execute("DROP INDEX IF EXISTS images_hash")
        self._create_tables()
        identity = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        first = self._db.execute("SELECT length(vector) FROM images_v2 LIMIT 1").fetchone()
        # Version 1 accepted writes before `initialize`: then the vectors' width gives the dimensions.
        dims = ModelIdentity.from_dict(json.loads(identity[0])).dims if identity else first[0] // 4 if first else 0
        vectors = VectorFile(vector_path(self.data_dir, 0), dims, create=True) if dims else None
        done, last = 0, -1
        while rows := self._db.execute(f"SELECT rowid, {RECORD_COLUMNS}, words, vector FROM images_v2 WHERE rowid > ? "
                                       f"ORDER BY rowid LIMIT {MIGRATION_VECTOR_BATCH}", (last,)).fetchall():
            matrix = np.frombuffer(b"".join(row[-1] for row in rows), np.float32).reshape(len(rows), -1)
            slots = vectors.append(matrix, at=done)
            self._db.executemany(f"INSERT INTO images ({RECORD_COLUMNS}, words, slot) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 [(*row[1:9], _text(json.loads(row[9])), slot) for row, slot in zip(rows, slots,
                                                                                                    strict=True)])
            done, last = done + len(rows), rows[-1][0]
            if progress is not None:
                progress(done, total)
            if done % MIGRATION_LOG_EVERY < MIGRATION_VECTOR_BATCH or done == total:
                log.info("moved %d of %d vectors", done, total)
        self._db.execute("DROP TABLE images_v2")
        self._set_meta("vector_generation", 0)
        self._set_meta("vector_rows", done)

    def _create_tables(self) -> None:
        # Statement by statement: executescript() would COMMIT the open transaction first.
        for statement in SCHEMA_SQL.split(";"):
            if statement.strip():
                self._db.execute(statement)

    # -- internals --------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, action: str) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: the write lock up front, so two processes never
        deadlock upgrading read locks); rolled back on any error. sqlite3 errors become StoreError."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} in {self.data_dir}: {exc}") from exc
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot {action} in {self.data_dir}: {exc}") from exc
            raise

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the index in {self.data_dir}: {exc}") from exc

    def _dims(self) -> int:
        """The index's dimensions; StoreError before `initialize`."""
        identity = self.identity
        if identity is None:
            raise StoreError(f"the index in {self.data_dir} is not initialised (no model identity yet)")
        return identity.dims

    def _existing(self, ids: list[str]) -> list[str]:
        found = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            found += [row[0] for row in self._db.execute(f"SELECT id FROM images WHERE id IN ({marks})", chunk)]
        return found

    def _release_paths(self, records: Sequence[ImageRecord]) -> dict[str, tuple[int | None, list[str] | None]]:
        """Take the records' paths away from any other image that holds them (a path names one image).

        Returns those images' slots and new folded fields, or None for an image left without a path
        (deleted).
        """
        keys = [_key(p) for r in records for p in r.paths]
        owners: set[str] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            owners |= {row[0] for row in self._db.execute(
                f"SELECT image_id FROM image_paths WHERE path IN ({marks})", chunk)}
        if not owners:
            return {}
        self._db.executemany("DELETE FROM image_paths WHERE path = ?", [(k,) for k in keys])
        released: dict[str, tuple[int | None, list[str] | None]] = {}
        slots = self._slot_map(list(owners))
        for image_id in owners:
            left = [os.fsdecode(row[0]) for row in self._db.execute(
                "SELECT path FROM image_paths WHERE image_id = ? ORDER BY position", (image_id,))]
            if left:
                self._db.executemany("UPDATE image_paths SET position = ? WHERE path = ?",
                                     [(n, _key(p)) for n, p in enumerate(left)])
                words = ImageRecord(image_id, tuple(left), 0, 0, 0, 0, "", 0, 0).folded_fields()
                self._db.execute("UPDATE images SET words = ? WHERE id = ?", (_text(words), image_id))
                released[image_id] = (slots.get(image_id), words)
            else:
                self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
                released[image_id] = (slots.get(image_id), None)
        return released

    def _apply_released(self, released: dict[str, tuple[int | None, list[str] | None]]) -> None:
        for slot, words in released.values():
            if slot is not None and words is not None:
                self._set_words(slot, _text(words))

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def _meta_int(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _slot_map(self, ids: list[str]) -> dict[str, int]:
        return self._pairs("SELECT id, slot FROM images WHERE id IN ({})", ids)

    def _slots_of(self, ids: list[str]) -> list[int]:
        return list(self._slot_map(ids).values())

    def _ids_of_slots(self, slots: list[int]) -> dict[int, str]:
        return self._pairs("SELECT slot, id FROM images WHERE slot IN ({})", slots)

    def _pairs(self, sql: str, keys: list) -> dict:
        """{first column: second column} of `sql` (one `IN ({})` list) over `keys`, CHUNK keys a query (SQLite
        limits the variables of one statement)."""
        found: dict = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            found.update(self._db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall())
        return found

    def _allowed(self, filters: SearchFilter) -> np.ndarray:
        """A bool mask over slots: live, and passing the filter's id and text constraints."""
        mask = self._live.copy()
        if filters.ids is not None:
            wanted = np.zeros(len(mask), bool)
            with self._reading():
                wanted[list(self._slot_map(list(filters.ids)).values())] = True
            mask &= wanted
        words = filters.words()
        if words:
            mask &= self._word_index().matching(words, len(mask))
        return mask

    def _word_index(self) -> WordIndex:
        """The word index, read from SQLite by the first text filter of a process (and after WORDS_REBUILD
        changes). One query concatenates inside SQLite, so no Python object is made per row: ~1 s at 1M
        images (bench/embedded_index.py, `serve_first_text_filter_ms`)."""
        if self._words is None or self._words.changed > WORDS_REBUILD:
            with self._reading():
                # The three aggregates see the rows in the same order (one scan); lengths are in bytes, as
                # the joined text is: length() of TEXT would stop at the first NUL.
                slots, lengths, text = self._db.execute(
                    "SELECT group_concat(slot), group_concat(length(CAST(words AS BLOB))), "
                    "CAST(group_concat(words, char(0)) AS BLOB) FROM images").fetchone()
            self._words = WordIndex(np.fromstring(slots or "", np.int64, sep=","),
                                    np.fromstring(lengths or "", np.int64, sep=","), text or b"")
        return self._words

    def _set_words(self, slot: int, text: str) -> None:
        if self._words is not None:
            self._words.set(slot, text)

    def _grow(self, rows: int) -> None:
        """This process committed rows up to `rows`: map them and count them live."""
        self._vectors.map(rows)
        self._live = np.concatenate([self._live, np.ones(rows - len(self._live), bool)])

    def _kill(self, slots: list[int]) -> None:
        self._live[[s for s in slots if s < len(self._live)]] = False
        for slot in slots:
            self._set_words(slot, None)

    def _compact(self) -> None:
        """Write the live rows into the next generation's file and renumber the slots in one transaction;
        then remove the old file and graphs (other processes keep their mappings of them on POSIX)."""
        old_generation = self._generation
        with self._transaction("compact the vector file"):
            self._refresh_cache()
            pairs = self._db.execute("SELECT id, slot FROM images ORDER BY slot").fetchall()
            keep = np.fromiter((p[1] for p in pairs), np.int64, len(pairs))
            generation = self._generation + 1
            log.info("compacting the vectors of %s: %d live of %d rows", self.data_dir, len(keep), len(self._live))
            try:
                compact(self._vectors, keep, vector_path(self.data_dir, generation))
            except OSError as exc:
                raise StoreError(f"cannot compact the vectors of the index in {self.data_dir}: {exc}") from exc
            # Ascending old slots onto 0..n-1: each new slot is free when its row is renumbered.
            self._db.executemany("UPDATE images SET slot = ? WHERE id = ?",
                                 [(n, image_id) for n, (image_id, _) in enumerate(pairs)])
            self._db.execute("DELETE FROM dead_slots")
            self._set_meta("vector_generation", generation)
            self._set_meta("vector_rows", len(keep))
        self._data_version = None  # reload: new file, new slots
        self._refresh_cache()
        remove_quietly(vector_path(self.data_dir, old_generation))
        for kind in ("ann", "sq8"):
            for old_file_generation, _, path in saved_files(self.data_dir, kind=kind):
                if old_file_generation != generation:
                    remove_quietly(path)

    def _insert_paths(self, records: Sequence[ImageRecord]) -> None:
        self._db.executemany("INSERT INTO image_paths (path, image_id, position) VALUES (?, ?, ?)",
                             [(_key(p), r.id, n) for r in records for n, p in enumerate(r.paths)])

    def _many(self, ids: list[str]) -> dict[str, ImageRecord]:
        found: dict[str, ImageRecord] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            paths: dict[str, list[str]] = {}
            for image_id, path in self._db.execute(f"SELECT image_id, path FROM image_paths WHERE image_id IN "
                                                   f"({marks}) ORDER BY image_id, position", chunk):
                paths.setdefault(image_id, []).append(os.fsdecode(path))
            for row in self._db.execute(f"SELECT {RECORD_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = ImageRecord(row[0], tuple(paths.get(row[0], ())), *row[1:])
        return found

    def _refresh_cache(self) -> None:
        """Map what another process committed since (new rows, a new generation, a new graph); nothing
        is read from the vector file. The word index is read again by the next text filter."""
        with self._reading():
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            identity = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            generation, rows = self._meta_int("vector_generation"), self._meta_int("vector_rows")
            dead = [row[0] for row in self._db.execute("SELECT slot FROM dead_slots")]
        if identity is not None:
            dims = ModelIdentity.from_dict(json.loads(identity[0])).dims
            try:
                if generation != self._generation:
                    self._vectors = VectorFile(vector_path(self.data_dir, generation), dims, create=rows == 0)
                    self._search = None
                    self._generation = generation
                self._vectors.map(rows)
            except OSError as exc:
                raise StoreError(f"cannot read the vectors of the index in {self.data_dir}: {exc}") from exc
            if self._search is None:
                self._search = VectorSearch(self.data_dir, generation, self._vectors)
            else:
                self._search.refresh()
        self._live = np.ones(rows, bool)
        self._live[[s for s in dead if s < rows]] = False
        self._words = None
        self._data_version = version


MIGRATIONS: dict[int, Callable[[EmbeddedStore, Progress | None], None]] = {
    1: EmbeddedStore._migrate_1_to_2, 2: EmbeddedStore._migrate_2_to_3}


def _key(path: str) -> bytes:
    """A path's raw bytes, the form the path index keeps."""
    return os.fsencode(path)


def _text(fields: list[str]) -> str:
    """Folded fields as the `words` column and the word index keep them: joined by NUL."""
    return SEP.join(fields)


def _row(r: ImageRecord) -> tuple:
    return (r.id, r.size, r.mtime_ns, r.ctime_ns, r.inode, r.hash, r.width, r.height)
