"""Walk the roots of a photo library and account for every file in it.

Each regular file under a root ends up in exactly one place of the `ScanResult`: an image `FileEntry`
(by extension, or by content for unknown or missing extensions), `not_images`, `ignored`, or `skipped`
with a reason. The rules, and where they come from:

- Names are bytes on Linux: paths stay `str` with undecodable bytes as surrogates (PEP 383), never
  re-encoded here (see core/paths.py).
- One file, one entry: entries with the same (st_dev, st_ino) within one scan are one image with several
  paths (hard links; a file reached through two roots); a folder already walked (bind mount, a root
  inside another root, a symlink loop) is not walked again.
- Pseudo file systems (/proc, /sys, /dev, and any mount of a type in PSEUDO_FILE_SYSTEMS) are never
  entered, so a root like /proc/self cannot walk the disk through its `root` and `cwd` links.
- lstat first: FIFOs, sockets and devices are never opened (opening a FIFO blocks until a writer comes).
- A symlink to a folder or file outside every root is not followed unless `follow_external_symlinks`
  is set (off by default, as in digiKam and rclip); it is counted as ignored. Symlinks that lead inside
  a root are followed to the real path (an entry's paths are real paths).
- Ignored, and counted (a folder counts once, its contents are not read): names matching the exclude
  patterns (DEFAULT_EXCLUDE: hidden files and folders, AppleDouble `._*`, Synology `@eaDir`,
  `.thumbnails`, Lightroom `*.lrdata` previews, `$RECYCLE.BIN`, `.Trash-*`).
- A folder that cannot be read is listed in `incomplete` (and in `skipped` with its reason): the indexer
  never forgets images there.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.config import DEFAULT_EXCLUDE as _DEFAULT_EXCLUDE
from core.formats import IMAGE_EXTENSIONS, sniff

# Patterns match a file or folder name, case-insensitively; a pattern with a "/" matches the whole path.
DEFAULT_EXCLUDE = tuple(p.strip() for p in _DEFAULT_EXCLUDE.split(","))

# Kernel file systems that hold no files of the user (Linux `man 5 proc`, /proc/filesystems "nodev" kinds).
PSEUDO_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "devfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs", "rpc_pipefs",
    "nsfs", "selinuxfs", "autofs",
})
PSEUDO_PATHS = ("/proc", "/sys", "/dev")  # also where the mount table cannot be read
HEAD_BYTES = 64  # read from files of unknown type: what core.formats.sniff needs (its docstring)


class Cancel(Protocol):
    """A cancellation flag (threading.Event fits)."""

    def is_set(self) -> bool:
        """True once cancellation was asked for."""
        ...


def image_suffixes() -> frozenset[str]:
    """File name endings (lower case, with the dot) taken for images without reading the content."""
    return IMAGE_EXTENSIONS


@dataclass(slots=True)
class FileEntry:
    """One image file: one (device, inode), reachable by one or more paths (real fs paths, primary first).

    Times are st_mtime_ns / st_ctime_ns (nanoseconds since the epoch); `size` is in bytes. `root` is the
    folder of the scan it was found under (a root, or a followed symlink's real target); `mount` is the
    mount point containing it. Both are shared str objects, so an entry costs one small object."""

    paths: tuple[str, ...]
    size: int
    mtime_ns: int
    ctime_ns: int
    dev: int
    inode: int
    root: str
    mount: str

    @property
    def path(self) -> str:
        """The primary path (paths[0])."""
        return self.paths[0]


@dataclass
class ScanResult:
    """What a scan found: the image files, counts of what it passed over, and what it could not read."""
    files: list[FileEntry] = field(default_factory=list)
    not_images: int = 0  # regular files that are not images (by extension and content)
    ignored: int = 0  # excluded names, and symlinks not followed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): missing roots, unreadable
    incomplete: list[str] = field(default_factory=list)  # folders not fully read: never forget images there
    tops: list[str] = field(default_factory=list)  # real paths walked from: the roots and followed targets
    devices: dict[str, int] = field(default_factory=dict)  # real root folder -> its st_dev at this scan
    mounts: dict[str, int] = field(default_factory=dict)  # mount points at or under the tops -> st_dev
    cancelled: bool = False  # stopped early: the lists are partial


def read_mount_table(path: str = "/proc/self/mounts") -> dict[str, str]:
    """Mount point (fs path) -> file system type, from the kernel's table (fstab(5) escapes undone).

    Empty when the table cannot be read (not Linux); the scan then falls back to PSEUDO_PATHS."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    table = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            table[os.fsdecode(_unescape(fields[1]))] = os.fsdecode(fields[2])
    return table


def _unescape(raw: bytes) -> bytes:
    """Undo the octal escapes (`\\040` for a space, ...) that the kernel writes in mount points."""
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1:i + 4].isdigit() and len(raw[i + 1:i + 4]) == 3:
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def is_under(path: str, folder: str) -> bool:
    """True when `path` is `folder` or inside it (both absolute, normalised)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def mount_point_of(path: str, table: dict[str, str]) -> str:
    """The mount point containing `path` (real, absolute): the longest mount table entry above it, or,
    without a table, the highest folder above it on the same device."""
    best = ""
    for mount in table:
        if is_under(path, mount) and len(mount) > len(best):
            best = mount
    if best:
        return best
    current = path
    try:
        dev = os.stat(current).st_dev
        while (parent := os.path.dirname(current)) != current and os.stat(parent).st_dev == dev:
            current = parent
    except OSError:
        pass
    return current


class _Walk:
    """One scan's state. Memory: one FileEntry per image file, one int per folder and per hard-linked file."""

    def __init__(self, exclude: Iterable[str], follow_external_symlinks: bool, cancel: Cancel | None):
        self.result = ScanResult()
        self.cancel = cancel
        self.patterns = [p.lower() for p in exclude if p]
        self.follow_external = follow_external_symlinks
        self.table = read_mount_table()
        self.roots: list[str] = []
        self.seen_dirs: set[int] = set()
        self.by_inode: dict[int, int] = {}  # (dev, inode) key -> index in result.files

    def excluded(self, name: str, path: str) -> bool:
        lowered, lowered_path = name.lower(), path.lower()
        return any(fnmatch.fnmatchcase(lowered_path if "/" in p else lowered, p) for p in self.patterns)

    def in_pseudo(self, real: str) -> bool:
        """True when the file system holding `real` is a pseudo one (so /dev/shm, a tmpfs, is not)."""
        if self.table:
            return self.table.get(mount_point_of(real, self.table)) in PSEUDO_FILE_SYSTEMS
        return any(is_under(real, p) for p in PSEUDO_PATHS)

    def inside_roots(self, real: str) -> bool:
        return any(is_under(real, r) for r in self.roots)

    def run(self, roots: Iterable[str | Path]) -> ScanResult:
        resolved = []
        for root in roots:
            real = os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(root))))
            if real not in resolved:
                resolved.append(real)
        self.roots = resolved
        for real in resolved:
            if not self.result.cancelled:
                self.root(real)
        return self.result

    def root(self, real: str) -> None:
        result = self.result
        if self.in_pseudo(real):
            result.skipped.append((real, "a pseudo file system (like /proc), not scanned"))
            return
        try:
            st = os.stat(real)
        except FileNotFoundError:
            result.skipped.append((real, "no such file or folder"))
            result.incomplete.append(real)
            return
        except OSError as exc:
            result.skipped.append((real, f"cannot read: {exc.strerror or exc}"))
            result.incomplete.append(real)
            return
        result.tops.append(real)
        mount = mount_point_of(real, self.table)
        if stat.S_ISDIR(st.st_mode):
            result.devices[real] = st.st_dev
            self.walk(real, st, top=real, mount=mount)
        else:
            self.file(real, st, top=real, mount=mount, named=True)

    def walk(self, top_dir: str, top_st: os.stat_result, top: str, mount: str) -> None:
        result = self.result
        mount_dev = os.stat(mount).st_dev if mount != top_dir and os.path.exists(mount) else top_st.st_dev
        result.mounts.setdefault(mount, mount_dev)
        stack = [(top_dir, top_st.st_dev, top_st.st_ino, mount)]
        while stack:
            if self.cancel is not None and self.cancel.is_set():
                result.cancelled = True
                return
            folder, dev, ino, mount = stack.pop()
            key = (dev << 64) | ino
            if key in self.seen_dirs:  # a bind mount, a root inside another, a loop: one walk each
                continue
            self.seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                result.skipped.append((folder, f"cannot read folder: {exc.strerror or exc}"))
                result.incomplete.append(folder)
                continue
            subfolders = []
            for entry in entries:
                path = entry.path
                if self.excluded(entry.name, path):
                    result.ignored += 1
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    self.unreadable(path, exc)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    self.symlink(path)
                elif stat.S_ISDIR(st.st_mode):
                    sub_mount = self.sub_mount(path, st, dev, mount)
                    if sub_mount is not None:
                        subfolders.append((path, st.st_dev, st.st_ino, sub_mount))
                else:
                    self.file(path, st, top=top, mount=mount)
            stack.extend(reversed(subfolders))  # depth first, in name order

    def sub_mount(self, path: str, st: os.stat_result, parent_dev: int, mount: str) -> str | None:
        """The mount point of a subfolder, or None when it must not be entered (a pseudo file system)."""
        if path in self.table or st.st_dev != parent_dev:
            if self.in_pseudo(path):
                self.result.ignored += 1
                return None
            self.result.mounts.setdefault(path, st.st_dev)
            return path
        return mount

    def symlink(self, path: str) -> None:
        result = self.result
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            if _has_image_extension(path):
                result.skipped.append((path, "broken symbolic link"))
            else:
                result.not_images += 1
            return
        inside = self.inside_roots(real)
        if self.in_pseudo(real) or not (inside or self.follow_external):
            result.ignored += 1  # outside every root: not followed (follow_external_symlinks)
            return
        if inside:
            return  # its target is walked from its real path: the same image, not another one
        if not any(is_under(real, top) for top in result.tops):
            result.tops.append(real)
        mount = mount_point_of(real, self.table)
        if stat.S_ISDIR(st.st_mode):
            result.devices.setdefault(real, st.st_dev)
            self.walk(real, st, top=real, mount=mount)
        else:
            self.file(real, st, top=real, mount=mount, linked=True)

    def file(self, path: str, st: os.stat_result, top: str, mount: str, named: bool = False,
             linked: bool = False) -> None:
        """Account for one file; `named`: a root given as a file; `linked`: reached through a symlink."""
        result = self.result
        if not stat.S_ISREG(st.st_mode):  # FIFO, socket, device: never opened
            if named or _has_image_extension(path):
                result.skipped.append((path, "not a regular file"))
            else:
                result.not_images += 1
            return
        if not (named or _has_image_extension(path)):
            try:
                head = _head(path)
            except OSError as exc:
                self.unreadable(path, exc)
                return
            if sniff(head) is None:
                result.not_images += 1
                return
        key = (st.st_dev << 64) | st.st_ino
        index = self.by_inode.get(key)
        if index is not None:  # another name of a file already found
            entry = result.files[index]
            if path not in entry.paths:
                entry.paths += (path,)
            return
        # Only a file with several links, or reached through a symlink, can be met again: folders are
        # walked once each, so remembering just these keeps memory at one entry per ordinary file.
        if st.st_nlink > 1 or linked:
            self.by_inode[key] = len(result.files)
        result.files.append(FileEntry((path,), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino,
                                      top, mount))

    def unreadable(self, path: str, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):
            return  # deleted while we looked: it is not there
        self.result.skipped.append((path, f"cannot read file: {exc.strerror or exc}"))


def _has_image_extension(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _head(path: str) -> bytes:
    """The first HEAD_BYTES of a regular file, opened without following a symlink or blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since lstat
            return b""
        return os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)


def scan(roots: Iterable[str | Path], exclude: Iterable[str] = DEFAULT_EXCLUDE,
         follow_external_symlinks: bool = False, cancel: Cancel | None = None) -> ScanResult:
    """Walk `roots` (folders or files; `~` expanded, symlinks resolved) and account for every file.

    `exclude`: glob patterns of names to ignore (replaces DEFAULT_EXCLUDE). `follow_external_symlinks`:
    also follow symlinks that lead outside every root (default off). `cancel`: checked before each folder;
    once set, the result is partial and says `cancelled`. A root named as a file is tried
    whatever its name. Raises nothing for file system errors: they become `skipped` reasons and
    `incomplete` folders. Memory: one small FileEntry per image file, one int per folder and per
    hard-linked file (measured: 82 MB peak RSS over the baseline at 200k files with 56-character paths, about
    0.4 kB a file)."""
    return _Walk(exclude, follow_external_symlinks, cancel).run(roots)
