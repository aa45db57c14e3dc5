"""Kinds of real photo libraries, indexed end to end (real VGG16 with random weights) on both backends:
one file one image, moves keep their id and vector, changed means re-read, missing is not deleted,
one bad file never costs another."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core import scan as scan_module
from core.store.base import InvalidRecord

pytest_plugins = ["tests.es_fixtures"]


@pytest.fixture(params=["embedded", "elasticsearch"])
def lib_engine(request, tmp_path, shared_extractor):
    """An Engine on a fresh index of each backend, sharing the session's extractor."""
    from core.config import Settings
    from core.engine import Engine

    settings = Settings(data_dir=str(tmp_path / "data"), weights="random")
    if request.param == "elasticsearch":
        url = request.getfixturevalue("es_url")
        settings = settings.replace(backend="elasticsearch", es_url=url, es_index=request.getfixturevalue("es_alias"))
    engine = Engine(settings, extractor=shared_extractor)
    yield engine
    engine.close()


@pytest.fixture
def library(tmp_path, photo_dir) -> Path:
    """Six photos in two folders (a copy: tests change it)."""
    root = tmp_path / "library"
    photos = sorted(photo_dir.glob("*.jpg"))
    for n, src in enumerate(photos[:6]):
        folder = root / ("2023" if n < 3 else "2024")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, folder / src.name)
    return root


def ids_by_path(engine) -> dict[str, str]:
    return {p: r.id for r in engine.store.records() for p in r.paths}


def as_root() -> bool:
    return os.geteuid() == 0


def mount(*args) -> bool:
    return as_root() and subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


def test_a_moved_or_renamed_file_keeps_its_id_and_vector(lib_engine, library):
    first = lib_engine.index([library])
    assert first.indexed == 6
    before = ids_by_path(lib_engine)
    old = sorted(library.glob("2023/*.jpg"))
    renamed = old[0].with_name("renamed.jpg")
    old[0].rename(renamed)
    moved = library / "2024" / "sub" / old[1].name
    moved.parent.mkdir()
    old[1].rename(moved)
    vector = lib_engine.store.vector(before[str(old[0])])

    again = lib_engine.index([library])
    assert (again.indexed, again.moved, again.unchanged, again.removed) == (0, 2, 4, 0)
    after = ids_by_path(lib_engine)
    assert after[str(renamed)] == before[str(old[0])] and after[str(moved)] == before[str(old[1])]
    assert str(old[0]) not in after and lib_engine.store.count() == 6
    np.testing.assert_array_equal(lib_engine.store.vector(after[str(renamed)]), vector)


def test_byte_identical_copies_stay_separate_images(lib_engine, library):
    src = next(library.glob("2023/*.jpg"))
    shutil.copy2(src, library / "copy.jpg")
    report = lib_engine.index([library])
    assert report.indexed == 7 and lib_engine.store.count() == 7
    assert ids_by_path(lib_engine)[str(src)] != ids_by_path(lib_engine)[str(library / "copy.jpg")]


def test_hard_links_are_one_image_and_never_a_duplicate_pair(lib_engine, library):
    src = next(library.glob("2023/*.jpg"))
    (library / "best").mkdir()
    os.link(src, library / "best" / src.name)
    report = lib_engine.index([library])
    assert report.indexed == 6 and lib_engine.store.count() == 6
    record = lib_engine.store.get_by_path(str(library / "best" / src.name))
    assert record.paths == (str(src), str(library / "best" / src.name))
    hits = lib_engine.search(src, k=3)
    assert [h.record.id for h in hits].count(record.id) == 1
    assert lib_engine.duplicates(threshold=0.9999) == []
    # The link removed: the image stays, with one path left.
    (library / "best" / src.name).unlink()
    again = lib_engine.index([library])
    assert (again.indexed, again.removed) == (0, 0)
    assert lib_engine.store.get(record.id).paths == (str(src),)


