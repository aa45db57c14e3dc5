#!/usr/bin/env python3
"""Build the offline installer of image-search: a PyInstaller one-folder bundle plus an archive.

    python build_installer.py [--weights PATH|random]... [--runtime onnxruntime|tensorflow]
                              [--output DIR] [--work DIR] [--no-archive]

Run it with the project's virtual environment (PyInstaller freezes the interpreter that runs it):
    .venv/bin/pip install 'pyinstaller>=6,<7' && .venv/bin/python build_installer.py

The bundle `<output>/image-search/` holds one executable, `image-search` (the CLI; without a command it
opens the desktop app), the VGG16 ImageNet weights (so it works with no network and no setup), DejaVu
fonts on Linux, and build-info.json. The archive beside it is named after the version and platform:
image-search-0.1.0-linux-x86_64.tar.gz (a .zip on Windows and macOS; macOS also gets image-search.app).

Runtime: the bundle runs VGG16 on ONNX Runtime (default: ~0.3 GB bundle, faster on CPUs) or on TensorFlow
(`--runtime tensorflow`: ~0.9 GB; archive name gets -tensorflow); it carries only the one it uses.

Weights: by default the files in the Keras cache (~/.keras/models); `--weights PATH` (repeatable) names
files explicitly. Either way each must be one of Keras' published files (checked by MD5).
`--weights random` makes a test build without real weights: the archive name ends in -random-weights
and the app defaults to random weights and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # so that `python /elsewhere/build_installer.py` finds core/ and installer/

from core import __version__  # noqa: E402
from core.model import FULL_FILE, KERAS_MD5, KERAS_URL, NOTOP_FILE, file_md5, keras_cache_dir  # noqa: E402
from installer.bundle import APP_NAME, RUNTIMES  # noqa: E402

SPEC = ROOT / "installer" / "image-search.spec"
ENTRY = ROOT / "installer" / "entry.py"
FONTS_CONF = ROOT / "installer" / "fonts.conf"
# What the source fingerprint covers: everything that ends up in the bundle or decides how it is built.
SOURCE_PATHS = ("core", "desktop", "installer", "resources", "build_installer.py", "pyproject.toml")

# DejaVu (Debian: fonts-dejavu-core); its license asks that the notice travel with the fonts.
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
DEJAVU_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf")
DEJAVU_LICENSE = Path("/usr/share/doc/fonts-dejavu-core/copyright")

RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx", "h5py"), "tensorflow": ("tensorflow", "keras", "h5py")}
WEIGHT_SIZES = {NOTOP_FILE: "59 MB, enough for the default 'gem' descriptor",
                FULL_FILE: "553 MB, also needed for the 'fc1' descriptor"}


class BuildError(Exception):
    """The build cannot go on. The message says what is missing and how to fix it."""


@dataclass(frozen=True)
class WeightsPlan:
    kind: str  # "imagenet" or "random"
    files: dict[str, Path] = field(default_factory=dict)  # name inside the bundle -> source file

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


def resolve_build_weights(choices: list[str], keras_dir: Path) -> WeightsPlan:
    """The weights to bundle: `choices` from --weights, else whatever the Keras cache holds."""
    if "random" in choices:
        if choices != ["random"]:
            raise BuildError("--weights random is a test build; it cannot be combined with weight files")
        return WeightsPlan("random")
    if choices:
        files: dict[str, Path] = {}
        for choice in choices:
            path = Path(choice).expanduser()
            files[verified_name(path)] = path
        return WeightsPlan("imagenet", files)
    found = [keras_dir / name for name in (NOTOP_FILE, FULL_FILE) if (keras_dir / name).is_file()]
    if not found:
        raise BuildError(missing_weights_message(keras_dir))
    return WeightsPlan("imagenet", {verified_name(path): path for path in found})


def verified_name(path: Path) -> str:
    """The Keras file name that `path` holds, going by its MD5 (so a renamed download still works)."""
    if not path.is_file():
        raise BuildError(f"weights file not found: {path}")
    md5 = file_md5(path)
    for name, expected in KERAS_MD5.items():
        if md5 == expected:
            return name
    expected = ", ".join(f"{name} {digest}" for name, digest in KERAS_MD5.items())
    raise BuildError(
        f"{path} is not one of Keras' published VGG16 weight files (its MD5 is {md5}; expected {expected}). "
        f"It may be a partial download: fetch it again from {KERAS_URL}."
    )


def missing_weights_message(keras_dir: Path) -> str:
    lines = ["no VGG16 ImageNet weights to bundle (the installer ships them so the app works offline).",
             "Looked in the Keras cache for:"]
    lines += [f"  {keras_dir / name}  ({size})" for name, size in WEIGHT_SIZES.items()]
    lines += [
        "Fix, either:",
        f"  - download {KERAS_URL}{NOTOP_FILE} (MD5 {KERAS_MD5[NOTOP_FILE]}) into {keras_dir}/",
        "    (and, for the fc1 descriptor too, the file without _notop), then run the build again;",
        "  - or pass the downloaded file(s): python build_installer.py --weights PATH [--weights PATH2];",
        "  - or, for a test build with meaningless results: python build_installer.py --weights random",
    ]
    return "\n".join(lines)


def platform_tag() -> str:
    """linux-x86_64, windows-x86_64, macos-arm64, ..."""
    system = {"darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform.rstrip("0123456789"))
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


def archive_stem(version: str, tag: str, random_weights: bool, runtime: str = RUNTIMES[0]) -> str:
    """image-search-0.1.0-linux-x86_64[-tensorflow][-random-weights]: the default runtime goes unsaid."""
    stem = f"{APP_NAME}-{version}-{tag}"
    if runtime != RUNTIMES[0]:
        stem += f"-{runtime}"
    return stem + ("-random-weights" if random_weights else "")


def check_runtime(runtime: str) -> None:
    """The chosen runtime must be importable here: PyInstaller bundles what this interpreter has."""
    missing = [name for name in RUNTIME_PACKAGES[runtime] if importlib.util.find_spec(name) is None]
    if missing:
        raise BuildError(f"--runtime {runtime} needs {', '.join(missing)} in {sys.prefix}; "
                         f"run: {sys.executable} -m pip install {' '.join(missing)}")


def archive_suffix() -> str:
    return ".tar.gz" if sys.platform.startswith("linux") else ".zip"


def find_icon() -> Path | None:
    """The app icon in resources/ for this platform (.ico on Windows, .icns on macOS), if there is one."""
    ext = {"win32": "ico", "darwin": "icns"}.get(sys.platform)
    if ext is None:
        return None  # Linux executables carry no icon; the desktop sets its window icon itself
    found = sorted((ROOT / "resources").rglob(f"*.{ext}"))
    return found[0] if found else None


def source_fingerprint(extra: str = "") -> str:
    """A hash of the bundled sources, this script, PyInstaller and every installed package's version."""
    digest = hashlib.sha256(extra.encode())
    for top in SOURCE_PATHS:
        base = ROOT / top
        paths = sorted(base.rglob("*")) if base.is_dir() else [base]
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    digest.update("\n".join([sys.version, *packages]).encode())
    return digest.hexdigest()[:16]


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link big files into the staging folder when possible (same disk), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def stage_fonts(stage: Path, fonts_dir: Path) -> Path:
    """DejaVu + its license + fonts.conf in stage/fonts (Linux only: Windows and macOS have fonts)."""
    missing = [name for name in DEJAVU_FILES if not (fonts_dir / name).is_file()]
    if missing:
        raise BuildError(
            f"DejaVu fonts not found in {fonts_dir} (missing {', '.join(missing)}); the Linux bundle ships them "
            "so text renders on machines without fonts. Fix: apt-get install fonts-dejavu-core, or --fonts-dir DIR."
        )
    folder = stage / "fonts"
    for name in DEJAVU_FILES:
        link_or_copy(fonts_dir / name, folder / name)
    license_file = fonts_dir / "LICENSE" if (fonts_dir / "LICENSE").is_file() else DEJAVU_LICENSE
    if not license_file.is_file():
        raise BuildError(f"the DejaVu license ({DEJAVU_LICENSE}) is missing; it must ship with the fonts")
    shutil.copyfile(license_file, folder / "LICENSE-DejaVu.txt")
    shutil.copyfile(FONTS_CONF, folder / "fonts.conf")
    return folder


