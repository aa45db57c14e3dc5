"""Entry point of the frozen `image-search` app (PyInstaller runs this file as __main__).

    image-search [global options] [COMMAND ...]   the CLI; no command opens the desktop app (image_search.py)
    image-search --self-test                      build the main window offscreen and exit 0 (desktop)
    image-search --diagnose                       print, as JSON, what the bundle holds and whether text renders

Before handing over to the CLI it prepares the environment the bundle needs: fonts on Linux, the test
build's random-weights default, quieter TensorFlow logging. It does the same when run from a checkout
(`python installer/entry.py ...`), where the bundle folder is this file's folder.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys
import tomllib
from collections.abc import MutableMapping
from pathlib import Path

BUILD_INFO = "build-info.json"
RANDOM_WEIGHTS_NOTE = (
    "image-search: this is a TEST BUILD with random VGG16 weights: search results are not meaningful. "
    "Use --weights PATH (or IMAGE_SEARCH_WEIGHTS) for real ones."
)


def bundle_dir() -> Path:
    """Where PyInstaller unpacked the bundle's data (the `_internal` folder of a one-folder build)."""
    return Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent))


def read_build_info(folder: Path) -> dict:
    """build-info.json written by build_installer.py ({} when absent, e.g. from a checkout)."""
    try:
        return json.loads((folder / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def user_chose_weights(argv: list[str], environ: MutableMapping[str, str]) -> bool:
    """Whether the user picked weights: a --weights flag, IMAGE_SEARCH_WEIGHTS, or the config file."""
    if any(arg == "--weights" or arg.startswith("--weights=") for arg in argv):
        return True
    if environ.get("IMAGE_SEARCH_WEIGHTS"):
        return True
    config = _config_file(argv, environ)
    try:
        return "weights" in tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False  # no file, or a broken one that the CLI itself will report


def _config_file(argv: list[str], environ: MutableMapping[str, str]) -> Path:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser()
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).expanduser()
    if environ.get("IMAGE_SEARCH_CONFIG"):
        return Path(environ["IMAGE_SEARCH_CONFIG"])
    from core.config import default_config_file  # platformdirs only; cheap

    return default_config_file()


def configure_environment(
    argv: list[str], folder: Path, info: dict, environ: MutableMapping[str, str]
) -> list[str]:
    """Set the variables the frozen app relies on; returns notes for the user (stderr)."""
    notes = []
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter in CLI output
    if info:
        # The desktop's About box reads this: version, platform, build time, weights ("imagenet"/"random").
        environ.setdefault("IMAGE_SEARCH_BUILD_INFO", str(folder / BUILD_INFO))
    fonts = folder / "fonts" / "fonts.conf"
    if sys.platform.startswith("linux") and fonts.is_file() and "FONTCONFIG_FILE" not in environ:
        # Qt reads fonts through fontconfig; this file adds the bundled DejaVu to the system's fonts.
        environ["FONTCONFIG_FILE"] = str(fonts)
    if info.get("weights") == "random" and not user_chose_weights(argv, environ):
        environ["IMAGE_SEARCH_WEIGHTS"] = "random"
        notes.append(RANDOM_WEIGHTS_NOTE)
    return notes


def self_test(argv: list[str]) -> int:
    """The desktop app's own self-test: the main window built offscreen, exit status 0 when it works."""
    from desktop.__main__ import main as desktop_main

    return desktop_main(argv)


def diagnose(folder: Path, info: dict) -> int:
    """What a support request needs: build, weights found, and whether Qt can render text here."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import elasticsearch

    from core import __version__
    from core.model import bundled_weights_dir, imagenet_candidates

    report = {
        "version": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "bundle": str(folder),
        "build": info,
        "weights_setting": os.environ.get("IMAGE_SEARCH_WEIGHTS", "(default)"),
        "runtimes": [name for name in ("onnxruntime", "tensorflow") if importlib.util.find_spec(name)],
        "bundled_weights_dir": str(bundled_weights_dir()),
        "imagenet_files": [str(p) for p in imagenet_candidates("gem") if p.is_file()],
        "elasticsearch_client": elasticsearch.__versionstr__,
        "fontconfig_file": os.environ.get("FONTCONFIG_FILE"),
        **_text_rendering(),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["text_renders"] else 1


def _text_rendering() -> dict:
    """Draw a word with the default font and count the dark pixels: zero means boxes or nothing."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QFontDatabase, QGuiApplication, QImage, QPainter

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    image = QImage(200, 40, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.white)
    painter = QPainter(image)
    painter.setPen(Qt.GlobalColor.black)
    painter.drawText(image.rect(), Qt.AlignmentFlag.AlignCenter, "Similar images")
    painter.end()
    dark = sum(1 for y in range(image.height()) for x in range(image.width()) if image.pixelColor(x, y).value() < 128)
    families = QFontDatabase.families()
    return {
        "default_font": app.font().family(),
        "font_families": len(families),
        "dejavu_sans": "DejaVu Sans" in families,
        "text_renders": dark > 50,
    }


def _hide_own_console_on_windows(argv: list[str]) -> None:
    """A double-clicked console .exe opens a console window beside the GUI; hide it when it is ours alone.

    The .exe stays a console program on Windows so that the CLI can print; a double click passes no
    arguments and leaves us the only process on that console.
    """
    if sys.platform != "win32" or argv:
        return
    import ctypes

    kernel32 = ctypes.windll.kernel32
    processes = (ctypes.c_uint * 2)()
    if kernel32.GetConsoleProcessList(processes, 2) == 1:  # started from Explorer, not from a shell
        ctypes.windll.user32.ShowWindow(kernel32.GetConsoleWindow(), 0)


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else argv
    folder = bundle_dir()
    info = read_build_info(folder)
    for note in configure_environment(argv, folder, info, os.environ):
        print(note, file=sys.stderr)
    if argv[:1] == ["--self-test"]:
        return self_test(argv)
    if argv[:1] == ["--diagnose"]:
        return diagnose(folder, info)
    _hide_own_console_on_windows(argv)
    from image_search import main as image_search_main

    return image_search_main(argv)


if __name__ == "__main__":
    sys.exit(main())