def test_links_indexed_separately_before_are_merged(lib_engine, library):
    """An index from before hard links were merged holds one record per link: one of them stays."""
    from dataclasses import replace

    src = next(library.glob("2023/*.jpg"))
    lib_engine.index([library])
    record = lib_engine.store.get_by_path(str(src))
    (library / "best").mkdir()
    os.link(src, library / "best" / src.name)
    twin = replace(record, id="0123456789abcdef", paths=(str(library / "best" / src.name),))
    lib_engine.store.upsert([twin], lib_engine.store.vector(record.id)[None])
    assert lib_engine.store.count() == 7
    report = lib_engine.index([library])
    assert report.indexed == 0 and lib_engine.store.count() == 6
    assert len(lib_engine.store.get(record.id).paths) == 2


def test_a_copy_that_keeps_mtime_and_size_is_re_read(lib_engine, library):
    """`cp -p`/`rsync -t`: same size and mtime, new content; only ctime (and maybe the inode) tell."""
    a, b = sorted(library.glob("2023/*.jpg"))[:2]
    lib_engine.index([library])
    old = lib_engine.store.get_by_path(str(a))
    data = bytearray(b.read_bytes())
    data = data[: old.size] + b"\0" * max(0, old.size - len(data))  # another picture, same size
    st = a.stat()
    with open(a, "r+b") as f:  # in place: same inode
        f.write(data)
        f.truncate(old.size)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (old.size, old.mtime_ns)
    report = lib_engine.index([library])
    assert report.indexed == 1 and report.unchanged == 5
    new = lib_engine.store.get_by_path(str(a))
    assert new.id == old.id and new.hash != old.hash and new.ctime_ns != old.ctime_ns


def test_a_new_ctime_with_the_same_content_updates_the_record_only(lib_engine, library):
    a = next(library.glob("2023/*.jpg"))
    lib_engine.index([library])
    old = lib_engine.store.get_by_path(str(a))
    vector = lib_engine.store.vector(old.id)
    os.chmod(a, 0o600)  # changes ctime only
    report = lib_engine.index([library])
    assert (report.indexed, report.unchanged) == (0, 6)
    new = lib_engine.store.get(old.id)
    assert new.ctime_ns == a.stat().st_ctime_ns != old.ctime_ns
    np.testing.assert_array_equal(lib_engine.store.vector(old.id), vector)


def test_records_migrated_without_ctime_and_inode_are_not_embedded_again(lib_engine, library):
    from dataclasses import replace

    lib_engine.index([library])
    lib_engine.store.update([replace(r, ctime_ns=0, inode=0) for r in lib_engine.store.records()])
    report = lib_engine.index([library])
    assert (report.indexed, report.unchanged) == (0, 6)
    assert all(r.inode and r.ctime_ns for r in lib_engine.store.records())
    assert lib_engine.index([library]).unchanged == 6


def test_an_emptied_root_keeps_its_images_until_pruned(lib_engine, library, tmp_path):
    """Case 10's kind, without a mount: the drive's folder is there but empty."""
    lib_engine.index([library])
    away = tmp_path / "unplugged"
    library.rename(away)
    library.mkdir()
    report = lib_engine.index([library])
    assert report.removed == 0 and lib_engine.store.count() == 6
    assert [(f, n) for f, n, _ in report.missing_kept] == [(str(library), 6)]
    assert "missing images kept" in report.summary()
    assert report.to_dict()["missing_kept"][0]["count"] == 6
    library.rmdir()
    away.rename(library)
    back = lib_engine.index([library])
    assert (back.indexed, back.unchanged, back.removed, back.missing_kept) == (0, 6, 0, [])
    # An explicit choice forgets them.
    shutil.rmtree(library / "2024")
    kept = lib_engine.index([library])
    assert kept.removed == 3 and kept.missing_kept == []  # not every image is missing: a real deletion
    shutil.rmtree(library / "2023")
    assert lib_engine.index([library]).missing_kept
    pruned = lib_engine.index([library], prune_missing=True)
    assert pruned.removed == 3 and lib_engine.store.count() == 0


