"""Shared fixtures. Tests use the explicit, deterministic `random` VGG16 weights (no downloads here)."""

from __future__ import annotations

import atexit
import inspect
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


# The fast tier (`pytest -m "not slow"`) leaves out what builds or starts something heavy, measured with
# `pytest --durations=0` on a loaded 2-core machine: building the real VGG16 graph and embedding photos with it
# (seconds per test), the Elasticsearch server, headless Chromium, Docker, PyInstaller, wheels and the CLI or
# the app run as their own processes (each imports TensorFlow: 5-15 s).
SLOW_FIXTURES = {
    "shared_extractor",  # the real VGG16 graph, and the indexes built with it
    "es_url",  # the real Elasticsearch server
    "browser",  # headless Chromium
    "wheel",  # builds and installs a wheel
    "frozen_build",  # the PyInstaller bundle
    "glorot",  # test_precision: real extractors on every runtime and precision
}
SLOW_PARAMS = {"elasticsearch"}  # a backend parameter that asks for the server through request.getfixturevalue
SLOW_MODULES = {
    "test_container",  # Docker
    "test_compose_file",  # Docker Compose
    "test_installer",  # PyInstaller
    "test_packaging",  # wheels
    "test_cli",  # the CLI as its own process
    "test_cli_duplicates",
    "test_cases_library",
    "test_model",  # builds VGG16 on each runtime and compares them (10-60 s a test)
    "test_precision",
    "test_gpu",  # builds VGG16 for the GPU and the CPU
}
# Seen in a test's own source: it runs another interpreter (the CLI, the server, the app) or asks for
# Chromium by name through request.getfixturevalue.
SLOW_SOURCE = ("sys.executable", 'getfixturevalue("browser")')


def is_slow(item: pytest.Item) -> bool:
    """Whether `item` uses one of the heavy things above: by its fixtures, parameters, module or source."""
    if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    if SLOW_PARAMS.intersection(v for v in params.values() if isinstance(v, str)):
        return True
    module = getattr(item, "module", None)
    if module is not None and module.__name__.rpartition(".")[2] in SLOW_MODULES:
        return True
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return False
    return any(needle in source for needle in SLOW_SOURCE)


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


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
