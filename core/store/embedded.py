"""The default index: one SQLite file (records, raw path bytes, vectors) and an in-memory matrix for exact search.

SQLite gives durability and crash safety (each write is one transaction, WAL journal); the matrix is a
cache rebuilt from it, so search is one NumPy matrix product: ~100k x 512 in milliseconds.

Paths are stored as their raw bytes (`os.fsencode`) in a BLOB column: a name that is not valid UTF-8 is a
str with lone surrogates in Python, which SQLite's TEXT cannot hold. BLOBs compare with memcmp, so a
range on the path index finds the files under a folder exactly.

Schema versions live in `PRAGMA user_version` with a migration ladder (as rclip does): an index written
by an older version is migrated once, in one transaction, when it is opened; one from a newer version is
refused. Version 1 (user_version 0) is the layout before image ids were separated from paths.
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

from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    cosine_clip,
    validate,
)

log = logging.getLogger(__name__)

DB_NAME = "index.sqlite3"
SCHEMA = 2  # the layout this code writes; PRAGMA user_version
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, hash TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    words TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images (hash);
CREATE TABLE IF NOT EXISTS image_paths (
    path BLOB PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images (id), position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS image_paths_image ON image_paths (image_id, position);
"""
RECORD_COLUMNS = "id, size, mtime_ns, ctime_ns, inode, hash, width, height"
CHUNK = 500  # ids per `IN (...)`: SQLite's default limit on host parameters was 999 before 3.32
PAGE = 1000  # records per page when streaming
MIGRATION_LOG_EVERY = 10_000
# knn_many scores a block of queries against the whole matrix at once: at most this many float32
# scores (16 MB) per block, so memory stays flat however many queries come in.
SCORE_BLOCK = 1 << 22

Progress = Callable[[int, int], None]  # (done, total) images of a migration


