"""Index folders: scan, match each file to the index, decode in worker processes, embed in batches, commit.

Matching, on the image identity of core/store/base.py (ids never come from a path):
1. By path. A file whose path the index holds is that image. It is re-read when its size, mtime, ctime or
   inode differ from the record (copy tools that keep mtime and size, `cp -p`, `rsync -t`, and editors
   that replace a file all change ctime or inode): if its content hash is unchanged only the record is
   updated (no embedding; this also covers indexes migrated with ctime and inode 0), else it is embedded
   again under the same id.
2. By content. A file whose path the index does not hold is hashed (unless the index is empty); a record
   with the same size and hash whose every path is gone is the same image moved or renamed: it keeps its
   id and vector, its paths are updated (`moved`), nothing is extracted (rclip matches moves the same way).
3. Anything else is a new image (`new_image_id`). Hard links are one image with several paths (the scan
   merges them by device and inode).

Missing is not deleted. An image whose paths are all gone is forgotten only when none of these holds:
its folder could not be read; its root does not exist; its root is on another device than at the last
scan; every image under its root, or under a mount point inside the root, is missing (an unmounted
drive or share looks like an empty folder). Kept images are listed in the report's `missing_kept`;
`prune_missing=True` forgets them. The device and mount points of each root at its last scan are kept in
a small JSON file (`state_file`, `<data_dir>/scan-state.json` from the Engine), keyed by the index's
location; device numbers are only compared with the last scan, never used as an identity.

Tags and photo metadata (core/store/annotations.py) follow each written record: the EXIF of every image
embedded in this run is read (core.metadata, cheap: the header only) and its names and folders refreshed;
images of the scanned folders that have no annotations yet (indexed before they existed) get them at the
end of the run; forgotten images lose theirs. With an extractor built with labels (the `labels` setting),
each embedded image's ImageNet labels come from the same forward pass and are stored beside its tags
(core.labels catches up on images indexed before the setting was on).

One bad file never costs another: any exception while reading, hashing, decoding, extracting or storing
one file becomes that file's reason in `skipped`; the rest of its batch is committed.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.decode import Decoded, DecodePool, content_hash
from core.images import ImageError
from core.metadata import PhotoMetadata, read_metadata
from core.model import Extractor
from core.paths import display_path, path_json
from core.scan import DEFAULT_EXCLUDE, Cancel, FileEntry, ScanResult, is_under, scan
from core.store.annotations import Annotations
from core.store.base import (
    ImageRecord,
    InvalidRecord,
    ModelIdentity,
    StoreError,
    VectorStore,
    new_image_id,
)

__all__ = ["Cancel", "IndexProgress", "IndexReport", "run_index"]

UPDATE_BATCH = 256  # records rewritten (no vector) per store.update call
HASH_THREADS = 2  # hashing is reading: two threads keep a disk busy; hashlib releases the GIL
HASH_CHUNK = 8  # files hashed between two cancel checks (a few large RAW files at most: well under 1 s)
CANCEL_POLL_S = 0.1  # how often a wait for the extractor looks at the cancel flag


@dataclass(frozen=True)
class IndexProgress:
    """Where an indexing run is, reported after each finished file."""
    done: int  # files of this run's work that are finished (committed, or skipped with a reason)
    total: int  # files that needed work in this run (new, changed or moved)
    path: str  # the last file finished (fs path)
    eta_s: float | None  # seconds left, None until a batch has been embedded


@dataclass
class IndexReport:
    """What an indexing run did. Paths are fs paths; `to_dict` gives their JSON form."""

    indexed: int = 0  # images embedded (new or changed content)
    unchanged: int = 0  # files found as indexed (including re-read files whose content was the same)
    moved: int = 0  # files matched by content to an image whose paths were gone: id and vector kept
    removed: int = 0  # images forgotten (missing, or merged into another name of the same file)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, warning): indexed anyway
    not_images: int = 0
    ignored: int = 0
    missing_kept: list[tuple[str, int, str]] = field(default_factory=list)  # (folder, count, reason)
    cancelled: bool = False
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """The report in words, one paragraph."""
        text = (f"{self.indexed} indexed, {self.unchanged} unchanged, {self.moved} moved, {self.removed} removed, "
                f"{len(self.skipped)} skipped, {len(self.warnings)} warnings, {self.not_images} not images, "
                f"{self.ignored} ignored in {self.elapsed_s:.1f} s")
        if self.cancelled:
            text += " (cancelled)"
        if self.missing_kept:
            kept = "; ".join(f"{count} under {display_path(folder)}: {reason}"
                             for folder, count, reason in self.missing_kept)
            total = sum(count for _, count, _ in self.missing_kept)
            text += f". {total} missing images kept ({kept}); prune missing images to forget them"
        return text

    def to_dict(self) -> dict:
        """The JSON report (CLI `index --json`, the API's job status): paths as core.paths.path_json."""
        return {
            "indexed": self.indexed, "unchanged": self.unchanged, "moved": self.moved, "removed": self.removed,
            "skipped": [{**path_json(p), "reason": r} for p, r in self.skipped],
            "warnings": [{**path_json(p), "warning": w} for p, w in self.warnings],
            "not_images": self.not_images, "ignored": self.ignored,
            "missing_kept": [{**_root_json(f), "count": n, "reason": r} for f, n, r in self.missing_kept],
            "cancelled": self.cancelled, "elapsed_s": round(self.elapsed_s, 3),
        }


def _root_json(folder: str) -> dict:
    return {("root" if key == "path" else "root_bytes"): value for key, value in path_json(folder).items()}


def run_index(
    store: VectorStore,
    identity: ModelIdentity,
    extractor: Callable[[], Extractor],
    roots: Sequence[str | Path],
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: Cancel | None = None,
    batch_size: int = 16,
    *,
    prune_missing: bool = False,
    exclude: Iterable[str] = DEFAULT_EXCLUDE,
    follow_external_symlinks: bool = False,
    state_file: str | Path | None = None,
    decode_workers: int = 2,
    annotations: Annotations | None = None,
) -> IndexReport:
    """Bring the index up to date with `roots` (folders or files) and say what was done.

    `extractor` is called only once some file needs embedding. `progress` is called in this thread after
    each committed batch. `cancel` is checked between files and while waiting for the extractor: the run
    then returns within about a second, keeping what was committed and forgetting nothing. Raises
    StoreError when the index itself fails (not for one file's bad data) and IdentityMismatch.
    `annotations`, when given, receive each written record's names, folders and photo metadata.
    """
    run = _Run(store, identity, extractor, progress, cancel, batch_size, decode_workers)
    run.annotations = annotations
    try:
        run.index([os.fspath(r) for r in roots], prune_missing, tuple(exclude), follow_external_symlinks,
                  Path(state_file) if state_file is not None else None)
    finally:
        if run.initialized:
            store.finish()
        run.report.elapsed_s = time.monotonic() - run.started
    return run.report


@dataclass
class _Work:
    entry: FileEntry
    record: ImageRecord | None  # the image the file's path names in the index, if any


class _Run:
    def __init__(self, store, identity, extractor, progress, cancel, batch_size, decode_workers):
        self.store: VectorStore = store
        self.identity = identity
        self.extractor = extractor
        self.progress = progress
        self.cancel = cancel
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.report = IndexReport()
        self.started = time.monotonic()
        self.initialized = False
        self.done = 0
        self.total = 0
        self.embed_total = 0
        self.embed_done = 0
        self.embed_started: float | None = None
        self.updates: list[ImageRecord] = []  # records to rewrite without their vectors
        self.update_ticks = 0  # how many of them are this run's work (the rest only gained or lost a link)
        self.claimed: set[str] = set()  # ids matched to a file of this scan
        self.scanned: list[str] = []  # the tops of this scan (core.scan.ScanResult.tops)
        self.incomplete: list[str] = []
        self.annotations: Annotations | None = None

    # -- the run ----------------------------------------------------------------------------------
    def index(self, roots, prune_missing, exclude, follow, state_file) -> None:
        report = self.report
        found = scan(roots, exclude, follow, self.cancel)
        report.skipped.extend(found.skipped)
        report.not_images, report.ignored = found.not_images, found.ignored
        if found.cancelled or self.cancelled():
            report.cancelled = True
            return
        self.scanned, self.incomplete = found.tops, found.incomplete
        known = self.known_records(found)
        work, absorbed = self.match(found, known)
        self.total = len(work)
        to_embed = self.check(work)
        if to_embed and not self.cancelled():
            self.embed(to_embed)
        self.flush_updates(force=True)
        if self.cancelled():  # moves not yet matched would look missing: forget nothing
            return
        if absorbed:
            self.write(self.store.delete, list(absorbed))
            self.annotate_deleted(absorbed)
            report.removed += len(absorbed)
        state = _State(state_file, self.store.location())
        self.prune(found, known, absorbed, state, prune_missing)
        state.save()
        self.annotate_unannotated(known)

    def cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.report.cancelled = True
        return self.report.cancelled

    def tick(self, n: int, path: str) -> None:
        self.done += n
        if self.progress is None:
            return
        eta = None
        if self.embed_done and self.embed_started is not None:
            per_file = (time.monotonic() - self.embed_started) / self.embed_done
            eta = per_file * max(self.embed_total - self.embed_done, 0)
        self.progress(IndexProgress(self.done, self.total, path, eta))

    def write(self, method, *args) -> None:
        """A store write; the index is initialised (its model identity recorded) before the first one."""
        if not self.initialized:
            self.store.initialize(self.identity)
            self.initialized = True
        method(*args)

    # -- matching ---------------------------------------------------------------------------------
    def known_records(self, found: ScanResult) -> dict[str, ImageRecord]:
        """Records of the index under the folders this scan walked (and named files), by id."""
        known: dict[str, ImageRecord] = {}
        for top in found.tops:
            if top in found.devices:
                known.update((r.id, r) for r in self.store.records(under=top))
            elif (record := self.store.get_by_path(top)) is not None:
                known[record.id] = record
        return known

    def match(self, found: ScanResult, known: dict[str, ImageRecord]) -> tuple[list[_Work], set[str]]:
        """Files found unchanged are counted; the rest become work. Also returns the ids of records that
        named other links of one file (indexes from before hard links were merged): they are folded in."""
        by_path = {p: r for r in known.values() for p in r.paths}
        work, absorbed = [], set()
        for entry in found.files:
            matches = [by_path[p] for p in entry.paths if p in by_path]
            if not matches:
                work.append(_Work(entry, None))
                continue
            record = matches[0]
            absorbed.update(r.id for r in matches[1:] if r.id != record.id)
            self.claimed.add(record.id)
            if _same_file(record, entry):
                self.report.unchanged += 1
                paths = self.paths_for(entry, record)
                if paths != record.paths:
                    self.updates.append(replace(record, paths=paths))
            else:
                work.append(_Work(entry, record))
        absorbed -= self.claimed
        self.claimed |= absorbed
        self.flush_updates()
        return work, absorbed

    def paths_for(self, entry: FileEntry, record: ImageRecord | None) -> tuple[str, ...]:
        """The file's paths now, plus those of the record's paths that this scan could not have seen."""
        kept = () if record is None else tuple(
            p for p in record.paths
            if p not in entry.paths and not (any(is_under(p, t) for t in self.scanned)
                                             and not any(is_under(p, f) for f in self.incomplete)))
        return entry.paths + kept

    def check(self, work: list[_Work]) -> list[tuple[FileEntry, str, ImageRecord | None]]:
        """Hash the files that need work; update records whose content is the same (changed stat, or
        moved); return what must be embedded: (entry, image id, previous record)."""
        to_embed = []
        if self.store.count() == 0:  # nothing a file could have moved from: new files need no hash first
            to_embed = [(w.entry, new_image_id(), None) for w in work if w.record is None]
            work = [w for w in work if w.record is not None]
        with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="hash") as pool:
            for start in range(0, len(work), HASH_CHUNK):
                if self.cancelled():
                    break
                chunk = work[start:start + HASH_CHUNK]
                for item, hashed in zip(chunk, pool.map(_hash, [w.entry.path for w in chunk]), strict=True):
                    target = self.classify(item, hashed)
                    if target is not None:
                        to_embed.append(target)
                self.flush_updates()
        return to_embed

    def classify(self, item: _Work, hashed: tuple[int, str] | Exception
                 ) -> tuple[FileEntry, str, ImageRecord | None] | None:
        """Decide what a hashed file needs; None when nothing is left to embed for it."""
        entry, record = item.entry, item.record
        if isinstance(hashed, Exception):
            self.report.skipped.append((entry.path, _reason(hashed)))
            self.tick(1, entry.path)
            return None
        size, digest = hashed
        if record is not None:
            if digest == record.hash and size == record.size:
                self.report.unchanged += 1
                self.updates.append(self.restat(record, entry, digest))
                self.update_ticks += 1
                return None
            return entry, record.id, record
        moved = self.moved_from(size, digest)
        if moved is not None:
            self.claimed.add(moved.id)
            self.report.moved += 1
            self.updates.append(self.restat(moved, entry, digest))
            self.update_ticks += 1
            return None
        return entry, new_image_id(), None

    def moved_from(self, size: int, digest: str) -> ImageRecord | None:
        """A record of the same content whose every path is gone, not yet matched in this run."""
        for candidate in self.store.find_by_hash(digest):
            if (candidate.id not in self.claimed and candidate.size == size
                    and not any(os.path.lexists(p) for p in candidate.paths)):
                return candidate
        return None

    def restat(self, record: ImageRecord, entry: FileEntry, digest: str) -> ImageRecord:
        return replace(record, paths=self.paths_for(entry, record), size=entry.size, mtime_ns=entry.mtime_ns,
                       ctime_ns=entry.ctime_ns, inode=entry.inode, hash=digest)

    def flush_updates(self, force: bool = False) -> None:
        if not self.updates or (len(self.updates) < UPDATE_BATCH and not force):
            return
        batch, self.updates = self.updates, []
        self.commit(batch, None)
        ticks, self.update_ticks = self.update_ticks, 0
        if ticks:
            self.tick(ticks, batch[-1].path)

    # -- embedding --------------------------------------------------------------------------------
    def embed(self, to_embed: list[tuple[FileEntry, str, ImageRecord | None]]) -> None:
        self.embed_total = len(to_embed)
        by_path = {entry.path: (entry, image_id, old) for entry, image_id, old in to_embed}
        batch: list[tuple[ImageRecord, np.ndarray]] = []
        running: tuple[Future, list] | None = None  # the batch being embedded while the next is decoded
        vgg = ThreadPoolExecutor(1, thread_name_prefix="embed")
        with DecodePool(self.decode_workers) as pool:
            try:
                for path, outcome in pool.imap(list(by_path), 2 * self.batch_size, self.cancel):
                    if self.cancelled():
                        break
                    entry, image_id, old = by_path[path]
                    record = self.decoded_record(entry, image_id, old, outcome)
                    if record is None:
                        continue
                    batch.append((record, outcome.pixels))
                    if len(batch) >= self.batch_size:
                        if running is not None and not self.finish_batch(*running):
                            break
                        running = (vgg.submit(self.vectors, [px for _, px in batch]), batch)
                        batch = []
                        if self.embed_started is None:
                            self.embed_started = time.monotonic()
                if running is not None and not self.cancelled():
                    self.finish_batch(*running)
                if batch and not self.cancelled():
                    if self.embed_started is None:
                        self.embed_started = time.monotonic()
                    self.finish_batch(vgg.submit(self.vectors, [px for _, px in batch]), batch)
            finally:
                vgg.shutdown(wait=False, cancel_futures=True)  # a cancelled run does not wait for VGG16

    def decoded_record(self, entry: FileEntry, image_id: str, old: ImageRecord | None,
                       outcome: Decoded | Exception) -> ImageRecord | None:
        if isinstance(outcome, Exception):
            self.report.skipped.append((entry.path, _reason(outcome)))
            self.embed_total -= 1
            self.tick(1, entry.path)
            return None
        self.report.warnings.extend((entry.path, w) for w in outcome.warnings)
        return ImageRecord(id=image_id, paths=self.paths_for(entry, old), size=outcome.size,
                           mtime_ns=entry.mtime_ns, ctime_ns=entry.ctime_ns, inode=entry.inode,
                           hash=outcome.hash, width=outcome.width, height=outcome.height)

    def vectors(self, pixels: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[str, ...]] | None]:
        """Descriptors of a batch (runs in the embedding thread): (n, dims) float32, and the n images' labels
        when the extractor has the labels head and there is somewhere to store them (else None)."""
        extractor = self.extractor()
        if extractor.labels and self.annotations is not None:
            return extractor.embed_labelled(np.stack(pixels))
        return extractor.embed(np.stack(pixels)), None

    def finish_batch(self, future: Future, batch: list[tuple[ImageRecord, np.ndarray]]) -> bool:
        """Wait for a batch's descriptors (answering cancel meanwhile) and commit it. False if cancelled."""
        while not wait_futures([future], timeout=CANCEL_POLL_S).done:
            if self.cancelled():
                return False
        records = [r for r, _ in batch]
        try:
            vectors, labels = future.result()
        except Exception:  # find the file that fails: embed one at a time
            records, vectors, labels = self.vectors_one_by_one(batch)
        self.commit(records, vectors, labels)
        self.embed_done += len(batch)
        self.tick(len(batch), batch[-1][0].path)
        return True

    def vectors_one_by_one(self, batch) -> tuple[list[ImageRecord], np.ndarray, list[tuple[str, ...]] | None]:
        records, vectors, labels = [], [], []
        for record, pixels in batch:
            try:
                vector, names = self.vectors([pixels])
                vectors.append(vector[0])
                labels.append(None if names is None else names[0])
                records.append(record)
            except Exception as exc:  # one file's failure is that file's reason
                self.report.skipped.append((record.path, f"cannot compute its descriptor: {_reason(exc)}"))
        dims = self.identity.dims
        return (records, np.asarray(vectors, np.float32).reshape(len(vectors), dims),
                None if None in labels else labels)

    # -- storing ----------------------------------------------------------------------------------
    def commit(self, records: list[ImageRecord], vectors: np.ndarray | None,
               labels: list[tuple[str, ...]] | None = None) -> None:
        """Write records (with vectors: upsert, else update; with labels: also the records' labels). A batch
        the store refuses is retried one record at a time, so one bad record costs only itself. Raises
        StoreError when every record of the batch fails with a store error that is not about the record: the
        index itself is failing."""
        if not records:
            return
        try:
            self.write_batch(records, vectors, labels)
            return
        except Exception as exc:  # retried one by one below
            first = exc
        store_failures = 0
        for i, record in enumerate(records):
            try:
                self.write_batch([record], None if vectors is None else vectors[i:i + 1],
                                 None if labels is None else labels[i:i + 1])
            except Exception as exc:  # one record's failure is that record's reason
                self.report.skipped.append((record.path, f"cannot store it: {_reason(exc)}"))
                store_failures += isinstance(exc, StoreError) and not isinstance(exc, InvalidRecord)
        if store_failures == len(records):
            raise first

    def write_batch(self, records: list[ImageRecord], vectors: np.ndarray | None,
                    labels: list[tuple[str, ...]] | None = None) -> None:
        if vectors is None:
            self.write(self.store.update, records)
        else:
            self.write(self.store.upsert, records, vectors)
            self.report.indexed += len(records)
        # New or changed content: its EXIF may be new too; a moved or re-linked image keeps its metadata.
        self.annotate(records, {r.id: read_metadata(r.path) for r in records} if vectors is not None else {})
        if labels is not None:
            self.annotate_labels(records, labels)

    # -- annotations ------------------------------------------------------------------------------
    def annotate(self, records: Sequence[ImageRecord], metadata: dict[str, PhotoMetadata]) -> None:
        """Side data of written records; its failure is a warning, never the loss of the image."""
        if self.annotations is None or not records:
            return
        try:
            self.annotations.put_records(records, metadata)
        except StoreError as exc:
            self.report.warnings.extend((r.path, f"cannot store its tags and metadata: {exc}") for r in records)

    def annotate_labels(self, records: Sequence[ImageRecord], labels: list[tuple[str, ...]]) -> None:
        """The ImageNet labels of embedded records; like annotate, a failure is a warning."""
        try:
            self.annotations.set_labels({r.id: names for r, names in zip(records, labels, strict=True)})
        except StoreError as exc:
            self.report.warnings.extend((r.path, f"cannot store its labels: {exc}") for r in records)

    def annotate_deleted(self, ids: Iterable[str]) -> None:
        if self.annotations is not None:
            try:
                self.annotations.forget(ids)
            except StoreError as exc:  # leftovers are harmless: ids are never reused
                self.report.warnings.append(("", f"cannot forget the tags of removed images: {exc}"))

    def annotate_unannotated(self, known: dict[str, ImageRecord]) -> None:
        """Photo metadata for images of the scanned folders indexed before annotations existed."""
        if self.annotations is None or not known or self.cancelled():
            return
        try:
            annotated = self.annotations.metadata_ids()
        except StoreError:
            return
        # Read back: the paths as this run wrote them (moves), and without the images it forgot.
        missing = list(self.store.get_many(i for i in known if i not in annotated).values())
        for start in range(0, len(missing), UPDATE_BATCH):
            if self.cancelled():
                return
            batch = missing[start:start + UPDATE_BATCH]
            self.annotate(batch, {r.id: read_metadata(r.path) for r in batch})

    # -- missing images ---------------------------------------------------------------------------
    def prune(self, found: ScanResult, known: dict[str, ImageRecord], absorbed: set[str], state: _State,
              prune_missing: bool) -> None:
        """Forget images whose paths are all gone, unless a rule says they may be only out of reach."""
        missing = [r for i, r in known.items() if i not in self.claimed and i not in absorbed]
        kept: Counter[tuple[str, str]] = Counter()
        gone: list[str] = []
        # Roots that do not exist (or cannot be read) at all: their images are out of reach, not deleted.
        absent = [f for f in found.incomplete if f not in found.tops and not any(is_under(f, t) for t in found.tops)]
        for folder in absent:
            for record in self.store.records(under=folder):
                if prune_missing:
                    gone.append(record.id)
                else:
                    kept.update([(folder, REASON_ABSENT)])
        moved_devices = {top for top, dev in found.devices.items()
                         if state.device(top) is not None and state.device(top) != dev}
        groups = self.groups(found, known, state)
        missing_in: Counter[str] = Counter(g for r in missing for g in groups.get(r.id, ()))
        known_in: Counter[str] = Counter(g for r in known.values() for g in groups.get(r.id, ()))
        for record in missing:
            reason = None if prune_missing else self.keep_reason(record, groups.get(record.id, ()), moved_devices,
                                                                  missing_in, known_in)
            if reason is None:
                gone.append(record.id)
            else:
                kept.update([reason])
        if gone:
            self.write(self.store.delete, gone)
            self.annotate_deleted(gone)
            self.report.removed += len(gone)
        self.report.missing_kept = [(folder, n, reason) for (folder, reason), n in sorted(kept.items())]
        kept_folders = {folder for folder, _ in kept}
        for top, dev in found.devices.items():
            if top in moved_devices and not prune_missing:
                continue  # keep the device the kept images were found on
            mounts = {m: d for m, d in found.mounts.items() if m != top and is_under(m, top)}
            mounts.update((m, d) for m, d in state.mounts(top).items() if m in kept_folders and m not in mounts)
            state.set(top, dev, mounts)

    def groups(self, found: ScanResult, known: dict[str, ImageRecord], state: _State) -> dict[str, tuple[str, ...]]:
        """For each known record: the root it is under and the deepest mount point inside that root
        (this scan's mount points and the last scan's: an unmounted drive is no mount point now)."""
        mounts_of = {top: sorted({*(m for m in found.mounts if m != top and is_under(m, top)),
                                  *state.mounts(top)}, key=len, reverse=True) for top in found.devices}
        groups = {}
        for record in known.values():
            top = max((t for t in found.devices if is_under(record.path, t)), key=len, default=None)
            if top is None:
                continue
            mount = next((m for m in mounts_of[top] if is_under(record.path, m)), None)
            groups[record.id] = (top,) if mount is None else (top, mount)
        return groups

    def keep_reason(self, record: ImageRecord, groups: tuple[str, ...], moved_devices: set[str],
                    missing_in: Counter, known_in: Counter) -> tuple[str, str] | None:
        folder = next((f for f in self.incomplete if is_under(record.path, f)), None)
        if folder is not None:
            return folder, REASON_UNREADABLE
        if not groups:
            return None
        top = groups[0]
        if top in moved_devices:
            return top, REASON_DEVICE
        if len(groups) > 1 and missing_in[groups[1]] == known_in[groups[1]]:
            return groups[1], REASON_MOUNT
        if missing_in[top] == known_in[top]:
            return top, REASON_EMPTY
        return None


