"""Acting on duplicates: plans, moving and trashing real files (an isolated freedesktop.org trash), the journal,
undo, files changed after the scan, and the index kept in step. Files are indexed by the real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core import file_actions
from core.duplicates import Group, Member, find_groups
from core.store.annotations import annotations_for
from core.store.base import ImageRecord

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.995  # random weights: see test_duplicates.test_real_files


def record(name: str, size: int = 100) -> ImageRecord:
    return ImageRecord(name, (f"/p/{name}.jpg",), size, 0, 0, 0, name * 4, 10, 10)


def group(*members: tuple[str, str, bool]) -> Group:
    return Group(tuple(Member(record(n), kind, 1.0, ref) for n, kind, ref in members), "larger file")


def test_plan_takes_exact_and_near_duplicates_never_keepers_or_reference_files():
    groups = [group(("a", "keeper", False), ("b", "exact", False), ("c", "near-duplicate", False),
                    ("d", "similar", False), ("e", "exact", True))]
    assert [r.id for r in file_actions.plan(groups).records] == ["b", "c"]
    widened = file_actions.plan(groups, kinds={"exact", "near-duplicate", "similar"})
    assert [r.id for r in widened.records] == ["b", "c", "d"]
    assert widened.files == 3 and widened.bytes == 300
    assert widened.summary() == "Move 3 files (0.0 MB) to the trash"
    marked = file_actions.plan(groups, marks={"a", "d", "e"})  # the user's marks; e is in a reference folder
    assert [r.id for r in marked.records] == ["a", "d"]
    with pytest.raises(ValueError, match="keep one"):
        file_actions.plan([group(("a", "keeper", False), ("b", "exact", False))], marks={"a", "b"})
    with pytest.raises(ValueError, match="destination"):
        file_actions.plan(groups, action="move")
    with pytest.raises(ValueError, match="unknown action"):
        file_actions.plan(groups, action="delete")


def make_library(photo_dir: Path, lib: Path) -> dict[str, Path]:
    """An original, an exact copy with a hard link, a quality-60 copy, and an exact copy that will change."""
    original = photo_dir / "astronaut.jpg"
    files = {"original": lib / "astronaut.jpg", "copy": lib / "sub" / "copy.jpg",
             "link": lib / "sub" / "copy-link.jpg", "q60": lib / "sub" / "deep" / "q60.jpg",
             "changed": lib / "changed.jpg", "other": lib / "coffee.jpg"}
    files["q60"].parent.mkdir(parents=True)
    for name in ("original", "copy", "changed"):
        files[name].write_bytes(original.read_bytes())
    os.link(files["copy"], files["link"])
    Image.open(original).save(files["q60"], quality=60)
    files["other"].write_bytes((photo_dir / "coffee.jpg").read_bytes())
    os.utime(files["original"], ns=(10**18, 10**18))  # the oldest: the keeper among the equal exact copies
    return files


def touch_after_scan(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size and bytes, another time


def test_move_then_undo(engine, photo_dir, tmp_path):
    lib, dest = tmp_path / "lib", tmp_path / "dest"
    files = make_library(photo_dir, lib)
    engine.index([str(lib)])
    store = engine.store
    touch_after_scan(files["changed"])
    [found] = find_groups(store, THRESHOLD)
    assert found.keeper.record.path == str(files["original"])
    plan = file_actions.plan([found], action="move", move_to=str(dest))
    assert sorted(p for r in plan.records for p in r.paths) == sorted(
        str(files[n]) for n in ("copy", "link", "q60", "changed"))
    assert plan.root == str(lib) and plan.files == 4

    copy_id = store.get_by_path(str(files["copy"])).id
    engine.set_tags(copy_id, ["Moon landing"])
    engine.annotations().set_labels({copy_id: ["space shuttle"]})
    journal_dir = tmp_path / "data"
    result = file_actions.execute(plan, store, journal_dir)
    assert result.skipped == [(str(files["changed"]), "changed since the scan (scan again first)")]
    assert sorted(result.done) == sorted(str(files[n]) for n in ("copy", "link", "q60"))
    for name in ("copy", "link", "q60"):
        moved = dest / files[name].relative_to(lib)
        assert moved.exists() and not files[name].exists()
    assert (dest / "sub" / "copy.jpg").stat().st_ino == (dest / "sub" / "copy-link.jpg").stat().st_ino
    assert files["changed"].exists() and store.get_by_path(str(files["changed"])) is not None
    moved_record = store.get_by_path(str(dest / "sub" / "copy.jpg"))
    assert moved_record is not None and sorted(moved_record.paths) == sorted(
        [str(dest / "sub" / "copy.jpg"), str(dest / "sub" / "copy-link.jpg")])
    assert store.get_by_path(str(files["copy"])) is None
    # Its side data followed it: same id, same tags and labels, found by words under its new folder.
    assert moved_record.id == copy_id and engine.tags(copy_id) == ["Moon landing"]
    assert engine.annotations_of([copy_id])[copy_id].labels == ("space shuttle",)
    assert [r.id for r in engine.search_words(f"{dest.name} moon")] == [copy_id]
    assert engine.search_words(f"{lib.name} moon") == []
    lines = (journal_dir / file_actions.JOURNAL_NAME).read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["move", "move"]

    undone = file_actions.undo_last(journal_dir, store)
    assert sorted(undone.done) == sorted(str(files[n]) for n in ("copy", "link", "q60")) and not undone.skipped
    for name in ("copy", "link", "q60"):
        assert files[name].exists() and not (dest / files[name].relative_to(lib)).exists()
        assert store.get_by_path(str(files[name])) is not None
    assert store.get_by_path(str(dest / "sub" / "copy.jpg")) is None
    assert engine.tags(copy_id) == ["Moon landing"]
    assert [r.id for r in engine.search_words(f"{lib.name} moon")] == [copy_id]
    assert engine.search_words(f"{dest.name} moon") == []
    assert file_actions.undo_last(journal_dir, store).done == []  # nothing left to undo
    # After undo, the index matches the files again: a new plan acts on them.
    [again] = find_groups(store, THRESHOLD)
    assert not any(file_actions._changed(m.record) for m in again.members if m.record.path != str(files["changed"]))


TRASH_SCRIPT = """
import dataclasses, json, sys
from core import file_actions
from core.duplicates import find_groups
from core.store.embedded import EmbeddedStore

