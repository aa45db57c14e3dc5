"""Act on duplicates safely: move the copies not kept to the system trash or into a folder, journal each
action, and undo the last one.

Safety rules (issue 15): a plan says exactly what will happen (files, bytes) before anything is done;
keepers and files in reference folders are never acted on, nor is every member of a group; a file whose
size, modification or change time differs from its record (it changed since the scan) is left alone; the
index is updated after every file, so it never lists a file that is gone.

Trash: `send2trash` (the platform's trash: freedesktop.org trash on Linux, Finder, Recycle Bin). Undo on
Linux puts a trashed file back from the freedesktop.org trash: the entry in `Trash/info/*.trashinfo` whose
`Path` is the original path and whose `DeletionDate` is nearest the journal's time (trash spec 1.0,
https://specifications.freedesktop.org/trash-spec/1.0/), searched in `$XDG_DATA_HOME/Trash` (default
`~/.local/share/Trash`) and the `.Trash/$uid` and `.Trash-$uid` folders of the file's mount point. Elsewhere,
undo names the trashed files to restore by hand. Moved files are always moved back.

Journal: JSON lines in `journal_dir/actions.jsonl`, one per file acted on, written (and fsync'ed) right
after the file's action; an `{"undone": batch}` line closes an undone batch. A trash entry keeps the
image's vector (float32, base64), so undo re-adds the image to the index without the model or a rescan.

Side data (tags, labels, photo metadata: core/store/annotations.py) follows the image, as the index record
does. The image id stays through a move, so its tags stay; the annotations' copy of its names and folders
(what words-only search selects on) is refreshed to the new paths, and back on undo. A trash that takes the
image's last path deletes its record, so its annotation is deleted too (a tag count never counts trashed
images); the trash entry keeps that annotation, and undo puts it back with the record.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np

from core.duplicates import Group
from core.paths import display_path
from core.store.annotations import Annotation, Annotations, annotations_for
from core.store.base import ImageRecord, VectorStore

JOURNAL_NAME = "actions.jsonl"
ACTIONS = ("trash", "move")
DEFAULT_KINDS = frozenset({"exact", "near-duplicate"})
TRASH_DATE_SLACK_S = 120  # a .trashinfo DeletionDate (whole local seconds) this near the journal's time matches

Progress = Callable[[int, int], None]  # (images done, images planned)


@dataclass(frozen=True)
class Plan:
    """What an action will do: `records` are the images acted on (every path of each: hard links too)."""

    action: str  # "trash" or "move"
    records: tuple[ImageRecord, ...]
    move_to: str | None = None  # the destination folder of "move" (absolute)
    root: str | None = None  # "move": paths are kept relative to this folder (the files' common folder)

    @property
    def files(self) -> int:
        """Files acted on: every path of every record, hard links included."""
        return sum(len(r.paths) for r in self.records)

    @property
    def bytes(self) -> int:
        """Bytes freed by "trash" (hard links of one image count once); bytes moved by "move"."""
        return sum(r.size for r in self.records)

    def destination(self, path: str) -> str:
        """Where "move" puts `path`: move_to + its path relative to `root`."""
        return os.path.join(self.move_to or "", os.path.relpath(path, self.root or os.sep))

    def summary(self) -> str:
        """The confirmation text, e.g. "Move 3 files (4.2 MB) to the trash"."""
        where = "to the trash" if self.action == "trash" else f"into {display_path(self.move_to or '')}"
        return f"Move {self.files} file{'s' * (self.files != 1)} ({_megabytes(self.bytes)}) {where}"


@dataclass
class Result:
    """What execute or undo_last did, file by file; `cancelled` when it stopped before the end."""
    done: list[str] = field(default_factory=list)  # paths acted on (or restored, for undo)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason for people)
    bytes: int = 0  # bytes of the images fully acted on
    cancelled: bool = False


def plan(
    groups: Iterable[Group],
    kinds: Iterable[str] = DEFAULT_KINDS,
    action: str = "trash",
    move_to: str | None = None,
    *,
    marks: Iterable[str] | None = None,
) -> Plan:
    """The images to act on: in each group, the members other than the keeper whose kind is in `kinds`,
    or, when `marks` (image ids) is given, the members marked by the user (the keeper too, if marked).
    Members in reference folders are never included.

    Raises ValueError for an unknown action, a "move" without `move_to`, or marks that would leave a group
    with no copy at all.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; choose trash or move")
    if action == "move" and not move_to:
        raise ValueError("moving needs a destination folder")
    kinds, marked = frozenset(kinds), (frozenset(marks) if marks is not None else None)
    chosen: list[ImageRecord] = []
    for group in groups:
        take = [m for m in group.members
                if not m.reference and (m.record.id in marked if marked is not None
                                        else m is not group.keeper and m.kind in kinds)]
        if len(take) == len(group.members):
            raise ValueError(f"every copy of {display_path(group.keeper.record.path)} is marked; keep one")
        chosen += [m.record for m in take]
    chosen = list({r.id: r for r in chosen}.values())
    root = None
    if action == "move":
        move_to = os.path.realpath(os.path.expanduser(move_to or ""))
        folders = [os.path.dirname(p) for r in chosen for p in r.paths]
        root = os.path.commonpath(folders) if folders else os.sep
    return Plan(action, tuple(chosen), move_to if action == "move" else None, root)


