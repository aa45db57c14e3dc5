"""Desktop app timings, printed as one JSON object.

    python bench/gui.py [--weights random|imagenet|PATH] [--repeat N]

- window_visible_s: from starting the app's process (interpreter included) until its window is exposed
- first_search_s: from handing the app a query right after that until the results are shown (opening the
  index, building VGG16 and tracing it included: the model loads lazily once the window is up)
- search_warm_ms: dropping an image with the model loaded (read, preview, embed, kNN, show), median
- refine_ms: refining from a result by its stored vector (double-click), median
- scroll_1000_frame_ms: repainting the grid while scrolling through 1000 results, median and max
- indexing_gui_stall_ms: the largest gap of a 10 ms QTimer in the GUI thread while indexing a folder

Runs offscreen unless QT_QPA_PLATFORM says otherwise. The index is built first, in a separate process,
from the photos bundled with scikit-image and scikit-learn (tests/photos.py).
"""

from __future__ import annotations

import time

STARTED = time.time()  # before anything heavy is imported: the child's launch is measured from here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="random", help="'random' (default), 'imagenet' or a .h5 path")
    parser.add_argument("--repeat", type=int, default=7, help="searches and refinements to time (default: 7)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the app side, in its own process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_app(Path(args.child), args.weights, args.repeat)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        work = Path(tmp)
        sys.path.insert(0, str(ROOT))
        from bench.photos import write_photos

        write_photos(work / "photos")
        more = work / "more"
        more.mkdir()
        for n in range(2):  # a folder to index while the stall is measured
            for photo in sorted((work / "photos").iterdir()):
                shutil.copy(photo, more / f"{photo.stem}-{n}{photo.suffix}")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "XDG_CONFIG_HOME": str(work / "config"),
               "XDG_CACHE_HOME": str(work / "cache")}
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        subprocess.run([sys.executable, "-m", "core", "--data-dir", str(work / "data"), "--weights", args.weights,
                        "index", str(work / "photos")], cwd=ROOT, env=env, check=True, capture_output=True)
        launched = time.time()
        child = subprocess.run([sys.executable, __file__, "--child", str(work), "--weights", args.weights,
                                "--repeat", str(args.repeat)], cwd=ROOT, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"the app's side failed ({child.returncode}):\n{child.stderr[-4000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["window_visible_s"] = round(result.pop("visible_at") - launched, 2)
        print(json.dumps(result, indent=2))


def measure_app(work: Path, weights: str, repeat: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from bench.stall import StallMeter
    from core.config import Settings
    from core.store import Hit
    from desktop.main_window import MainWindow
    from desktop.preferences import Preferences
    from desktop.query import from_path
    from desktop.style import apply_style

    app = QApplication([])
    apply_style(app)
    settings = Settings(data_dir=str(work / "data"), weights=weights, api_port=0)
    prefs = Preferences(QSettings(str(work / "prefs.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, prefs, thumbnail_dir=work / "thumbs")
    window.resize(1280, 800)
    window.show()
    QTest.qWaitForWindowExposed(window)
    visible_at = time.time()

    def wait(signal, timeout_s: float = 600) -> None:
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        signal.disconnect(loop.quit)

    photos = sorted((work / "photos").iterdir())
    started = time.perf_counter()
    window.open_source(from_path(str(photos[0])))
    wait(window.results_shown)
    first_search_s = time.perf_counter() - started

    searches = []
    for n in range(repeat):
        started = time.perf_counter()
        window.open_source(from_path(str(photos[1 + n % (len(photos) - 1)])))
        wait(window.results_shown)
        searches.append((time.perf_counter() - started) * 1000)

    refines = []
    for n in range(repeat):
        hit = window.model.hits()[1 + n % 5]
        started = time.perf_counter()
        window.refine(hit.record, hit)
        wait(window.results_shown)
        refines.append((time.perf_counter() - started) * 1000)

    # 1000 results (the index is small: the same files under many rows) scrolled top to bottom.
    hits = window.model.hits()
    window.model.set_hits([Hit(hits[n % len(hits)].record, 1 - n / 2000) for n in range(1000)])
    app.processEvents()  # the view lays the rows out
    bar = window.view.verticalScrollBar()
    frames = []
    for value in range(0, bar.maximum() + 1, max(1, bar.pageStep() // 3)):
        started = time.perf_counter()
        bar.setValue(value)
        window.view.viewport().repaint()
        frames.append((time.perf_counter() - started) * 1000)
        app.processEvents()

    stalls = StallMeter()
    started = time.perf_counter()
    window.start_index([str(work / "more")])
    wait(window.index_finished)
    indexing_s = time.perf_counter() - started
    largest_stall_s = stalls.stop()
    window.close()
    return {
        "visible_at": visible_at,
        "first_search_s": round(first_search_s, 2),
        "search_warm_ms": round(statistics.median(searches)),
        "refine_ms": round(statistics.median(refines), 1),
        "scroll_1000_frame_ms": {"median": round(statistics.median(frames), 1), "max": round(max(frames), 1),
                                 "frames": len(frames)},
        "indexing_gui_stall_ms": round(largest_stall_s * 1000),
        "indexing": {"images": len(list((work / "more").iterdir())), "seconds": round(indexing_s, 1)},
        "weights": weights,
        "platform": app.platformName(),
    }


if __name__ == "__main__":
    main()