def test_a_missing_root_is_kept_and_reported(lib_engine, library, tmp_path):
    lib_engine.index([library])
    library.rename(tmp_path / "elsewhere")
    report = lib_engine.index([library])
    assert report.removed == 0 and lib_engine.store.count() == 6
    assert report.skipped == [(str(library), "no such file or folder")]
    assert [(f, n) for f, n, _ in report.missing_kept] == [(str(library), 6)]
    assert lib_engine.index([library], prune_missing=True).removed == 6


def test_an_unreadable_folder_keeps_its_images(lib_engine, library, monkeypatch):
    lib_engine.index([library])
    real_scandir = os.scandir

    def scandir(path):  # root reads every folder: refuse the way the kernel refuses others
        if os.path.basename(path) == "2024":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    report = lib_engine.index([library])
    assert report.removed == 0 and lib_engine.store.count() == 6
    assert [(f, n) for f, n, _ in report.missing_kept] == [(str(library / "2024"), 3)]
    assert (str(library / "2024"), "cannot read folder: Permission denied") in report.skipped


def test_an_unmounted_drive_inside_a_root_keeps_its_images(lib_engine, library):
    drive = library / "usb"
    drive.mkdir()
    if not mount("-t", "tmpfs", "none", drive):
        pytest.skip("mounting a tmpfs needs root")
    try:
        for src in sorted(library.glob("2023/*.jpg")):
            shutil.copy2(src, drive / f"usb-{src.name}")
        assert lib_engine.index([library]).indexed == 9
    finally:
        subprocess.run(["umount", drive], check=True)
    report = lib_engine.index([library])  # the mount point is an empty folder now
    assert report.removed == 0 and lib_engine.store.count() == 9
    assert [(f, n) for f, n, _ in report.missing_kept] == [(str(drive), 3)]


def test_a_root_on_another_device_keeps_its_missing_images(lib_engine, library, tmp_path):
    lib_engine.index([library])
    backup = tmp_path / "backup"
    shutil.copytree(library / "2023", backup)
    if not mount("-t", "tmpfs", "none", library):
        pytest.skip("mounting a tmpfs needs root")
    try:  # another drive mounted at the same place, holding two of the same photos
        (library / "2023").mkdir()
        for src in sorted(backup.glob("*.jpg"))[:2]:
            shutil.copy2(src, library / "2023")
        report = lib_engine.index([library])
        assert (report.indexed, report.unchanged, report.removed) == (0, 2, 0) and lib_engine.store.count() == 6
        assert [(f, n, r) for f, n, r in report.missing_kept] == [
            (str(library), 4, "the folder is on another device than at the last scan (a drive not mounted?)")]
    finally:
        subprocess.run(["umount", library], check=True)
    back = lib_engine.index([library])
    assert (back.indexed, back.unchanged, back.removed, back.missing_kept) == (0, 6, 0, [])


def test_one_file_that_fails_to_embed_or_store_costs_only_itself(engine, library, monkeypatch):
    from PIL import Image

    Image.new("RGB", (64, 48), (0, 0, 0)).save(library / "black.jpg")
    Image.new("RGB", (64, 48), (255, 255, 255)).save(library / "white.jpg")
    extractor = engine.extractor()
    real_embed = extractor.embed

    def embed(pixels):  # a descriptor that fails for one picture only
        if any(p.max() == 0 for p in pixels):
            raise FloatingPointError("simulated failure")
        return real_embed(pixels)

    real_upsert = engine.store.upsert

    def upsert(records, vectors):  # a store that refuses one record
        if any(r.name == "white.jpg" for r in records):
            raise InvalidRecord("simulated refusal")
        return real_upsert(records, vectors)

    monkeypatch.setattr(extractor, "embed", embed)
    monkeypatch.setattr(engine.store, "upsert", upsert)
    report = engine.index([library])
    reasons = {os.path.basename(p): r for p, r in report.skipped}
    assert reasons == {"black.jpg": "cannot compute its descriptor: FloatingPointError: simulated failure",
                       "white.jpg": "cannot store it: simulated refusal"}
    assert report.indexed == 6 == engine.store.count()