def execute(
    plan: Plan,
    store: VectorStore,
    journal_dir: str | Path,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Result:
    """Carry out `plan`, one image at a time: check that each path is unchanged since the scan, act on it,
    update the index (trashed: deleted; moved: its paths replaced) and the image's annotations (see the
    module's docstring), write the journal line.

    Failures of one file (changed, missing, permission, destination exists) are reported in
    `Result.skipped` and cost no other file. Raises StoreError when the index or the annotations cannot be
    updated (the file already acted on is in the journal, so undo can still bring it back), OSError when
    the journal cannot be written (before anything else is done).
    """
    journal = _journal_path(journal_dir)
    batch = uuid.uuid4().hex
    result = Result()
    with open(journal, "a", encoding="utf-8") as out, _annotations(store) as notes:
        for n, record in enumerate(plan.records):
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            changed = _changed(record)
            if changed:
                result.skipped += [(p, changed) for p in record.paths]
            elif plan.action == "trash":
                _trash(record, store, notes, batch, out, result)
            else:
                _move(record, plan, store, notes, batch, out, result)
            if progress is not None:
                progress(n + 1, len(plan.records))
    store.finish()
    return result


def undo_last(journal_dir: str | Path, store: VectorStore) -> Result:
    """Undo the last batch of actions not yet undone: moved files go back; on Linux, trashed files come back
    from the freedesktop.org trash; the index gets their records (and vectors) back, and the annotations
    their tags, labels and metadata. A file whose original path is taken again, or that is no longer where
    the action put it, is skipped with the reason.
    Returns an empty Result when there is nothing to undo. Raises StoreError, OSError (the journal)."""
    journal = _journal_path(journal_dir)
    entries = _read_journal(journal)
    undone = {e["undone"] for e in entries if "undone" in e}
    batches = [e["batch"] for e in entries if "batch" in e and e["batch"] not in undone]
    result = Result()
    if not batches:
        return result
    last = batches[-1]
    with _annotations(store) as notes:
        for entry in reversed([e for e in entries if e.get("batch") == last]):
            record = ImageRecord.from_dict(entry["record"])
            if entry["action"] == "move":
                _unmove(record, entry["moved"], store, notes, result)
            else:
                _untrash(record, entry, store, notes, result)
    with open(journal, "a", encoding="utf-8") as out:
        _write(out, {"undone": last, "time": _now()})
    store.finish()
    return result


# -- acting ---------------------------------------------------------------------------------------------

def _changed(record: ImageRecord) -> str | None:
    """Why a record's files may not be acted on, or None. Every path is checked before any is touched:
    acting on one hard link changes the change time of the others."""
    for path in record.paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "missing (deleted or moved since the scan)"
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
        if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) != (record.size, record.mtime_ns, record.ctime_ns):
            return "changed since the scan (scan again first)"
    return None