REASON_ABSENT = "not found (a drive or share not mounted?)"
REASON_UNREADABLE = "the folder could not be read"
REASON_DEVICE = "the folder is on another device than at the last scan (a drive not mounted?)"
REASON_MOUNT = "none of the images under this mount point was found (a drive not mounted?)"
REASON_EMPTY = "none of the images under this folder was found (a drive not mounted?)"


def scanned_roots(state_file: Path, location: str) -> list[str]:
    """The roots `run_index` has scanned into the index at `location` (its `state_file`: real fs paths as
    scanned, sorted); [] when the file is missing or unreadable."""
    return sorted(_State(state_file, location).roots)


class _State:
    """Each root's device and mount points at its last scan, in a JSON file shared by the indexes
    (keyed by their location). Unreadable or missing files count as no earlier scan."""

    def __init__(self, path: Path | None, location: str):
        self.path, self.location = path, location
        self.data: dict = {}
        if path is not None:
            try:
                self.data = json.loads(path.read_text(encoding="ascii"))
            except (OSError, ValueError):
                self.data = {}
        self.roots: dict = self.data.setdefault(location, {}) if isinstance(self.data, dict) else {}

    def device(self, root: str) -> int | None:
        return self.roots.get(root, {}).get("device")

    def mounts(self, root: str) -> dict[str, int]:
        return dict(self.roots.get(root, {}).get("mounts", {}))

    def set(self, root: str, device: int, mounts: dict[str, int]) -> None:
        self.roots[root] = {"device": device, "mounts": mounts}

    def save(self) -> None:
        if self.path is None:
            return
        # ensure_ascii: undecodable bytes of a name (surrogates) are written as \\udcXX escapes and read back.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**self.data, self.location: self.roots}, ensure_ascii=True), encoding="ascii")
        os.replace(tmp, self.path)


def _same_file(record: ImageRecord, entry: FileEntry) -> bool:
    return (record.size, record.mtime_ns, record.ctime_ns, record.inode) == (
        entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode)


def _hash(path: str) -> tuple[int, str] | Exception:
    try:
        return content_hash(path)
    except Exception as exc:  # returned: one file's failure is that file's reason
        return exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