def weights_readme(weights: WeightsPlan) -> str:
    if weights.is_random:
        return ("This is a test build: it holds no VGG16 weights and uses random ones, so search results are not\n"
                "meaningful. Give real weights with --weights PATH or IMAGE_SEARCH_WEIGHTS=PATH.\n")
    lines = [f"{name}  MD5 {KERAS_MD5[name]}" for name in sorted(weights.files)]
    return ("VGG16 ImageNet weights as published by Keras (" + KERAS_URL + "), checked by MD5 at build time.\n"
            "The app finds them here by name, without network or configuration.\n\n" + "\n".join(lines) + "\n")


def build_info(weights: WeightsPlan, runtime: str, fingerprint: str) -> dict:
    """What build-info.json says; the entry script and the About box read it."""
    import PyInstaller

    return {
        "name": APP_NAME,
        "version": __version__,
        "platform": platform_tag(),
        "weights": weights.kind,
        "weights_files": {name: KERAS_MD5[name] for name in sorted(weights.files)},
        "runtime": runtime,
        "built_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "pyinstaller": PyInstaller.__version__,
        "source": fingerprint,
    }


def run_pyinstaller(plan: dict, dist: Path, work: Path) -> None:
    plan_file = work / "plan.json"
    plan_file.write_text(json.dumps(plan, indent=2), encoding="utf-8")
    cmd = [sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work / "pyinstaller"), "--", str(plan_file)]
    print("$ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise BuildError("PyInstaller failed (its messages are above)")


def strip_symbols(internal: Path) -> None:
    """Drop the symbol tables of libpython (17 MB) and, in a TensorFlow bundle, TensorFlow's libraries (240 MB).

    Only these: they are built unstripped, while the libraries auditwheel patched into other wheels
    (numpy.libs, ...) break when stripped ("ELF load command address/offset not page-aligned").
    Linux only: on macOS stripping would void the code signatures.
    """
    if shutil.which("strip") is None:
        print("warning: 'strip' (binutils) not found: the bundle stays 17-260 MB bigger", file=sys.stderr)
        return
    libraries = [p for p in (internal / "tensorflow").rglob("*.so*") if p.is_file() and not p.is_symlink()]
    libraries += [p for p in internal.glob("libpython*.so*") if p.is_file() and not p.is_symlink()]
    subprocess.run(["strip", "--strip-unneeded", *map(str, libraries)], check=True)


def verify_bundled_weights(bundle: Path, weights: WeightsPlan) -> None:
    """The copies in the bundle must still be Keras' files (a full disk or a bad link would show here)."""
    for name in weights.files:
        copy = bundle / "_internal" / "weights" / name
        if not copy.is_file() or file_md5(copy) != KERAS_MD5[name]:
            raise BuildError(f"the bundled {copy} is missing or differs from Keras' published file")


def make_archive(bundle: Path, app: Path | None, dest: Path) -> Path:
    """tar.gz on Linux (keeps permissions and links); zip elsewhere, with ditto on macOS for the .app."""
    stem = dest.name.removesuffix(archive_suffix())
    dest.unlink(missing_ok=True)
    if sys.platform == "darwin" and app is not None and shutil.which("ditto"):
        # ditto keeps the .app's symlinks and code signatures, which zipfile would flatten.
        subprocess.run(["ditto", "-c", "-k", "--sequesterRsrc", "--keepParent", str(app), str(dest)], check=True)
    elif dest.name.endswith(".tar.gz"):
        # Level 6: nearly level 9's size at a fraction of its time on the 700 MB of TensorFlow.
        with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
            # The executable first, so that a quick look into the archive finds it.
            for child in sorted(bundle.iterdir(), key=lambda p: (p.is_dir(), p.name)):
                tar.add(child, arcname=f"{stem}/{child.name}")
    else:
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path in sorted(bundle.rglob("*")):
                archive.write(path, Path(stem) / path.relative_to(bundle))
    return dest


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def build(weights: WeightsPlan, runtime: str, output: Path, work: Path, fonts_dir: Path,
          archive: bool = True) -> dict:
    """Build the bundle (and archive) into `output`; returns the figures of build-report.json."""
    started = time.monotonic()
    fingerprint = source_fingerprint(f"{weights.kind}-{runtime}")
    stage = work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name, src in weights.files.items():
        link_or_copy(src, stage / "weights" / name)
    # A note in the folder says what it holds (and keeps the folder in a random-weights build, where
    # PyInstaller would drop it as empty).
    (stage / "weights").mkdir(exist_ok=True)
    (stage / "weights" / "README.txt").write_text(weights_readme(weights), encoding="utf-8")
    info = build_info(weights, runtime, fingerprint)
    (stage / "build-info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    fonts = stage_fonts(stage, fonts_dir) if sys.platform.startswith("linux") else None
    icon = find_icon()
    plan = {
        "root": str(ROOT),
        "entry": str(ENTRY),
        "version": __version__,
        "runtime": runtime,
        "build_info": str(stage / "build-info.json"),
        "weights_dir": str(stage / "weights"),
        "fonts_dir": str(fonts) if fonts else None,
        "icon": str(icon) if icon else None,
        "windowed": sys.platform == "darwin",  # a .app; on Windows the .exe stays a console program for the CLI
        "macos_app": sys.platform == "darwin",
    }
    output.mkdir(parents=True, exist_ok=True)
    run_pyinstaller(plan, output, work)
    bundle = output / APP_NAME
    app = output / f"{APP_NAME}.app" if sys.platform == "darwin" else None
    if sys.platform.startswith("linux"):
        strip_symbols(bundle / "_internal")
    verify_bundled_weights(bundle, weights)
    built = time.monotonic()
    report = {**info, "bundle": str(bundle), "bundle_bytes": folder_size(bundle),
              "pyinstaller_s": round(built - started, 1)}
    if archive:
        dest = output / (archive_stem(__version__, platform_tag(), weights.is_random, runtime) + archive_suffix())
        make_archive(bundle, app, dest)
        report.update(archive=str(dest), archive_bytes=dest.stat().st_size,
                      archive_s=round(time.monotonic() - built, 1))
    report["total_s"] = round(time.monotonic() - started, 1)
    (output / "build-report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", default=[], metavar="PATH|random",
                        help="a Keras VGG16 .h5 file to bundle (repeatable), or 'random' for a test build "
                        "(default: the files in the Keras cache)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0],
                        help="what runs VGG16 in the bundle (default: onnxruntime, ~0.3 GB; tensorflow: ~0.9 GB)")
    parser.add_argument("--output", type=Path, default=ROOT / "dist", help="where the bundle and archive go (dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "installer",
                        help="PyInstaller's work folder (build/installer/)")
    parser.add_argument("--fonts-dir", type=Path, default=DEJAVU_DIR, help=f"DejaVu fonts for Linux ({DEJAVU_DIR})")
    parser.add_argument("--no-archive", action="store_true", help="build the folder only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import PyInstaller  # noqa: F401  (fail before any work when it is missing)
    except ImportError:
        print(f"build_installer: error: PyInstaller is not installed in {sys.prefix}; "
              f"run: {sys.executable} -m pip install 'pyinstaller>=6,<7'", file=sys.stderr)
        return 2
    try:
        check_runtime(args.runtime)
        weights = resolve_build_weights(args.weights, keras_cache_dir())
        report = build(weights, args.runtime, args.output.resolve(), args.work.resolve(), args.fonts_dir,
                       not args.no_archive)
    except BuildError as exc:
        print(f"build_installer: error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle:  {report['bundle']}  ({report['bundle_bytes'] / 1e6:.0f} MB, {report['pyinstaller_s']} s)")
    if "archive" in report:
        print(f"archive: {report['archive']}  ({report['archive_bytes'] / 1e6:.0f} MB, {report['archive_s']} s)")
    if weights.is_random:
        print("note: TEST BUILD with random weights: search results from it are not meaningful")
    return 0


if __name__ == "__main__":
    sys.exit(main())
