"""Start the desktop app: `image-search` (no command), `image-search gui` or `python -m desktop`.

Also two unattended modes: `--screenshot OUT.png --query IMAGE` (open, search, wait for the thumbnails,
save the window as a PNG, exit) and `--self-test` (open the window offscreen, check it shows and the index
opens, exit; the installer runs it on the frozen app).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from core.config import ConfigError, settings_from_arguments
from desktop.compat import broken_pyside
from desktop.main_window import MainWindow
from desktop.preferences import APPLICATION, ORGANIZATION, Preferences, locked_keys
from desktop.query import from_path
from desktop.style import apply_style

SCREENSHOT_SIZE = (1280, 800)
POLL_MS = 100


def run(args: argparse.Namespace) -> int:
    self_test = bool(getattr(args, "self_test", False))
    screenshot = getattr(args, "screenshot", None)
    query = getattr(args, "query", None)
    timeout_s = float(getattr(args, "timeout", 180.0))
    if self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    problem = broken_pyside()
    if problem is not None:
        print(f"image-search: error: {problem}", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Image Search")
    apply_style(app)
    try:
        window = MainWindow(settings_from_arguments(args), Preferences(), locked=locked_keys(args),
                            preload_model=not self_test, serve_api=not self_test)
    except ConfigError as exc:
        if self_test or screenshot:
            print(f"image-search: error: {exc}", file=sys.stderr)
        else:
            QMessageBox.critical(None, "Image Search", f"A setting cannot be used: {exc}")
        return 2
    if screenshot:
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    if query:
        window.open_source(from_path(query))
    if self_test:
        return _self_test(app, window, timeout_s)
    if screenshot:
        return _screenshot(app, window, screenshot, timeout_s)
    code = app.exec()
    window.close()  # after an app.exit() elsewhere; a no-op when the user closed it
    return code


def _self_test(app: QApplication, window: MainWindow, timeout_s: float) -> int:
    """Exit 0 once the window is visible and the index is open and counted; prints what it found as JSON."""
    result: dict = {}
    deadline = time.monotonic() + timeout_s
    window.engine_failed.connect(lambda message: (result.update(error=message), app.exit(1)))

    def poll() -> None:
        if window.isVisible() and window.image_count is not None:
            app.exit(0)
        elif time.monotonic() > deadline:
            result.update(error="timed out")
            app.exit(1)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(POLL_MS)
    code = app.exec()
    result.update(window_visible=window.isVisible(), platform=app.platformName(), index=window.status_index.text())
    window.close()
    print(json.dumps(result))
    return 0 if code == 0 and result["window_visible"] else 1


def _screenshot(app: QApplication, window: MainWindow, out: str, timeout_s: float) -> int:
    """Wait until results are shown and every visible thumbnail is drawn, then save window.grab()."""
    deadline = time.monotonic() + timeout_s
    failures: list[str] = []
    window.engine_failed.connect(lambda message: (failures.append(f"index: {message}"), app.exit(1)))
    window.query_failed.connect(lambda message: (failures.append(f"query: {message}"), app.exit(1)))

    def poll() -> None:
        if window.model.rowCount() and window.view.visible_thumbnails_ready():
            timer.stop()
            QTimer.singleShot(300, save)  # let the last thumbnails' repaint land
        elif time.monotonic() > deadline:
            failures.append(f"no results with thumbnails after {timeout_s:.0f} s")
            app.exit(1)

    def save() -> None:
        if not window.grab().save(out, "PNG"):
            failures.append(f"cannot write {out}")
        app.exit(1 if failures else 0)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(POLL_MS)
    code = app.exec()
    window.close()
    for failure in failures:
        print(f"image-search: screenshot failed: {failure}", file=sys.stderr)
    return code
