"""Index folders: scan, decode ahead in a small thread pool, embed in batches, commit each batch, prune."""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.images import ImageError, load_image, read_bytes
from core.model import INPUT_SIZE, Extractor, to_model_pixels
from core.scan import FileEntry, scan
from core.store.base import ImageRecord, ModelIdentity, VectorStore

DECODE_THREADS = 2


class Cancel(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class IndexProgress:
    done: int  # files handled in this run (indexed or skipped)
    total: int  # files that needed work in this run
    path: str  # the last file handled
    eta_s: float | None


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cancelled: bool = False
    elapsed_s: float = 0.0

    def summary(self) -> str:
        text = (f"{self.indexed} indexed, {self.unchanged} unchanged, {len(self.skipped)} skipped, "
                f"{self.removed} removed in {self.elapsed_s:.1f} s")
        return text + (" (cancelled)" if self.cancelled else "")

    def to_dict(self) -> dict:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "removed": self.removed,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "cancelled": self.cancelled, "elapsed_s": round(self.elapsed_s, 3)}


def image_id(real_path: str) -> str:
    """Stable id of an indexed file: a hash of its real path."""
    return hashlib.blake2b(real_path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def prepare(entry: FileEntry) -> tuple[ImageRecord, np.ndarray]:
    """Read, hash and decode one file into its record and the network's input pixels (runs in the pool)."""
    data = read_bytes(entry.path)
    loaded = load_image(data, draft=INPUT_SIZE)
    record = ImageRecord(
        id=image_id(entry.path), path=entry.path, name=os.path.basename(entry.path),
        folder=os.path.dirname(entry.path), size=len(data), mtime_ns=entry.mtime_ns,
        hash=hashlib.blake2b(data, digest_size=16).hexdigest(), width=loaded.width, height=loaded.height,
    )
    return record, to_model_pixels(loaded.image)


def run_index(
    store: VectorStore,
    identity: ModelIdentity,
    extractor: Callable[[], Extractor],
    roots: list[str],
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: Cancel | None = None,
    batch_size: int = 16,
) -> IndexReport:
    """Bring the index up to date with `roots`. `extractor` is called only once some file needs embedding
    (a run that finds nothing new, or only unreadable files, never loads the model)."""
    started = time.monotonic()
    report = IndexReport()
    found = scan(roots)
    report.skipped.extend(found.errors)

    known: dict[str, ImageRecord] = {}
    for root in {os.path.realpath(os.path.expanduser(str(r))) for r in roots}:
        if os.path.isdir(root):
            known.update((r.path, r) for r in store.records(under=root))
        elif (record := store.get_by_path(root)) is not None:
            known[root] = record
    on_disk = {f.path for f in found.files}
    todo = []
    for entry in found.files:
        record = known.get(entry.path)
        if record is not None and (record.size, record.mtime_ns) == (entry.size, entry.mtime_ns):
            report.unchanged += 1
        else:
            todo.append(entry)
    gone = [r.id for p, r in known.items() if p not in on_disk and not _under_any(p, found.incomplete)]
    if gone:
        store.delete(gone)
        report.removed = len(gone)

    try:
        if todo:
            store.initialize(identity)
            _embed_all(store, extractor, todo, report, progress, cancel, batch_size, started)
    finally:
        store.finish()
        report.elapsed_s = time.monotonic() - started
    return report


def _embed_all(store, extractor, todo, report, progress, cancel, batch_size, started) -> None:
    done = 0
    records: list[ImageRecord] = []
    pixels: list[np.ndarray] = []

    def commit() -> None:
        if records:
            store.upsert(records, extractor().embed(np.stack(pixels)))
            report.indexed += len(records)
            records.clear()
            pixels.clear()

    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode") as pool:
        for entry, outcome in _decoded_ahead(pool, todo, ahead=2 * batch_size):
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                break
            if isinstance(outcome, ImageError):
                report.skipped.append((entry.path, outcome.reason))
            else:
                records.append(outcome[0])
                pixels.append(outcome[1])
                if len(records) >= batch_size:
                    commit()
            done += 1
            if progress is not None:
                elapsed = time.monotonic() - started
                eta = elapsed / done * (len(todo) - done) if done else None
                progress(IndexProgress(done, len(todo), entry.path, eta))
        commit()


def _decoded_ahead(pool: ThreadPoolExecutor, entries: list[FileEntry], ahead: int) -> Iterator[tuple]:
    """(entry, (record, pixels) | ImageError) in order, keeping at most `ahead` decodes in flight."""
    pending: deque[tuple[FileEntry, Future]] = deque()
    queue = iter(entries)
    try:
        for entry in queue:
            pending.append((entry, pool.submit(prepare, entry)))
            if len(pending) >= ahead:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        for _, future in pending:
            future.cancel()


def _result(entry: FileEntry, future: Future) -> tuple:
    try:
        return entry, future.result()
    except ImageError as exc:
        return entry, exc
    except (MemoryError, RecursionError) as exc:  # a pathological file must not end the run
        return entry, ImageError(f"cannot decode: {type(exc).__name__}")


def _under_any(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)
