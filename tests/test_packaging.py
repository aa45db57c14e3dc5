"""The wheel: built from the project (non-editable), it carries resources/ and the API runs from it alone.

Builds with the current environment's setuptools (`pip wheel --no-build-isolation`, seconds, no network),
installs into a temporary folder with `pip install --target`, and runs `image-search serve` in a Python
that sees that folder and the environment's site-packages but not this source tree (-I -S: no current
folder, no .pth files, so no editable install of the project either).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from core import __version__
from tests.test_api_server import free_port, get_json

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "core", "desktop", "resources")
RESOURCES = ["web/index.html", "web/app.js", "web/style.css", "web/openapi.json", "desktop/style.qss",
             "desktop/icons/app.svg"]


def test_the_package_list_names_every_package():
    listed = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    found = find_packages(str(REPO), include=["core", "core.*", "desktop", "desktop.*"])
    assert sorted(set(listed) - {"core.resources"}) == sorted(found), "update packages in pyproject.toml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools leaves build/ and *.egg-info in the source folder, and a stale build/
    # would put removed modules into the wheel.
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                    "--quiet", str(source), "-w", str(root / "dist")], check=True, timeout=300)
    (built,) = (root / "dist").glob("image_search-*.whl")
    return built


def test_the_wheel_carries_the_resources(wheel):
    assert wheel.name.startswith(f"image_search-{__version__}-")  # the version the API and CLI report
    names = set(zipfile.ZipFile(wheel).namelist())
    for resource in RESOURCES:
        assert f"core/resources/{resource}" in names, resource
    assert "core/api/__init__.py" in names and "core/server.py" in names and "desktop/app.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "resources/"))]


def test_the_installed_wheel_serves_the_page_and_openapi(wheel, tmp_path):
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    port = free_port()
    script = (
        "import sys; sys.path[:0] = sys.argv[1:3]; import core; "
        "print('core from', core.__file__, flush=True); from core.cli import main; "
        f"sys.exit(main(['serve', '--port', '{port}', '--data-dir', sys.argv[3], '--weights', 'random']))"
    )
    site_packages = sysconfig.get_paths()["purelib"]
    process = subprocess.Popen([sys.executable, "-I", "-S", "-c", script, str(target), site_packages,
                                str(tmp_path / "data")], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        origin = process.stdout.readline()
        assert origin.strip() == f"core from {target / 'core' / '__init__.py'}", origin
        listening = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in listening, listening
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b'id="file-input"' in page.read()
        status, spec = get_json(f"http://127.0.0.1:{port}/api/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3.") and "/api/search" in spec["paths"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js", timeout=30) as script_file:
            assert script_file.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output
