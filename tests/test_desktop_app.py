"""The desktop app as a program (`python -m desktop`, real windows) and its Qt-free-ish building blocks."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from desktop.compat import broken_pyside

if (_problem := broken_pyside()) is not None:
    pytest.fail(_problem, pytrace=False)  # a collection error naming the fix, not an interpreter abort later

from PIL import Image
from PySide6.QtCore import QMimeData, QSettings, QUrl
from PySide6.QtGui import QImage

from core.config import Settings
from core.engine import Engine
from core.images import ImageError
from desktop.index_widgets import format_eta
from desktop.navigation import History
from desktop.preferences import Choices, Preferences, locked_keys
from desktop.query import fetch, load_source, source_from_mime

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, photo_dir, shared_extractor) -> Path:
    data = tmp_path_factory.mktemp("app-index") / "data"
    engine = Engine(Settings(data_dir=str(data), weights="random"), extractor=shared_extractor)
    engine.index(sorted(photo_dir.glob("*.jpg"))[:10])
    engine.close()
    return data


def app_env(tmp_path: Path, data: Path, platform: str | None = "offscreen") -> dict[str, str]:
    """The app on `data` with random weights; its QSettings and thumbnail cache in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env.update(IMAGE_SEARCH_DATA_DIR=str(data), IMAGE_SEARCH_WEIGHTS="random", IMAGE_SEARCH_API_PORT="0",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               TF_CPP_MIN_LOG_LEVEL="2")
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    return env


def check_screenshot(path: Path) -> None:
    """Not blank: real contrast overall, and many colours where the thumbnails are."""
    image = Image.open(path).convert("RGB")
    assert image.size == (1280, 800)
    pixels = np.asarray(image)
    assert pixels.std() > 20
    grid = pixels[140:700, 320:1250].reshape(-1, 3)
    assert len(np.unique(grid, axis=0)) > 2000


def run_app(args: list[str], env: dict[str, str], wrapper: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*wrapper, sys.executable, "-m", "desktop", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


# == the program ====================================================================================
@pytest.mark.slow
def test_screenshot_offscreen(tmp_path, small_index, photo_dir):
    out = tmp_path / "shot.png"
    done = run_app(["--screenshot", str(out), "--query", str(photo_dir / "coffee.jpg")],
                   app_env(tmp_path, small_index))
    assert done.returncode == 0, done.stderr[-3000:]
    check_screenshot(out)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")
def test_screenshot_under_xvfb(tmp_path, small_index, photo_dir):
    out = tmp_path / "shot.png"
    done = run_app(["--screenshot", str(out), "--query", str(photo_dir / "astronaut.jpg")],
                   app_env(tmp_path, small_index, platform=None),
                   wrapper=["xvfb-run", "-a", "-s", "-screen 0 1280x800x24"])
    assert done.returncode == 0, done.stderr[-3000:]
    check_screenshot(out)


@pytest.mark.slow
def test_self_test(tmp_path, small_index):
    done = run_app(["--self-test"], app_env(tmp_path, small_index, platform=None))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["window_visible"] and result["platform"] == "offscreen"
    assert result["index"] == "Embedded index · 10 images"


@pytest.mark.slow
def test_screenshot_of_a_non_image_fails_cleanly(tmp_path, small_index):
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    done = run_app(["--screenshot", str(tmp_path / "x.png"), "--query", str(bad), "--timeout", "60"],
                   app_env(tmp_path, small_index))
    assert done.returncode == 1 and "not a recognised image format" in done.stderr


def test_image_search_without_a_command_opens_the_app(monkeypatch):
    import desktop.app
    import image_search

    calls = []
    monkeypatch.setattr(desktop.app, "run", lambda args: calls.append(args) or 7)
    assert image_search.main([]) == 7
    assert image_search.main(["gui", "--weights", "random"]) == 7
    assert image_search.main(["--weights", "random", "--query", "info"]) == 7  # an option's value is no command
    assert calls[1].weights == "random" and calls[2].query == "info"
    assert locked_keys(calls[1]) == {"weights"}


def test_image_search_with_a_command_runs_the_cli(capsys, tmp_path):
    import image_search

    assert image_search.main(["--weights", "random", "--data-dir", str(tmp_path), "info", "--json"]) == 0
    assert '"count": 0' in capsys.readouterr().out


# == building blocks ================================================================================
def test_sources_from_drops_and_the_clipboard(qapp, tmp_path, photo_dir):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo_dir / "coffee.jpg")), QUrl("https://example.com/a.jpg")])
    assert source_from_mime(mime).path == str(photo_dir / "coffee.jpg")

    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/pics/cat.png?size=large")])
    web = source_from_mime(mime)
    assert (web.url, web.label) == ("https://example.com/pics/cat.png?size=large", "cat.png")
    mime.setData("image/png", b"\x89PNG...")  # a browser drag carries the bytes too: no download then
    assert source_from_mime(mime).data == b"\x89PNG..." and source_from_mime(mime).label == "cat.png"

    mime = QMimeData()
    mime.setImageData(QImage(8, 8, QImage.Format.Format_RGB888))
    assert source_from_mime(mime).image is not None

    for text, expected in [(str(photo_dir / "moon.jpg"), "path"), (QUrl.fromLocalFile("/x/y.jpg").toString(), "path"),
                           ("http://example.com/x.jpg\n", "url"), ("relative/name.jpg", None), ("  ", None)]:
        mime = QMimeData()
        mime.setText(text)
        source = source_from_mime(mime)
        assert (source and ("path" if source.path else "url")) == expected, text
    ftp = QMimeData()
    ftp.setUrls([QUrl("ftp://example.com/x.jpg")])
    assert source_from_mime(ftp) is None


