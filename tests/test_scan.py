"""The scan accounts for every file under the roots: names as bytes, one entry per inode, no pseudo file
systems, no blocking special files, no walking out of the roots through symlinks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from core import scan as scan_module
from core.scan import DEFAULT_EXCLUDE, scan
from tests.corpus import gradient, jpeg_bytes

JPEG = jpeg_bytes(gradient())


def write(path, data=JPEG):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def paths_of(result) -> list[str]:
    return sorted(p for f in result.files for p in f.paths)


def test_every_file_is_an_image_not_an_image_or_ignored(tmp_path):
    root = tmp_path / "lib"
    write(root / "a.jpg")
    write(root / "sub" / "B.JPEG")
    write(root / "no-extension")  # a JPEG found by its content
    write(root / "odd.dat")
    write(root / "notes.txt", b"hello")
    write(root / "a.jpg.xmp", b"<x:xmpmeta/>")
    write(root / "empty.png", b"")  # an image by name: the decoder gives the reason
    for ignored in [".hidden.jpg", "._a.jpg", "@eaDir/a.jpg", ".thumbnails/x.png", "cat.lrdata/p.jpg",
                    "$RECYCLE.BIN/x.jpg", ".Trash-1000/files/y.jpg", "sub/.git/objects/z"]:
        write(root / ignored)
    result = scan([root])
    real = os.path.realpath(root)
    assert [os.path.relpath(p, real) for p in paths_of(result)] == [
        "a.jpg", "empty.png", "no-extension", "odd.dat", "sub/B.JPEG"]
    assert result.not_images == 2
    assert result.ignored == 8  # an ignored folder counts once
    assert result.skipped == [] and result.incomplete == [] and result.tops == [real]
    entry = next(f for f in result.files if f.path.endswith("a.jpg"))
    st = os.stat(entry.path)
    assert (entry.size, entry.mtime_ns, entry.ctime_ns, entry.dev, entry.inode) == (
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino)
    assert entry.root == real and entry.mount == scan_module.mount_point_of(real, scan_module.read_mount_table())


def test_exclude_patterns_replace_the_default_list(tmp_path):
    write(tmp_path / ".hidden.jpg")
    write(tmp_path / "raw" / "a.jpg")
    write(tmp_path / "Private" / "b.jpg")
    result = scan([tmp_path], exclude=["private", str(tmp_path / "raw")])
    assert [os.path.basename(p) for p in paths_of(result)] == [".hidden.jpg"]
    assert result.ignored == 2
    assert "$RECYCLE.BIN" in DEFAULT_EXCLUDE


def test_names_as_bytes_are_kept(tmp_path):
    root = os.fsencode(tmp_path)
    latin1 = root + b"/caf\xe9_latin1.jpg"  # not valid UTF-8
    nfc = unicodedata.normalize("NFC", "café-nfc.jpg")
    nfd = unicodedata.normalize("NFD", "café-nfd.jpg")
    for name in [latin1, os.fsencode(str(tmp_path / nfc)), os.fsencode(str(tmp_path / nfd)),
                 os.fsencode(str(tmp_path / "new\nline.jpg"))]:
        with open(name, "wb") as f:
            f.write(JPEG)
    deep = tmp_path
    while len(str(deep)) < 3500:  # a very long path (PATH_MAX is 4096)
        deep = deep / ("d" * 200)
    write(deep / "deep.jpg")
    found = paths_of(scan([tmp_path]))
    assert os.fsdecode(latin1) in found  # str with a surrogate: os.fsencode gives the bytes back
    assert str(tmp_path / nfc) in found and str(tmp_path / nfd) in found  # both forms, untouched
    assert str(tmp_path / "new\nline.jpg") in found and str(deep / "deep.jpg") in found
    assert len(found) == 5


def test_hard_links_and_a_file_under_two_roots_are_one_entry(tmp_path):
    write(tmp_path / "2023" / "IMG_0001.jpg")
    write(tmp_path / "2023" / "other.jpg")
    (tmp_path / "best").mkdir()
    os.link(tmp_path / "2023" / "IMG_0001.jpg", tmp_path / "best" / "IMG_0001.jpg")
    result = scan([tmp_path, tmp_path / "2023"])  # the second root is inside the first
    assert len(result.files) == 2
    linked = next(f for f in result.files if len(f.paths) > 1)
    assert linked.paths == (str(tmp_path / "2023" / "IMG_0001.jpg"), str(tmp_path / "best" / "IMG_0001.jpg"))


def test_a_bind_mount_is_walked_once(tmp_path):
    write(tmp_path / "photos" / "a.jpg")
    (tmp_path / "mirror").mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", tmp_path / "photos", tmp_path / "mirror"]).returncode:
        pytest.skip("bind mounts need root (mount --bind)")
    try:
        result = scan([tmp_path])
        assert paths_of(result) == [str(tmp_path / "mirror" / "a.jpg")] or paths_of(result) == [
            str(tmp_path / "photos" / "a.jpg")]
    finally:
        subprocess.run(["umount", tmp_path / "mirror"], check=True)


def test_fifos_sockets_and_devices_never_block(tmp_path):
    write(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe")  # no extension: would be sniffed if it were a file
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null.jpg", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=scan([tmp_path])), daemon=True)
    thread.start()
    thread.join(30)
    sock.close()
    assert not thread.is_alive(), "the scan blocked on a special file"
    result = out["result"]
    assert [os.path.basename(p) for p in paths_of(result)] == ["a.jpg"]
    assert {os.path.basename(p): r for p, r in result.skipped} == {
        "pipe.jpg": "not a regular file", **({"null.jpg": "not a regular file"} if os.geteuid() == 0 else {})}
    assert result.not_images == 2


def test_proc_self_as_a_root_does_not_walk_the_disk():
    started = time.monotonic()
    result = scan(["/proc/self", "/sys/kernel", "/dev"])
    assert time.monotonic() - started < 5
    assert result.files == [] and len(result.skipped) == 3
    assert all("pseudo file system" in reason for _, reason in result.skipped)


def test_a_pseudo_file_system_mounted_inside_a_root_is_not_entered(tmp_path):
    write(tmp_path / "a.jpg")
    (tmp_path / "proc").mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "proc", "proc", tmp_path / "proc"]).returncode:
        pytest.skip("mounting proc needs root")
    try:
        result = scan([tmp_path])
        assert [os.path.basename(p) for p in paths_of(result)] == ["a.jpg"] and result.ignored == 1
    finally:
        subprocess.run(["umount", tmp_path / "proc"], check=True)


def test_symlinks_outside_the_roots_are_not_followed_by_default(tmp_path):
    outside = tmp_path / "outside"
    write(outside / "far.jpg")
    root = tmp_path / "root"
    write(root / "near.jpg")
    (root / "link-to-outside").symlink_to(outside)
    (root / "link-to-file").symlink_to(outside / "far.jpg")
    (root / "loop").symlink_to(root)  # a loop back into the root
    (root / "near-link.jpg").symlink_to(root / "near.jpg")  # inside: the same image as its target
    (root / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = scan([root])
    assert paths_of(result) == [str(root / "near.jpg")]
    assert result.ignored == 2 and result.skipped == [(str(root / "broken.jpg"), "broken symbolic link")]

    followed = scan([root], follow_external_symlinks=True)
    assert paths_of(followed) == [str(outside / "far.jpg"), str(root / "near.jpg")]
    assert followed.tops[0] == str(root) and str(outside) in followed.tops


def test_an_unreadable_folder_is_incomplete_not_empty(tmp_path, monkeypatch):
    write(tmp_path / "ok" / "a.jpg")
    write(tmp_path / "locked" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path):  # root reads any folder, so refuse the way the kernel does for others
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    result = scan([tmp_path])
    assert paths_of(result) == [str(tmp_path / "ok" / "a.jpg")]
    assert result.incomplete == [str(tmp_path / "locked")]
    assert result.skipped == [(str(tmp_path / "locked"), "cannot read folder: Permission denied")]


def test_a_missing_root_is_skipped_and_incomplete(tmp_path):
    result = scan([tmp_path / "gone"])
    assert result.skipped == [(str(tmp_path / "gone"), "no such file or folder")]
    assert result.incomplete == [str(tmp_path / "gone")]


def test_a_root_named_as_a_file_is_tried_whatever_its_name(tmp_path):
    write(tmp_path / "picture.unknown")
    result = scan([tmp_path / "picture.unknown"])
    assert paths_of(result) == [str(tmp_path / "picture.unknown")]


def test_devices_and_mounts_are_recorded(tmp_path):
    write(tmp_path / "disk" / "a.jpg")
    result = scan([tmp_path / "disk"])
    assert result.devices == {str(tmp_path / "disk"): os.stat(tmp_path / "disk").st_dev}
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "none", tmp_path / "disk"]).returncode:
        pytest.skip("tmpfs mounts need root")
    try:
        write(tmp_path / "disk" / "b.jpg")
        mounted = scan([tmp_path])
        disk = str(tmp_path / "disk")
        assert disk in mounted.mounts and mounted.mounts[disk] == os.stat(disk).st_dev
        entry = mounted.files[0]
        assert entry.mount == disk and entry.root == str(tmp_path)
    finally:
        subprocess.run(["umount", tmp_path / "disk"], check=True)
    shutil.rmtree(tmp_path / "disk")


def test_mount_table_escapes(tmp_path):
    table = tmp_path / "mounts"
    table.write_bytes(b"none /media/my\\040disk tmpfs rw 0 0\nproc /proc proc rw 0 0\n")
    assert scan_module.read_mount_table(str(table)) == {"/media/my disk": "tmpfs", "/proc": "proc"}


def test_a_real_file_system_under_dev_is_scanned():
    table = scan_module.read_mount_table()
    if table.get("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm here")
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        write(Path(folder) / "a.jpg")
        assert [os.path.basename(p) for p in paths_of(scan([folder]))] == ["a.jpg"]


def test_cancel_stops_between_folders(tmp_path):
    for n in range(5):
        write(tmp_path / f"f{n}" / "a.jpg")
    cancel = threading.Event()
    cancel.set()
    result = scan([tmp_path, tmp_path / "f1"], cancel=cancel)
    assert result.cancelled and result.files == []
