"""Walk folders for image files: real paths, symlinks followed but every folder and file visited once."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


def image_suffixes() -> frozenset[str]:
    """File name endings Pillow can open. Content is still sniffed when decoding; this only skips
    files nobody would call an image (sidecars, documents), which would otherwise be reported as errors."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class FileEntry:
    path: str  # real path
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    files: list[FileEntry] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    incomplete: list[str] = field(default_factory=list)  # real folders not fully read: never prune there


def scan(roots: list[str | Path]) -> ScanResult:
    result = ScanResult()
    suffixes = image_suffixes()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real in seen_files:
            return
        try:
            st = os.stat(real)
        except OSError as exc:
            result.errors.append((path, f"cannot read file: {exc.strerror or exc}"))
            return
        seen_files.add(real)
        if not stat.S_ISREG(st.st_mode):
            result.errors.append((path, "not a regular file"))
            return
        result.files.append(FileEntry(real, st.st_size, st.st_mtime_ns))

    for root in roots:
        root = os.path.realpath(os.path.expanduser(str(root)))
        if os.path.isfile(root):
            add(root)  # named explicitly: tried whatever its suffix
            continue
        if not os.path.isdir(root):
            result.errors.append((root, "no such file or folder"))
            result.incomplete.append(root)
            continue

        def failed(exc: OSError) -> None:
            result.errors.append((exc.filename, f"cannot read folder: {exc.strerror or exc}"))
            result.incomplete.append(os.path.realpath(exc.filename))

        for folder, dirs, files in os.walk(root, followlinks=True, onerror=failed):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second way into a folder
                dirs[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes:
                    add(os.path.join(folder, name))
    return result
