"""Vectors in one append-only file of float32 rows beside the SQLite index, memory-mapped.

Layout: a 64-byte header (`MAGIC`, then the dimensions as a little-endian uint32, zero padding), then
rows of `dims` little-endian float32 values; row n (its *slot*) starts at byte 64 + n * dims * 4, so
every row is 64-byte aligned when dims is a multiple of 16. The file knows neither ids nor how many rows
are committed: SQLite keeps each image's slot and the committed row count, and is the source of truth.

Crash safety, the order SQLite-beside-a-file stores use: the writer, holding SQLite's write lock, cuts
the file to the committed row count (rows a crashed writer appended are dropped there), appends the new
rows, fsyncs them, and only then commits the SQLite transaction that references them. Readers map only
the committed rows (they learn the count from SQLite), so a torn or uncommitted append is never read.
When another process commits, a reader maps the longer file again: mmap reads nothing up front, so this
costs microseconds at any size (the pages already read stay in the OS page cache).

Slots of replaced or deleted vectors stay in the file until `compact` writes the live rows into a new
file (the next *generation*, `vectors-<generation>.f32`); the store switches to it in the same SQLite
transaction that renumbers the slots, and removes the old file after the commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAGIC = b"ISVECT01"
HEADER = 64  # bytes before row 0
DTYPE = np.dtype("<f4")
COPY_ROWS = 65_536  # rows per write when compacting (32 MB at 512 dims)


class VectorFileError(OSError):
    """The vector file is missing, not a vector file, of other dimensions, or shorter than committed."""


def vector_path(data_dir: Path, generation: int) -> Path:
    """The file of a generation: `data_dir/vectors-<generation>.f32`."""
    return Path(data_dir) / f"vectors-{generation}.f32"


class VectorFile:
    """The float32 rows of one vector file, mapped read-only; appends go through the file, not the map.

    Not thread-safe on its own (the store serialises calls with its lock). Raises VectorFileError (an
    OSError) for a file that is not a vector file of `dims` dimensions, and OSError for I/O failures.
    """

    def __init__(self, path: Path, dims: int, create: bool = False):
        """Open the file at `path` (create it with an empty body when `create` and it does not exist).
        Nothing is mapped until `map(rows)`."""
        self.path = Path(path)
        self.dims = dims
        self.row_bytes = dims * DTYPE.itemsize
        if create and not self.path.exists():
            _create(self.path, dims)
        try:
            with open(self.path, "rb") as f:
                head = f.read(HEADER)
        except FileNotFoundError:
            raise VectorFileError(f"the vector file {self.path} is missing") from None
        if len(head) < HEADER or head[:8] != MAGIC:
            raise VectorFileError(f"{self.path} is not an image-search vector file")
        stored = int.from_bytes(head[8:12], "little")
        if stored != dims:
            raise VectorFileError(f"{self.path} holds {stored}-d vectors; the index has {dims}")
        self._matrix = np.zeros((0, dims), DTYPE)

    @property
    def rows(self) -> int:
        """How many rows are mapped (the committed count given to the last `map`)."""
        return len(self._matrix)

    @property
    def matrix(self) -> np.ndarray:
        """The mapped rows: float32 (rows, dims), read-only, backed by the file's pages."""
        return self._matrix

    def map(self, rows: int) -> np.ndarray:
        """Map the first `rows` rows (the committed count SQLite holds) and return them (see `matrix`).

        Raises VectorFileError when the file holds fewer rows: the index was damaged (a file replaced or
        cut by hand), since commits only follow fsynced appends.
        """
        if rows == self.rows:
            return self._matrix
        size = os.path.getsize(self.path)
        if size < HEADER + rows * self.row_bytes:
            raise VectorFileError(f"{self.path} holds {(size - HEADER) // self.row_bytes} vectors; the index "
                                  f"references {rows}: the vector file was damaged or replaced")
        if rows == 0:
            self._matrix = np.zeros((0, self.dims), DTYPE)
        else:
            # A plain ndarray over the map (it keeps the memmap alive as its base): indexing a np.memmap
            # costs ~0.2 ms of Python per call (its __getitem__ and __array_finalize__, profiled in
            # knn_many), which a million re-ranks would pay.
            self._matrix = np.memmap(self.path, DTYPE, "r", offset=HEADER, shape=(rows, self.dims)).view(np.ndarray)
        return self._matrix

    def append(self, vectors: np.ndarray, at: int) -> range:
        """Write `vectors` (float32 (n, dims)) as rows at, at+1, ... and fsync them; return their slots.

        `at` is the committed row count, read inside the caller's SQLite write transaction: anything
        past it (an append whose commit never happened) is cut off first. Call before committing the
        rows' slots; on failure the caller rolls back and the next append cuts these rows off again.
        """
        vectors = np.ascontiguousarray(vectors, DTYPE)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims:
            raise ValueError(f"expected vectors of shape (n, {self.dims}), got {vectors.shape}")
        with open(self.path, "r+b") as f:
            f.truncate(HEADER + at * self.row_bytes)
            f.seek(HEADER + at * self.row_bytes)
            f.write(vectors.tobytes())
            f.flush()
            os.fsync(f.fileno())
        return range(at, at + len(vectors))

    def close(self) -> None:
        """Drop the mapping (the pages go when no array refers to them any more)."""
        self._matrix = np.zeros((0, self.dims), DTYPE)


def compact(source: VectorFile, keep: np.ndarray, path: Path) -> VectorFile:
    """Write the rows `keep` (slots of `source`, int64 (m,), in the order wanted) into a new file at
    `path`, fsynced, and return it with all m rows mapped: old slot keep[i] becomes slot i.

    The caller commits the renumbered slots and the new generation in one SQLite transaction, then
    removes the old file. A leftover file from a compaction that never committed is overwritten.
    """
    keep = np.asarray(keep, np.int64)
    tmp = path.with_suffix(".tmp")
    _create(tmp, source.dims)
    with open(tmp, "r+b") as f:
        f.seek(HEADER)
        for start in range(0, len(keep), COPY_ROWS):
            f.write(np.ascontiguousarray(source.matrix[keep[start : start + COPY_ROWS]], DTYPE).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    result = VectorFile(path, source.dims)
    result.map(len(keep))
    return result


def _create(path: Path, dims: int) -> None:
    header = MAGIC + dims.to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(header.ljust(HEADER, b"\0"))
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a new or renamed directory entry durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
