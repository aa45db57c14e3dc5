"""The default index: one SQLite file (metadata + vectors) and an in-memory matrix for exact search.

SQLite gives durability and crash safety (each upsert is one transaction, WAL journal); the matrix is a
cache rebuilt from it, so search is one NumPy matrix-vector product: ~100k x 512 in milliseconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
)

DB_NAME = "index.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE, name TEXT NOT NULL, folder TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, vector BLOB NOT NULL
);
"""
RECORD_COLUMNS = "id, path, name, folder, size, mtime_ns, hash, width, height"
PAIR_BLOCK = 1024


class EmbeddedStore:
    backend = "embedded"

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).expanduser()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.data_dir / DB_NAME, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the index in {self.data_dir}: {exc}") from exc
        self._lock = threading.RLock()
        self._cache = VectorCache()
        self._data_version: int | None = None  # of the loaded cache; None = not loaded

    # -- identity ---------------------------------------------------------------------------------
    @property
    def identity(self) -> ModelIdentity | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        return ModelIdentity.from_dict(json.loads(row[0])) if row else None

    def initialize(self, identity: ModelIdentity) -> None:
        with self._lock, self._db:
            current = self.identity
            if current is None:
                self._db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(identity.to_dict()),))
            elif current != identity:
                raise IdentityMismatch(mismatch_message(current, identity, self.location()))

    # -- writes -----------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [
            (r.id, r.path, r.name, r.folder, r.size, r.mtime_ns, r.hash, r.width, r.height, v.tobytes())
            for r, v in zip(records, vectors, strict=True)
        ]
        with self._lock:
            self._refresh_cache()
            try:
                with self._db:
                    self._db.executemany(f"INSERT OR REPLACE INTO images ({RECORD_COLUMNS}, vector) "
                                         "VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the index in {self.data_dir}: {exc}") from exc
            self._cache.put([r.id for r in records], [r.path for r in records], vectors)

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        with self._lock:
            self._refresh_cache()
            try:
                with self._db:
                    self._db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the index in {self.data_dir}: {exc}") from exc
            self._cache.remove(ids)

    def finish(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- reads ------------------------------------------------------------------------------------
    def get(self, image_id: str) -> ImageRecord | None:
        return self._one("id = ?", image_id)

    def get_by_path(self, path: str) -> ImageRecord | None:
        return self._one("path = ?", path)

    def vector(self, image_id: str) -> np.ndarray | None:
        with self._lock:
            row = self._db.execute("SELECT vector FROM images WHERE id = ?", (image_id,)).fetchone()
        return np.frombuffer(row[0], np.float32).copy() if row else None

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM images").fetchone()[0]

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        sql, args = f"SELECT {RECORD_COLUMNS} FROM images", ()
        if under is not None:
            prefix = under.rstrip(os.sep) + os.sep
            # A range on the path index is exact (LIKE would be case-insensitive and need escaping).
            sql += " WHERE path >= ? AND path < ?"
            args = (prefix, prefix[:-1] + chr(ord(os.sep) + 1))
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY path", args).fetchall()
        return (ImageRecord(*row) for row in rows)

    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        filters = filters or SearchFilter()
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._lock:
            self._refresh_cache()
            cache = self._cache
            if not cache.ids or k <= 0:
                return []
            if query.shape[0] != cache.matrix.shape[1]:
                raise StoreError(f"query has {query.shape[0]} dimensions; the index holds {cache.matrix.shape[1]}")
            scores = cache.matrix @ query
            candidates = np.arange(len(cache.ids))
            if filters.words():
                candidates = cache.rows_matching(filters.words())
            if filters.min_score is not None:
                candidates = candidates[scores[candidates] >= filters.min_score]
            if filters.max_score is not None:
                candidates = candidates[scores[candidates] <= filters.max_score]
            if len(candidates) > k:
                candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
            best = candidates[np.argsort(-scores[candidates], kind="stable")]
            ids = [cache.ids[n] for n in best]
            records = self._many(ids)
        hits = zip(ids, best, strict=True)
        return [Hit(records[i], float(np.clip(scores[n], -1.0, 1.0))) for i, n in hits if i in records]

    def near_pairs(self, threshold: float) -> Iterator[tuple[str, str, float]]:
        with self._lock:
            self._refresh_cache()
            ids, matrix = list(self._cache.ids), self._cache.matrix.copy()
        for start in range(0, len(ids), PAIR_BLOCK):
            block = matrix[start : start + PAIR_BLOCK] @ matrix[start:].T
            rows, cols = np.nonzero(block >= threshold)
            for r, c in zip(rows, cols, strict=True):
                if c > r:  # each pair once, never an image with itself
                    yield ids[start + r], ids[start + c], float(min(block[r, c], 1.0))

    def location(self) -> str:
        return str(self.data_dir)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals --------------------------------------------------------------------------------
    def _one(self, where: str, value: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {RECORD_COLUMNS} FROM images WHERE {where}", (value,)).fetchone()
        return ImageRecord(*row) if row else None

    def _many(self, ids: list[str]) -> dict[str, ImageRecord]:
        found: dict[str, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {RECORD_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = ImageRecord(*row)
        return found

    def _refresh_cache(self) -> None:
        """(Re)load the matrix if it was never loaded or another process committed since."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        rows = self._db.execute("SELECT id, path, vector FROM images").fetchall()
        self._cache = VectorCache()
        if rows:
            dims = len(rows[0][2]) // 4
            blob = b"".join(row[2] for row in rows)
            vectors = np.frombuffer(blob, np.float32).reshape(len(rows), dims)
            self._cache.put([row[0] for row in rows], [row[1] for row in rows], vectors)
        self._data_version = version


class VectorCache:
    """Ids and their vectors as rows of one growable matrix (amortised O(1) appends), with each row's
    casefolded path for the text filter (matching in memory beats scanning the table's vector pages)."""

    def __init__(self):
        self.ids: list[str] = []
        self.row: dict[str, int] = {}
        self.folded: list[str] = []
        self._buffer = np.zeros((0, 0), np.float32)

    @property
    def matrix(self) -> np.ndarray:
        return self._buffer[: len(self.ids)]

    def rows_matching(self, words: list[str]) -> np.ndarray:
        """Rows whose path (file name or folders) contains every word, case-insensitively."""
        folded = [w.casefold() for w in words]
        return np.array([n for n, path in enumerate(self.folded) if all(w in path for w in folded)], np.int64)

    def put(self, ids: list[str], paths: list[str], vectors: np.ndarray) -> None:
        fresh = [n for n, i in enumerate(ids) if i not in self.row]
        for n, i in enumerate(ids):
            if i in self.row:
                self._buffer[self.row[i]] = vectors[n]
                self.folded[self.row[i]] = paths[n].casefold()
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
            self.folded.append(paths[n].casefold())

    def remove(self, ids: Iterable[str]) -> None:
        gone = set(ids) & self.row.keys()
        if not gone:
            return
        keep = [n for n, i in enumerate(self.ids) if i not in gone]
        self._buffer = self.matrix[keep].copy()
        self.ids = [self.ids[n] for n in keep]
        self.folded = [self.folded[n] for n in keep]
        self.row = {i: n for n, i in enumerate(self.ids)}


def mismatch_message(current: ModelIdentity, wanted: ModelIdentity, location: str) -> str:
    return (
        f"the index at {location} was built with {current.label()}, but the current settings give "
        f"{wanted.label()}; vectors of different models cannot be compared. Use the same --weights and "
        "--descriptor as when it was built, or choose another --data-dir (or Elasticsearch index) for this model."
    )
