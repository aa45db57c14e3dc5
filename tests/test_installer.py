"""The offline installer (build_installer.py, installer/).

Fast tests check the build's decisions (weights, names, what is left out, the entry script's defaults).
The slow ones build the frozen bundle with random weights, once per change of the sources (cached under
~/.cache/image-search/installer-build, or IMAGE_SEARCH_INSTALLER_CACHE; IMAGE_SEARCH_INSTALLER_BUILD names
an output folder of build_installer.py to test instead), and run it with no network (`unshare -n`) and
with the system's fonts hidden, as on a bare machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import pytest

import build_installer
from bench.photos import write_photos
from build_installer import BuildError, resolve_build_weights
from core.model import FULL_FILE, NOTOP_FILE
from installer import bundle, entry

ROOT = Path(build_installer.__file__).resolve().parent
CACHE = Path(os.environ.get("IMAGE_SEARCH_INSTALLER_CACHE")
             or Path.home() / ".cache" / "image-search" / "installer-build")
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
# Hide the system's fonts inside the sandbox, so that only the bundle's own can make text render.
HIDE_FONTS = "for d in /usr/share/fonts /usr/local/share/fonts /etc/fonts; do [ -d $d ] && mount -t tmpfs none $d; done"
# Runs inside the sandbox: brings its loopback up (a new network namespace starts with it down; no `ip`
# needed), starts the frozen `serve`, fetches the page and the API.
SERVE_CLIENT = """
import fcntl, json, socket, struct, subprocess, sys, urllib.request
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
server = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    lines = []
    for line in server.stdout:
        lines.append(line)
        if " at http" in line:
            url = line.split(" at ", 1)[1].split("/ ", 1)[0]
            break
    else:
        sys.exit("the server did not start:\\n" + "".join(lines))
    get = lambda path: urllib.request.urlopen(url + path, timeout=60).read().decode()
    print(json.dumps({"page": get("/"), "health": json.loads(get("/api/health")),
                      "openapi": json.loads(get("/api/openapi.json"))}))
finally:
    server.terminate()
    server.wait(30)