def test_cancel_answers_while_a_batch_is_being_embedded(engine, library, monkeypatch):
    extractor = engine.extractor()
    started = threading.Event()

    def slow_embed(pixels):
        started.set()
        time.sleep(30)
        raise AssertionError("not reached in time")

    monkeypatch.setattr(extractor, "embed", slow_embed)
    cancel = threading.Event()
    threading.Thread(target=lambda: (started.wait(60), cancel.set()), daemon=True).start()
    began = time.monotonic()
    report = engine.index([library], cancel=cancel)
    assert report.cancelled and report.indexed == 0 and engine.store.count() == 0
    assert time.monotonic() - began < 25  # did not wait for the 30 s batch


def test_ignored_and_not_images_are_counted(engine, library):
    (library / ".hidden.jpg").write_bytes((next(library.glob("2023/*.jpg"))).read_bytes())
    (library / "@eaDir").mkdir()
    (library / "notes.txt").write_text("hello")
    shutil.copy2(next(library.glob("2024/*.jpg")), library / "no-extension")
    report = engine.index([library])
    assert (report.indexed, report.ignored, report.not_images) == (7, 2, 1)
    assert engine.store.get_by_path(str(library / "no-extension")) is not None
    data = report.to_dict()
    assert {k: data[k] for k in ("indexed", "ignored", "not_images")} == {"indexed": 7, "ignored": 2, "not_images": 1}


def test_decoder_warnings_are_in_the_report(engine, library):
    from tests.corpus import gradient, jpeg_bytes

    (library / "no-end-marker.jpg").write_bytes(jpeg_bytes(gradient(320, 200))[:-2])  # case 04's kind
    report = engine.index([library])
    assert report.indexed == 7 and [p for p, _ in report.warnings] == [str(library / "no-end-marker.jpg")]
    assert report.to_dict()["warnings"][0]["warning"] and "1 warnings" in report.summary()


def test_special_files_and_pseudo_file_systems_as_roots(engine, library):
    os.mkfifo(library / "pipe.jpg")
    report = engine.index([library, "/proc/self"])
    assert report.indexed == 6
    assert dict(report.skipped) == {str(library / "pipe.jpg"): "not a regular file",
                                    os.path.realpath("/proc/self"): "a pseudo file system (like /proc), not scanned"}


def test_resolve_and_remove_folder_by_any_path(lib_engine, library, monkeypatch):
    src = next(library.glob("2023/*.jpg"))
    (library / "best").mkdir()
    os.link(src, library / "best" / src.name)
    (library.parent / "link").symlink_to(library)
    lib_engine.index([library])
    record = lib_engine.store.get_by_path(str(src))
    monkeypatch.chdir(library)
    for ref in (record.id, str(src), f"best/{src.name}", str(library.parent / "link" / "2023" / src.name)):
        assert lib_engine.resolve(ref).id == record.id
    with pytest.raises(LookupError, match="not in the index"):
        lib_engine.resolve(os.fsdecode(b"/nowhere/caf\xe9.jpg"))
    assert lib_engine.remove_folder("best") == 0  # the image keeps its other path
    assert lib_engine.store.get(record.id).paths == (str(src),)
    assert lib_engine.remove_folder(library.parent / "link" / "2023") == 3 and lib_engine.store.count() == 3


def test_one_file_that_fails_to_hash_costs_only_itself(engine, library, monkeypatch):
    import core.indexer

    real_hash = core.indexer.content_hash
    victim = sorted(library.glob("2024/*.jpg"))[0]

    def content_hash(path):  # an unexpected failure, not one of the documented ImageErrors
        if path == str(victim):
            raise RuntimeError("simulated failure")
        return real_hash(path)

    engine.index([library])
    for path in library.glob("*/*.jpg"):  # all changed: each is re-read (hashed first)
        os.utime(path, ns=(time.time_ns(), time.time_ns()))
    monkeypatch.setattr(core.indexer, "content_hash", content_hash)
    report = engine.index([library])
    assert report.skipped == [(str(victim), "RuntimeError: simulated failure")]
    assert (report.indexed, report.unchanged, report.removed) == (0, 5, 0) and engine.store.count() == 6
