"""Shared fixtures. Tests use the explicit, deterministic `random` VGG16 weights (no downloads here)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_session_cache = Path(tempfile.mkdtemp(prefix="image-search-test-cache-"))
atexit.register(shutil.rmtree, _session_cache, ignore_errors=True)
# Set now as well as in _isolated_env: module-scoped fixtures build apps (and their thumbnail caches) first.
os.environ["IMAGE_SEARCH_CACHE_DIR"] = str(_session_cache)

from bench.photos import write_photos  # noqa: E402
from core.config import Settings  # noqa: E402


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """18 real photos as JPEG files (read-only for tests: copy before changing)."""
    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder)
    return folder


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded index in a fresh folder, random weights, no config file or environment leaking in."""
    return Settings(data_dir=str(tmp_path / "data"), weights="random")


@pytest.fixture(scope="session")
def shared_extractor():
    """One built gem extractor for the whole session (building VGG16 costs seconds)."""
    from core.model import Extractor, resolve_weights

    return Extractor("gem", resolve_weights("random", "gem"), precision="fp32")


@pytest.fixture
def engine(settings, shared_extractor):
    """An Engine on a fresh embedded index that reuses the session's extractor."""
    from core.engine import Engine

    engine = Engine(settings, extractor=shared_extractor)
    yield engine
    engine.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No IMAGE_SEARCH_* variables or user config file from the developer's machine."""
    for name in list(os.environ):
        if name.startswith("IMAGE_SEARCH_") and not name.startswith("IMAGE_SEARCH_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGE_SEARCH_CONFIG", str(tmp_path / "no-config.toml"))
    # Quantized graphs and the per-machine runtime choice go to the session's own cache, not the user's.
    monkeypatch.setenv("IMAGE_SEARCH_CACHE_DIR", str(_session_cache))


_exit_status: list[int] = []


def pytest_sessionfinish(session, exitstatus) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """End a test process that made Qt windows without the interpreter's teardown.

    After every test had passed, the desktop suite's process died with SIGSEGV (exit 139) during interpreter
    finalization, after Python's fault handler was gone: PySide6 destroying the C++ side of the many windows,
    thread pools and threads one process made. The app itself exits cleanly (tests/test_desktop_app.py runs
    it as its own process and checks its exit status), so the suite keeps pytest's own status instead.
    """
    if "PySide6" in sys.modules and _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