data_dir, command, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = EmbeddedStore(data_dir)
if command == "trash":
    result = file_actions.execute(file_actions.plan(find_groups(store, threshold)), store, data_dir)
else:
    result = file_actions.undo_last(data_dir, store)
store.close()
print(json.dumps(dataclasses.asdict(result)))
"""


def run_isolated(tmp_path: Path, data_dir: str, command: str) -> dict:
    """send2trash reads XDG_DATA_HOME when imported, so trashing runs in a process with its own HOME and
    XDG_DATA_HOME (never the user's trash)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "home" / "xdg"),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", TRASH_SCRIPT, data_dir, command, str(THRESHOLD)], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="undo from the trash is Linux only")
def test_trash_then_undo_in_an_isolated_xdg_trash(engine, photo_dir, tmp_path):
    lib = tmp_path / "lib"
    (tmp_path / "home").mkdir()
    files = make_library(photo_dir, lib)
    engine.index([str(lib)])
    ids = {n: engine.store.get_by_path(str(files[n])).id for n in ("copy", "q60", "changed")}
    vector = engine.store.vector(ids["q60"])
    engine.set_tags(ids["q60"], ["Apollo"])
    engine.set_tags(ids["changed"], ["Apollo"])
    engine.annotations().set_labels({ids["q60"]: ["space shuttle"]})
    taken = engine.annotations_of([ids["q60"]])[ids["q60"]].taken
    touch_after_scan(files["changed"])
    engine.close()
    data_dir = engine.settings.data_dir
    trash = tmp_path / "home" / "xdg" / "Trash"

    freed = files["copy"].stat().st_size + files["q60"].stat().st_size
    result = run_isolated(tmp_path, data_dir, "trash")
    assert sorted(result["done"]) == sorted(str(files[n]) for n in ("copy", "link", "q60"))
    assert result["skipped"] == [[str(files["changed"]), "changed since the scan (scan again first)"]]
    assert result["bytes"] == freed  # the two names of one file count once
    for name in ("copy", "link", "q60"):
        assert not files[name].exists()
    assert sorted(p.name for p in (trash / "files").iterdir()) == ["copy-link.jpg", "copy.jpg", "q60.jpg"]
    assert len(list((trash / "info").glob("*.trashinfo"))) == 3

    from core.store.embedded import EmbeddedStore

    store = EmbeddedStore(data_dir)
    assert store.get(ids["copy"]) is None and store.get(ids["q60"]) is None  # no dangling entries
    assert store.get(ids["changed"]) is not None and files["changed"].exists()
    notes = annotations_for(store)  # side data goes with the record: no tags counted for trashed images
    assert set(notes.get_many(ids.values())) == {ids["changed"]} and notes.tag_counts() == {"Apollo": 1}
    notes.close()
    store.close()

    undone = run_isolated(tmp_path, data_dir, "undo")
    assert sorted(undone["done"]) == sorted(str(files[n]) for n in ("copy", "link", "q60"))
    assert not undone["skipped"]
    assert files["copy"].read_bytes() == files["original"].read_bytes()
    assert files["copy"].stat().st_ino == files["link"].stat().st_ino  # still one file with two names
    assert list((trash / "files").iterdir()) == [] and list((trash / "info").iterdir()) == []
    store = EmbeddedStore(data_dir)
    back = store.get(ids["q60"])
    assert back is not None and back.path == str(files["q60"])
    assert sorted(store.get(ids["copy"]).paths) == sorted([str(files["copy"]), str(files["link"])])
    assert store.vector(ids["q60"]).tolist() == vector.tolist()  # the journal kept the vector
    assert file_actions._changed(back) is None  # the record matches the restored file
    notes = annotations_for(store)  # and the side data came back with it
    note = notes.get_many([ids["q60"]])[ids["q60"]]
    assert note.tags == ("Apollo",) and note.labels == ("space shuttle",) and note.taken == taken
    assert notes.tag_counts() == {"Apollo": 2} and notes.matching_ids(["q60", "apollo"]) == {ids["q60"]}
    notes.close()
    store.close()