def test_downloads_are_bounded(qapp, tmp_path, photo_dir):
    (tmp_path / "big.jpg").write_bytes(os.urandom(300_000))
    shutil.copy(photo_dir / "coffee.jpg", tmp_path / "coffee.jpg")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda *args: None  # a client that stops reading early (the size limit) is expected
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ImageError, match="larger than"):
            fetch(f"{base}/big.jpg", max_bytes=100_000)
        assert fetch(f"{base}/coffee.jpg", max_bytes=1_000_000) == (photo_dir / "coffee.jpg").read_bytes()
        with pytest.raises(ImageError, match="download failed"):
            fetch("http://127.0.0.1:1/nothing.jpg", max_bytes=1000, timeout=2)
    finally:
        server.shutdown()
    loaded = load_source(source_from_mime(_file_mime(photo_dir / "coffee.jpg")), max_bytes=10_000_000)
    assert loaded.preview.width() == 512 and loaded.details.startswith("600 × 400 px")
    with pytest.raises(ImageError, match="larger than"):
        load_source(source_from_mime(_file_mime(photo_dir / "coffee.jpg")), max_bytes=1000)


def _file_mime(path: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def test_preferences_overlay_only_what_the_user_chose(tmp_path):
    prefs = Preferences(QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat))
    base = Settings(data_dir="/data", weights="imagenet", es_url="http://a:9200")
    assert prefs.choices(base) == Choices(base)
    chosen = Choices(base.replace(weights="/w.h5", backend="elasticsearch", es_api_key="k", api_port=5050,
                                  follow_external_symlinks=True, es_timeout_s=2.5),
                     new_descriptor="fc1", api_enabled=False)
    prefs.save_choices(chosen, base, locked={"backend"})
    again = Preferences(QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat))
    restored = again.choices(base)
    assert restored.settings.follow_external_symlinks is True and restored.settings.es_timeout_s == 2.5
    assert not again.store.contains("es_url")  # untouched: it keeps following the config file
    assert restored.settings.weights == "/w.h5" and restored.settings.backend == "embedded"  # backend was locked
    assert restored.settings.es_api_key == "k" and restored.settings.es_password is None
    assert (restored.settings.api_port, restored.new_descriptor, restored.api_enabled) == (5050, "fc1", False)
    assert again.choices(base, locked={"weights"}).settings.weights == "imagenet"  # a flag beats the stored value
    assert restored.engine_changed(Choices(base)) and restored.api_changed(Choices(base))
    assert not Choices(base).engine_changed(Choices(base.replace(api_port=1)))
    again.add_root("/photos")
    again.add_root("/photos")
    again.add_root("/more")
    again.remove_root("/photos")
    assert Preferences(QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)).roots == ["/more"]


def test_about_shows_the_installed_build(tmp_path, monkeypatch):
    from desktop.errors import about_text

    assert "Image Search" in about_text() and "Build" not in about_text()
    info = tmp_path / "build-info.json"
    info.write_text(json.dumps({"version": "0.1.0", "weights": "random"}))
    monkeypatch.setenv("IMAGE_SEARCH_BUILD_INFO", str(info))
    assert "<td>weights</td><td>random</td>" in about_text() and "TEST BUILD" in about_text()


def test_history_and_eta():
    history: History[str] = History()
    assert history.current is None and not history.can_back()
    for step in "abc":
        history.push(step)
    assert history.go(0) == "a" and history.can_forward()
    history.push("d")  # drops b and c, as a browser does
    assert history.items == ["a", "d"] and history.current == "d"
    assert [format_eta(s) for s in (None, 4.4, 75, 7300)] == ["", "4 s left", "1:15 left", "2 h 01 min left"]


def test_every_user_error_keeps_its_own_kind_in_the_window():
    from core.errors import INVALID, UNAVAILABLE, UNSUPPORTED
    from core.store import StoreError
    from core.store.base import InvalidRecord
    from core.store.elastic import ExactSearchUnsupported
    from desktop.errors import TITLES, kind_of

    # A StoreError subclass says what went wrong; the window no longer calls every one "cannot be reached".
    assert kind_of(ExactSearchUnsupported("exact search needs the embedded index")) == UNSUPPORTED
    assert kind_of(InvalidRecord("bad")) == INVALID and kind_of(StoreError("down")) == UNAVAILABLE
    assert kind_of(RuntimeError("bug")) is None and UNSUPPORTED in TITLES