"""


# -- the build's decisions (fast) ----------------------------------------------------------------


def test_build_without_weights_fails_fast_with_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    started = time.monotonic()
    status = build_installer.main(["--output", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    assert status == 1 and time.monotonic() - started < 5
    message = capsys.readouterr().err
    for needed in (NOTOP_FILE, FULL_FILE, str(tmp_path / "empty-keras" / "models"), "https://storage.googleapis.com/",
                   "--weights PATH", "--weights random"):
        assert needed in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_weights_are_checked_against_keras_md5(tmp_path, monkeypatch):
    download = tmp_path / "vgg16-notop-download.h5"
    download.write_bytes(b"pretend weights")
    with pytest.raises(BuildError, match="not one of Keras' published VGG16 weight files"):
        resolve_build_weights([str(download)], tmp_path)
    with pytest.raises(BuildError, match="weights file not found"):
        resolve_build_weights([str(tmp_path / "nope.h5")], tmp_path)
    with pytest.raises(BuildError, match="cannot be combined"):
        resolve_build_weights(["random", str(download)], tmp_path)

    # A file with the published MD5 is bundled under Keras' name, whatever it was called.
    monkeypatch.setattr(build_installer, "KERAS_MD5", {NOTOP_FILE: build_installer.file_md5(download)})
    plan = resolve_build_weights([str(download)], tmp_path)
    assert plan.kind == "imagenet" and plan.files == {NOTOP_FILE: download}


def test_the_keras_cache_is_the_default_source_and_random_is_explicit(tmp_path, monkeypatch):
    cached = tmp_path / NOTOP_FILE
    cached.write_bytes(b"cached weights")
    monkeypatch.setattr(build_installer, "KERAS_MD5", {NOTOP_FILE: build_installer.file_md5(cached)})
    assert resolve_build_weights([], tmp_path).files == {NOTOP_FILE: cached}
    assert resolve_build_weights(["random"], tmp_path).is_random


def test_archive_names_say_version_platform_and_test_builds():
    assert build_installer.archive_stem("0.1.0", "linux-x86_64", False) == "image-search-0.1.0-linux-x86_64"
    test_build = build_installer.archive_stem("0.1.0", "linux-x86_64", True)
    assert test_build == "image-search-0.1.0-linux-x86_64-random-weights"
    tf_build = build_installer.archive_stem("0.1.0", "macos-arm64", False, "tensorflow")
    assert tf_build == "image-search-0.1.0-macos-arm64-tensorflow"
    assert build_installer.platform_tag().count("-") == 1


@pytest.mark.parametrize(("dest", "kept"), [
    ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
    ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
    ("PySide6/Qt/plugins/platforms/qwindows.dll", True),
    ("PySide6/Qt/plugins/platforms/libqwayland-egl.so", False),
    ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
    ("PySide6/Qt/plugins/generic/libqtuiotouchplugin.so", False),
    ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
    ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", True),
    ("PySide6/Qt/plugins/wayland-shell-integration/libxdg-shell.so", False),
    ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
    ("PySide6/Qt/lib/libQt6Quick.so.6", False),
    ("PySide6\\Qt6Qml.dll", False),
    ("tensorflow/libtensorflow_cc.so.2", True),
    ("tensorflow/compiler/mlir/stablehlo/stablehlo_extension.so", False),
])
def test_bundle_rules(dest, kept):
    assert bundle.keep(dest) is kept


def test_entry_defaults_a_test_build_to_random_weights_unless_the_user_chose(tmp_path):
    info = {"weights": "random", "version": "0.1.0"}
    env = {"IMAGE_SEARCH_CONFIG": str(tmp_path / "none.toml")}
    notes = entry.configure_environment([], tmp_path, info, env)
    assert env["IMAGE_SEARCH_WEIGHTS"] == "random" and "TEST BUILD" in notes[0]
    assert env["IMAGE_SEARCH_BUILD_INFO"] == str(tmp_path / "build-info.json")

    for argv, extra_env in ((["--weights", "x.h5", "info"], {}), (["info", "--weights=imagenet"], {}),
                            ([], {"IMAGE_SEARCH_WEIGHTS": "imagenet"})):
        env = {"IMAGE_SEARCH_CONFIG": str(tmp_path / "none.toml"), **extra_env}
        assert entry.configure_environment(argv, tmp_path, info, env) == []
        assert env.get("IMAGE_SEARCH_WEIGHTS") == extra_env.get("IMAGE_SEARCH_WEIGHTS")

    config = tmp_path / "config.toml"
    config.write_text('weights = "imagenet"\n')
    env = {}
    assert entry.configure_environment(["--config", str(config)], tmp_path, info, env) == []
    assert "IMAGE_SEARCH_WEIGHTS" not in env
    env = {}
    assert entry.configure_environment([], tmp_path, {"weights": "imagenet"}, env) == []
    assert "IMAGE_SEARCH_WEIGHTS" not in env


# -- the frozen app (slow: builds once per change, then runs it offline) ----------------------------


@pytest.fixture(scope="module")
def frozen_build() -> dict:
    """build-report.json of a --weights random build of the current sources (built when not cached)."""
    if os.environ.get("IMAGE_SEARCH_INSTALLER_BUILD"):
        return json.loads((Path(os.environ["IMAGE_SEARCH_INSTALLER_BUILD"]) / "build-report.json").read_text())
    pytest.importorskip("PyInstaller")
    key = build_installer.source_fingerprint("random-onnxruntime")
    folder = CACHE / key
    report = folder / "build-report.json"  # written last: its presence means the build finished
    if not report.is_file():
        if CACHE.is_dir():  # each build is ~0.8 GB: keep only the current one
            for old in CACHE.iterdir():
                if old.name not in (key, "work"):
                    shutil.rmtree(old, ignore_errors=True)
        cmd = [sys.executable, str(ROOT / "build_installer.py"), "--weights", "random",
               "--output", str(folder), "--work", str(CACHE / "work")]
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=2400)
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sandbox() -> list[str]:
    """A command prefix that runs a program with no network and with the system fonts hidden."""
    if shutil.which("unshare") is None:
        warnings.warn("unshare is not available: the frozen app runs WITH network access", stacklevel=1)
        return []
    prefix = ["unshare", "-n", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-n", "-m"]
    script = f'{HIDE_FONTS}; exec "$@"'
    wrapper = [*prefix, "sh", "-c", script, "sandbox"]
    probe = subprocess.run([*wrapper, "sh", "-c", "ls /usr/share/fonts | wc -l"], capture_output=True, text=True)
    if probe.returncode != 0:
        warnings.warn(f"unshare failed ({probe.stderr.strip()}): the frozen app runs WITH network", stacklevel=1)
        return []
    return wrapper


@pytest.fixture
def run_frozen(frozen_build, sandbox, tmp_path):
    """Run the frozen executable in the sandbox, in a fresh home with no user settings or Keras cache."""
    executable = Path(frozen_build["bundle"]) / "image-search"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IMAGE_SEARCH_", "KERAS_", "FONTCONFIG_", "XDG_", "QT_"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(home))

    def run(*args: str, timeout: float = 300, client: tuple[str, ...] = (), **extra_env: str
            ) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        result = subprocess.run([*sandbox, *client, str(executable), *args], env={**env, **extra_env},
                                capture_output=True, text=True, timeout=timeout)
        elapsed = time.monotonic() - started
        print(f"frozen {' '.join(args[:3])}: {elapsed:.1f} s, exit {result.returncode}")
        assert result.returncode == 0, result.stdout + result.stderr
        return result, elapsed

    return run


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_the_build_is_small_and_complete(frozen_build):
    bundle_dir = Path(frozen_build["bundle"])
    internal = bundle_dir / "_internal"
    print(f"bundle {frozen_build['bundle_bytes'] / 1e6:.0f} MB, archive {frozen_build['archive_bytes'] / 1e6:.0f} MB, "
          f"PyInstaller {frozen_build['pyinstaller_s']} s, archive {frozen_build['archive_s']} s")
    # A plain PyInstaller bundle of TensorFlow + PySide6 is ~1.3 GB. Measured: 0.26 GB on ONNX Runtime (the
    # default), 0.92 GB on TensorFlow (IMAGE_SEARCH_INSTALLER_BUILD may name such a build).
    # HEIC/AVIF (pillow-heif), camera RAW (rawpy) and the HNSW index (usearch) added ~55 MB to the 300 MB bound;
    # faiss-cpu (duplicates' inverted lists, with its OpenBLAS) ~66 MB more: 422 MB measured.
    assert frozen_build["bundle_bytes"] < {"onnxruntime": 450e6, "tensorflow": 1130e6}[frozen_build["runtime"]]
    assert json.loads((internal / "build-info.json").read_text())["weights"] == "random"
    assert (internal / "weights").is_dir() and (internal / "fonts" / "DejaVuSans.ttf").is_file()
    assert (internal / "fonts" / "LICENSE-DejaVu.txt").is_file()
    left_out = [p for p in internal.rglob("*") if not bundle.keep(str(p.relative_to(internal)))]
    assert left_out == []
    other_runtime = {"onnxruntime": ("tensorflow", "keras"), "tensorflow": ("onnxruntime", "onnx")}
    unused_everywhere = ("scipy", "sklearn", "skimage", "matplotlib", "tkinter", "jax", "torch", "PySide6/Qt/qml",
                         "PySide6/Qt/plugins/platformthemes/libqgtk3.so", "libQt6Network.so.6")
    for unused in (*other_runtime[frozen_build["runtime"]], *unused_everywhere):
        assert not (internal / unused).exists(), unused

    archive = Path(frozen_build["archive"])
    stem = build_installer.archive_stem(frozen_build["version"], build_installer.platform_tag(), True,
                                        frozen_build["runtime"])
    assert stem.endswith("-random-weights")
    assert archive.name == stem + ".tar.gz"
    with tarfile.open(archive) as tar:
        first = tar.next()
        assert first is not None and first.name == f"{stem}/image-search"
        assert first.mode & 0o111


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_frozen_app_renders_text_with_its_own_fonts_offline(run_frozen, frozen_build):
    result, _ = run_frozen("--diagnose")
    report = json.loads(result.stdout)
    internal = Path(frozen_build["bundle"]) / "_internal"
    assert report["frozen"] and report["build"]["weights"] == "random"
    assert report["runtimes"] == [frozen_build["runtime"]]
    assert report["bundled_weights_dir"] == str(internal / "weights")
    assert report["elasticsearch_client"]  # the Elasticsearch backend stays available
    assert report["fontconfig_file"] == str(internal / "fonts" / "fonts.conf")
    assert report["dejavu_sans"] and report["text_renders"], report


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_frozen_self_test_builds_the_window_offline(run_frozen):
    _, elapsed = run_frozen("--self-test", timeout=180)
    print(f"frozen start to window (--self-test): {elapsed:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_frozen_cli_indexes_and_searches_offline(run_frozen, tmp_path):
    photos = write_photos(tmp_path / "photos", names=PHOTOS)
    data = str(tmp_path / "data")
    result, index_s = run_frozen("--data-dir", data, "index", str(tmp_path / "photos"), "--json")
    assert json.loads(result.stdout.splitlines()[-1])["indexed"] == len(PHOTOS)
    assert "TEST BUILD" in result.stderr  # the test build says that its weights are random

    query = photos[1]
    result, search_s = run_frozen("--data-dir", data, "search", str(query), "--json", "-k", "3")
    results = json.loads(result.stdout.splitlines()[-1])["results"]
    assert Path(results[0]["path"]).name == query.name and results[0]["score"] > 0.999
    print(f"frozen CLI: index {len(PHOTOS)} images {index_s:.1f} s, search {search_s:.1f} s (each with start-up)")

    result, _ = run_frozen("--data-dir", data, "info", "--json")
    assert "random" in json.loads(result.stdout.splitlines()[-1])["weights"]


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_frozen_app_loads_h5_weights_from_its_weights_folder(run_frozen, tmp_path):
    """The real installer's path: 'imagenet' found as a file in the bundled weights folder, loaded by h5py."""
    weights = tmp_path / "weights"
    weights.mkdir()
    # A Keras-2-format (legacy .h5) file, like Keras' published one, holding random numbers.
    script = ("import sys, h5py, keras; from keras.src.legacy.saving import legacy_h5_format as f; "
              "m = keras.applications.VGG16(include_top=False, weights=None); "
              "h = h5py.File(sys.argv[1], 'w'); f.save_weights_to_hdf5_group(h, m); h.close()")
    subprocess.run([sys.executable, "-c", script, str(weights / NOTOP_FILE)], check=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    photos = write_photos(tmp_path / "photos", names=PHOTOS[:2])
    data = str(tmp_path / "data")
    env = {"IMAGE_SEARCH_BUNDLED_WEIGHTS": str(weights)}
    run_frozen("--weights", "imagenet", "--data-dir", data, "index", str(tmp_path / "photos"), "--json", **env)
    result, _ = run_frozen("--weights", "imagenet", "--data-dir", data, "search", str(photos[0]), "--json", **env)
    top = json.loads(result.stdout.splitlines()[-1])["results"][0]
    assert Path(top["path"]).name == photos[0].name and top["score"] > 0.999
    result, _ = run_frozen("--weights", "imagenet", "--data-dir", data, "info", "--json", **env)
    assert json.loads(result.stdout.splitlines()[-1])["model"]["weights"] == "imagenet"


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_frozen_api_server_serves_the_page_and_the_api_offline(run_frozen, tmp_path):
    result, _ = run_frozen("--data-dir", str(tmp_path / "data"), "serve", "--port", "0",
                           client=(sys.executable, "-c", SERVE_CLIENT))
    served = json.loads(result.stdout.splitlines()[-1])
    assert "<html" in served["page"].lower() and served["openapi"]["paths"]
    assert served["health"]["status"] == "ok" and served["health"]["model"]["weights"].startswith("random")