@contextmanager
def _annotations(store: VectorStore) -> Iterator[Annotations]:
    notes = annotations_for(store)
    try:
        yield notes
    finally:
        notes.close()


def _trash(record: ImageRecord, store: VectorStore, notes: Annotations, batch: str, out, result: Result) -> None:
    from send2trash import send2trash

    vector = store.vector(record.id)
    note = notes.get_many([record.id]).get(record.id)  # read before the file goes: undo puts it back
    trashed = []
    for path in record.paths:
        try:
            send2trash(path)
        except OSError as exc:  # send2trash's TrashPermissionError is an OSError
            result.skipped.append((path, f"cannot be moved to the trash: {exc}"))
            continue
        trashed.append(path)
    if not trashed:
        return
    kept = _update_index(store, record, [p for p in record.paths if p not in trashed])
    entry = {"batch": batch, "time": _now(), "action": "trash", "record": record.to_dict(), "trashed": trashed}
    if vector is not None:
        entry["vector"] = base64.b64encode(np.asarray(vector, np.float32).tobytes()).decode("ascii")
    if note is not None:
        entry["annotation"] = note.to_dict()
    _write(out, entry)
    _follow(notes, record.id, kept)
    result.done += trashed
    if len(trashed) == len(record.paths):
        result.bytes += record.size


def _move(record: ImageRecord, plan: Plan, store: VectorStore, notes: Annotations, batch: str, out,
          result: Result) -> None:
    moved: dict[str, str] = {}
    for path in record.paths:
        target = plan.destination(path)
        if os.path.lexists(target):
            result.skipped.append((path, f"{display_path(target)} exists already"))
            continue
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(path, target)  # a rename, or copy and delete across file systems
        except OSError as exc:
            result.skipped.append((path, f"cannot be moved: {exc.strerror or exc}"))
            continue
        moved[path] = target
    if not moved:
        return
    updated = _update_index(store, record, [moved.get(p, p) for p in record.paths])
    _write(out, {"batch": batch, "time": _now(), "action": "move", "record": record.to_dict(), "moved": moved})
    _follow(notes, record.id, updated)
    result.done += list(moved)
    if len(moved) == len(record.paths):
        result.bytes += record.size


def _update_index(store: VectorStore, record: ImageRecord, paths: list[str]) -> ImageRecord | None:
    """The record with these paths (re-stat'ed: a rename changes the change time), or deleted if none.
    Returns the record as now indexed, or None when it was deleted."""
    if not paths:
        store.delete([record.id])
        return None
    st = os.stat(paths[0])
    updated = replace(record, paths=tuple(paths), ctime_ns=st.st_ctime_ns, inode=st.st_ino)
    store.update([updated])
    return updated


def _follow(notes: Annotations, image_id: str, record: ImageRecord | None) -> None:
    """The annotations in step with the index: the record's current names and folders, or none when the
    record was deleted."""
    if record is None:
        notes.forget([image_id])
    else:
        notes.put_records([record], {})


# -- undoing --------------------------------------------------------------------------------------------

def _unmove(record: ImageRecord, moved: dict[str, str], store: VectorStore, notes: Annotations,
            result: Result) -> None:
    back = []
    for original, target in moved.items():
        if os.path.lexists(original):
            result.skipped.append((original, "a file is at the original path again"))
        elif not os.path.lexists(target):
            result.skipped.append((original, f"no longer at {display_path(target)}"))
        else:
            try:
                os.makedirs(os.path.dirname(original), exist_ok=True)
                shutil.move(target, original)
            except OSError as exc:
                result.skipped.append((original, f"cannot be moved back: {exc.strerror or exc}"))
                continue
            back.append(original)
    if back:
        # The image's paths as the index has them now, with each moved-back path in its place again; an
        # image no longer in the index is found again by the next scan.
        current = store.get(record.id)
        if current is not None:
            returned = {moved[original]: original for original in back}
            _follow(notes, record.id, _update_index(store, current, [returned.get(p, p) for p in current.paths]))
        result.done += back
        result.bytes += record.size