class EmbeddedStore:
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
        try:
            self._open_schema(progress)
        except StoreError:
            self._db.close()
            raise
        self._cache = VectorCache()
        self._data_version: int | None = None  # of the loaded cache; None = not loaded

    # -- identity ---------------------------------------------------------------------------------
    @property
    def identity(self) -> ModelIdentity | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        return ModelIdentity.from_dict(json.loads(row[0])) if row else None

    def initialize(self, identity: ModelIdentity) -> None:
        with self._lock, self._transaction("record the model identity"):
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(identity.to_dict()),))
                return
            current = ModelIdentity.from_dict(json.loads(row[0]))
            if current != identity:
                raise IdentityMismatch(mismatch_message(current, identity, self.location()))

    # -- writes -----------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        with self._lock:
            vectors = validate(records, vectors, self._dims())
            self._refresh_cache()
            with self._transaction("write to the index"):
                self._db.executemany("DELETE FROM image_paths WHERE image_id = ?", [(r.id,) for r in records])
                released = self._release_paths(records)
                self._db.executemany(
                    f"INSERT OR REPLACE INTO images ({RECORD_COLUMNS}, words, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(*_row(r), json.dumps(r.folded_fields()), v.tobytes()) for r, v in zip(records, vectors,
                                                                                             strict=True)])
                self._insert_paths(records)
            self._cache.put([r.id for r in records], [r.folded_fields() for r in records], vectors)
            self._apply_released(released)

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
                    [(*_row(r)[1:], json.dumps(r.folded_fields()), r.id) for r in records])
                self._insert_paths(records)
            for r in records:
                self._cache.set_words(r.id, r.folded_fields())
            self._apply_released(released)

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        with self._lock:
            self._dims()
            self._refresh_cache()
            with self._transaction("delete from the index"):
                self._db.executemany("DELETE FROM image_paths WHERE image_id = ?", [(i,) for i in ids])
                self._db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
            self._cache.remove(ids)

    def finish(self) -> None:
        with self._lock, self._reading():
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- reads ------------------------------------------------------------------------------------
    def get(self, image_id: str) -> ImageRecord | None:
        return self.get_many([image_id]).get(image_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, ImageRecord]:
        with self._lock, self._reading():
            return self._many(list(dict.fromkeys(ids)))

    def get_by_path(self, path: str) -> ImageRecord | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT image_id FROM image_paths WHERE path = ?", (_key(path),)).fetchone()
            return self._many([row[0]]).get(row[0]) if row else None

    def find_by_hash(self, content_hash: str) -> list[ImageRecord]:
        with self._lock, self._reading():
            ids = [row[0] for row in self._db.execute("SELECT id FROM images WHERE hash = ? ORDER BY id",
                                                      (content_hash,))]
            found = self._many(ids)
        return [found[i] for i in ids]

    def vector(self, image_id: str) -> np.ndarray | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT vector FROM images WHERE id = ?", (image_id,)).fetchone()
        return np.frombuffer(row[0], np.float32).copy() if row else None

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """From the in-memory matrix (the table's vectors, loaded once)."""
        with self._lock:
            self._refresh_cache()
            cache = self._cache
            return {i: cache.matrix[cache.row[i]].copy() for i in ids if i in cache.row}

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
        return self.knn_many(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, filters)[0]

    def knn_many(self, vectors: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[list[Hit]]:
        """Exact: blocks of queries times the whole matrix (at most SCORE_BLOCK scores at a time)."""
        filters = filters or SearchFilter()
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2:
            raise StoreError(f"expected query vectors of shape (m, dims), got {queries.shape}")
        with self._lock:
            self._refresh_cache()
            cache = self._cache
            if not cache.ids or k <= 0:
                return [[] for _ in queries]
            if queries.shape[1] != cache.matrix.shape[1]:
                raise StoreError(f"query has {queries.shape[1]} dimensions; the index holds {cache.matrix.shape[1]}")
            allowed = cache.rows_allowed(filters)
            if not allowed.any():
                return [[] for _ in queries]
            k = min(k, len(cache.ids))
            best: list[tuple[np.ndarray, np.ndarray]] = []  # per query: rows and scores, best first
            step = max(1, SCORE_BLOCK // len(cache.ids))
            for start in range(0, len(queries), step):
                scores = queries[start : start + step] @ cache.matrix.T
                # Filtered out: -inf, in place (no copies of the block), dropped after the top k.
                if not allowed.all():
                    scores[:, ~allowed] = -np.inf
                if filters.min_score is not None:
                    scores[scores < filters.min_score] = -np.inf
                if filters.max_score is not None:
                    scores[scores > filters.max_score] = -np.inf
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
                    np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
                for row_scores, row_top in zip(scores, top, strict=True):
                    order = row_top[np.argsort(-row_scores[row_top], kind="stable")]
                    order = order[np.isfinite(row_scores[order])]
                    best.append((order, row_scores[order]))
            ids = [[cache.ids[n] for n in rows] for rows, _ in best]
            with self._reading():
                found = self._many(list(dict.fromkeys(i for row in ids for i in row)))
        return [[Hit(found[i], cosine_clip(float(s))) for i, s in zip(row, scores, strict=True) if i in found]
                for row, (_, scores) in zip(ids, best, strict=True)]

    def location(self) -> str:
        return str(self.data_dir)

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
            if version == 0:
                self._create_tables()
            while 0 < version < SCHEMA:
                MIGRATIONS[version](self, progress)
                version += 1
            self._db.execute(f"PRAGMA user_version = {SCHEMA}")

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

    def _release_paths(self, records: Sequence[ImageRecord]) -> dict[str, list[str] | None]:
        """Take the records' paths away from any other image that holds them (a path names one image).

        Returns those images' new folded fields, or None for an image left without a path (deleted).
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
        released: dict[str, list[str] | None] = {}
        for image_id in owners:
            left = [os.fsdecode(row[0]) for row in self._db.execute(
                "SELECT path FROM image_paths WHERE image_id = ? ORDER BY position", (image_id,))]
            if left:
                self._db.executemany("UPDATE image_paths SET position = ? WHERE path = ?",
                                     [(n, _key(p)) for n, p in enumerate(left)])
                words = ImageRecord(image_id, tuple(left), 0, 0, 0, 0, "", 0, 0).folded_fields()
                self._db.execute("UPDATE images SET words = ? WHERE id = ?", (json.dumps(words), image_id))
                released[image_id] = words
            else:
                self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
                released[image_id] = None
        return released

    def _apply_released(self, released: dict[str, list[str] | None]) -> None:
        self._cache.remove([i for i, words in released.items() if words is None])
        for image_id, words in released.items():
            if words is not None:
                self._cache.set_words(image_id, words)

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
        """(Re)load the matrix if it was never loaded or another process committed since."""
        with self._reading():
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            self._cache = VectorCache()
            cursor = self._db.execute("SELECT id, words, vector FROM images")
            while rows := cursor.fetchmany(10_000):
                vectors = np.frombuffer(b"".join(row[2] for row in rows), np.float32).reshape(len(rows), -1)
                self._cache.put([row[0] for row in rows], [json.loads(row[1]) for row in rows], vectors)
        self._data_version = version


MIGRATIONS: dict[int, Callable[[EmbeddedStore, Progress | None], None]] = {1: EmbeddedStore._migrate_1_to_2}


class VectorCache:
    """Ids and their vectors as rows of one growable matrix (amortised O(1) appends), with each row's
    folded names and folders for the text filter (matching in memory beats scanning the table's pages)."""

    def __init__(self):
        self.ids: list[str] = []
        self.row: dict[str, int] = {}
        # Each row's folded fields joined by NUL, which no path holds (validate): a word without NUL is
        # a substring of the joined text exactly when it is a substring of one field.
        self.words: list[str] = []
        self._buffer = np.zeros((0, 0), np.float32)

    @property
    def matrix(self) -> np.ndarray:
        return self._buffer[: len(self.ids)]

    def rows_allowed(self, filters: SearchFilter) -> np.ndarray:
        """A bool mask over rows: the records that pass the filter's text and id constraints."""
        allowed = np.ones(len(self.ids), bool)
        if filters.ids is not None:
            allowed[:] = False
            allowed[[self.row[i] for i in filters.ids if i in self.row]] = True
        words = filters.words()
        if words:
            if any("\x00" in w for w in words):
                return np.zeros(len(self.ids), bool)
            allowed &= np.fromiter((all(w in text for w in words) for text in self.words), bool, len(self.ids))
        return allowed

    def put(self, ids: list[str], words: list[list[str]], vectors: np.ndarray) -> None:
        fresh = [n for n, i in enumerate(ids) if i not in self.row]
        for n, i in enumerate(ids):
            if i in self.row:
                self._buffer[self.row[i]] = vectors[n]
                self.words[self.row[i]] = "\x00".join(words[n])
        if not fresh:
            return
        needed = len(self.ids) + len(fresh)
        if needed > len(self._buffer) or self._buffer.shape[1] != vectors.shape[1]:
            grown = np.zeros((max(needed, 2 * len(self._buffer), 1024), vectors.shape[1]), np.float32)
            if self.ids:
                grown[: len(self.ids)] = self.matrix
            self._buffer = grown
        for n in fresh:
            self.row[ids[n]] = len(self.ids)
            self._buffer[len(self.ids)] = vectors[n]
            self.ids.append(ids[n])
            self.words.append("\x00".join(words[n]))

    def set_words(self, image_id: str, words: list[str]) -> None:
        if image_id in self.row:
            self.words[self.row[image_id]] = "\x00".join(words)

    def remove(self, ids: Iterable[str]) -> None:
        gone = set(ids) & self.row.keys()
        if not gone:
            return
        keep = [n for n, i in enumerate(self.ids) if i not in gone]
        self._buffer = self.matrix[keep].copy()
        self.ids = [self.ids[n] for n in keep]
        self.words = [self.words[n] for n in keep]
        self.row = {i: n for n, i in enumerate(self.ids)}


def _key(path: str) -> bytes:
    """A path's raw bytes, the form the path index keeps."""
    return os.fsencode(path)


def _row(r: ImageRecord) -> tuple:
    return (r.id, r.size, r.mtime_ns, r.ctime_ns, r.inode, r.hash, r.width, r.height)


def mismatch_message(current: ModelIdentity, wanted: ModelIdentity, location: str) -> str:
    return (
        f"the index at {location} was built with {current.label()}, but the current settings give "
        f"{wanted.label()}; vectors of different models cannot be compared. Use the same --weights and "
        "--descriptor as when it was built, or choose another --data-dir (or Elasticsearch index) for this model."
    )