def _untrash(record: ImageRecord, entry: dict, store: VectorStore, notes: Annotations, result: Result) -> None:
    trashed = entry["trashed"]
    if not sys.platform.startswith("linux"):
        result.skipped += [(p, "restore it from the system trash") for p in trashed]
        return
    when = datetime.fromisoformat(entry["time"])
    back = []
    for original in trashed:
        if os.path.lexists(original):
            result.skipped.append((original, "a file is at the original path again"))
            continue
        found = _trash_entry(original, when)
        if found is None:
            result.skipped.append((original, "not in the trash any more (emptied or restored?)"))
            continue
        info, stored = found
        try:
            os.makedirs(os.path.dirname(original), exist_ok=True)
            shutil.move(stored, original)
            info.unlink()
        except OSError as exc:
            result.skipped.append((original, f"cannot be restored: {exc.strerror or exc}"))
            continue
        back.append(original)
    if not back:
        return
    if "vector" in entry:
        vector = np.frombuffer(base64.b64decode(entry["vector"]), np.float32).reshape(1, -1)
        st = os.stat(back[0])
        restored = replace(record, paths=tuple(p for p in record.paths if p in back or os.path.lexists(p)),
                           ctime_ns=st.st_ctime_ns, inode=st.st_ino)
        store.upsert([restored], vector)
        # The annotation as it was before the trash, unless the image kept one (only some of its paths went).
        if "annotation" in entry and not notes.get_many([record.id]):
            notes.put({record.id: Annotation.from_dict(entry["annotation"])})
        _follow(notes, record.id, restored)
    result.done += back
    result.bytes += record.size


def trash_dirs(path: str) -> list[Path]:
    """The freedesktop.org trash folders a file at `path` may have gone to: the home trash
    ($XDG_DATA_HOME/Trash) and its mount point's `.Trash/$uid` and `.Trash-$uid`."""
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    folder = os.path.dirname(path)
    while not os.path.ismount(folder) and folder != os.path.dirname(folder):
        folder = os.path.dirname(folder)
    uid = str(os.getuid())
    return [Path(data_home) / "Trash", Path(folder) / ".Trash" / uid, Path(folder) / f".Trash-{uid}"]


def _trash_entry(original: str, when: datetime) -> tuple[Path, Path] | None:
    """(info file, trashed file) of the trash entry for `original` deleted nearest `when`, or None."""
    best: tuple[float, Path, Path] | None = None
    for trash in trash_dirs(original):
        info_dir = trash / "info"
        if not info_dir.is_dir():
            continue
        topdir = trash.parent if trash.name.startswith(".Trash-") else trash.parent.parent
        for info in info_dir.glob("*.trashinfo"):
            fields = _trash_info(info)
            if fields is None or "Path" not in fields or "DeletionDate" not in fields:
                continue
            stored_path = os.fsdecode(unquote_to_bytes(fields["Path"]))  # percent-encoded bytes
            if not os.path.isabs(stored_path):  # relative to the volume's top directory
                stored_path = os.path.join(str(topdir), stored_path)
            if stored_path != original:
                continue
            try:
                gap = abs((datetime.fromisoformat(fields["DeletionDate"]) - when).total_seconds())
            except ValueError:
                continue
            stored = trash / "files" / info.name[: -len(".trashinfo")]
            if gap <= TRASH_DATE_SLACK_S and os.path.lexists(stored) and (best is None or gap < best[0]):
                best = (gap, info, stored)
    return (best[1], best[2]) if best else None


def _trash_info(info: Path) -> dict[str, str] | None:
    try:
        text = info.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


# -- journal --------------------------------------------------------------------------------------------

def _journal_path(journal_dir: str | Path) -> Path:
    folder = Path(journal_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / JOURNAL_NAME


def _write(out, entry: dict) -> None:
    # json escapes an fs path's lone surrogates (\udcXX) and reads them back unchanged.
    out.write(json.dumps(entry) + "\n")
    out.flush()
    os.fsync(out.fileno())


def _read_journal(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    entries = []
    with open(journal, encoding="utf-8") as lines:
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the actions before it still count
                continue
    return entries


def _now() -> str:
    """Local time, as the trash spec's DeletionDate is written (whole seconds are compared with slack)."""
    return datetime.now().isoformat(timespec="seconds")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
