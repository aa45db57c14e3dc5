"""What goes into the frozen bundle and what stays out. Read by installer/image-search.spec.

Kept apart from the spec so the rules can be read, tested and reused without running PyInstaller.
Every exclusion here was checked against a frozen run (index + search + window); see
tests/test_installer.py for the end-to-end check.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

APP_NAME = "image-search"

# Our own packages, collected whole: core imports some modules lazily (the Elasticsearch store, the HTTP
# API) and the desktop app is reached only through a function-level import in image_search.py.
OWN_PACKAGES = ("core", "desktop")

# Python modules that must never be bundled. Each is either test-only or an optional import that the
# libraries we ship guard with try/except ImportError (checked in their sources):
# - keras.src.wrappers imports sklearn (which pulls scipy, narwhals, joblib); TF's legacy
#   tf.python.keras imports scipy.sparse; both fall back cleanly without them.
# - keras' other backends (jax, torch, openvino, numpy) are only imported when KERAS_BACKEND names them.
# - grpc (17 MB) serves only TensorFlow's debugger and distributed runtime, never imported by the engine.
EXCLUDED_MODULES = [
    # test-only and development tools
    "tests", "bench", "pytest", "_pytest", "pytestqt", "IPython", "tkinter", "_tkinter",
    "PyInstaller", "setuptools", "pip",
    # scientific stack we do not use (test fixtures only)
    "scipy", "sklearn", "skimage", "matplotlib", "pandas", "narwhals", "joblib", "threadpoolctl",
    "imageio", "tifffile", "lazy_loader", "networkx",
    # other deep-learning stacks and TensorFlow's optional extras
    "jax", "jaxlib", "torch", "openvino", "tensorboard", "tensorflow_datasets", "tensorflow_hub",
    "keras.src.backend.jax", "keras.src.backend.torch", "keras.src.backend.openvino",
    "keras.src.backend.numpy", "grpc", "grpc_tools",
]
# The engine runs VGG16 on ONNX Runtime or on TensorFlow (core.model, setting `runtime`, "auto" = ONNX
# Runtime when it can be imported). A bundle carries one of them and leaves the other's packages out:
# ONNX Runtime is ~75 MB where TensorFlow is ~700 MB even stripped, and it is the faster one on CPUs.
RUNTIMES = ("onnxruntime", "tensorflow")
RUNTIME_EXCLUDES = {
    "onnxruntime": ["tensorflow", "keras", "tf_keras", "tensorboard"],
    "tensorflow": ["onnxruntime", "onnx"],
}
# Qt modules every widgets app loads; any other PySide6 module is bundled only if our code names it.
# (PySide6/__init__.py alone would pull QtNetwork, for an OpenSSL probe that runs only on Windows.)
REQUIRED_QT_MODULES = ("QtCore", "QtGui", "QtWidgets")


def excluded_modules(root: Path, runtime: str) -> list[str]:
    """EXCLUDED_MODULES, the other runtime's packages, and the PySide6 modules no source under `root` names."""
    sources = "\n".join(path.read_text(encoding="utf-8", errors="replace")
                        for package in OWN_PACKAGES for path in sorted((root / package).rglob("*.py")))
    unused = [name for name in installed_qt_modules()
              if name not in REQUIRED_QT_MODULES and not re.search(rf"\b{name}\b", sources)]
    return EXCLUDED_MODULES + RUNTIME_EXCLUDES[runtime] + [f"PySide6.{name}" for name in unused]


def installed_qt_modules() -> list[str]:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    return sorted({p.name.split(".")[0] for p in folder.glob("Qt*.*") if p.suffix in (".so", ".pyd")})


# Binaries and data files dropped after analysis, matched against the destination path inside the
# bundle (forward slashes). Why each is safe:
# - Qt: the app is a widgets app on xcb (X11 and XWayland), Windows or Cocoa. Wayland-native, EGLFS,
#   LinuxFB and VNC platforms, QML/Quick, PDF, WebEngine, Multimedia and the virtual keyboard are never
#   loaded; Qt falls back to xcb when no Wayland plugin exists. `offscreen` and `minimal` stay (self-test,
#   headless use). `generic` holds evdev/TUIO input plugins, used only without a window system (and
#   TUIO pulls in QtNetwork). The GTK3 platform theme would bring a private GTK stack (17 MB) that clashes with
#   the system's GTK themes and modules; Qt's own theme and the XDG portal theme remain.
# - TensorFlow: these extension modules are loaded only for XLA compilation (jit_compile) and StableHLO
#   export, which the engine never uses (measured: not mapped into a process that imports TF, builds
#   VGG16, loads .h5 weights, indexes and searches). Together about 50 MB.
EXCLUDED_PATH_PATTERNS = [
    r"(^|/)plugins/platforms/(lib)?q(wayland|eglfs|linuxfb|vnc|vkkhrdisplay|minimalegl)[^/]*$",
    r"(^|/)plugins/(wayland-[^/]+|egldeviceintegrations|generic|qmltooling|designer|sqldrivers|"
    r"vectorimageformats)/",
    r"(^|/)plugins/platforminputcontexts/(lib)?qtvirtualkeyboard[^/]*$",
    r"(^|/)plugins/platformthemes/(lib)?qgtk3[^/]*$",
    r"(^|/)(lib)?Qt6?(Wayland|EglFS|Qml|Quick|Pdf|WebEngine|Multimedia|VirtualKeyboard|Designer|Help|"
    r"LabsStyleKit|ShaderTools|3D)[^/]*$",
    r"(^|/)Qt(Wayland|Qml|Quick|Pdf|WebEngine|Multimedia|VirtualKeyboard|Designer|Help)[^/]*\.framework/",
    r"(^|/)PySide6/Qt/(qml|translations)/",
    r"(^|/)tensorflow/compiler/mlir/stablehlo/stablehlo_extension[^/]*$",
    r"(^|/)tensorflow/compiler/tf2xla/ops/_xla_ops[^/]*$",
    r"(^|/)tensorflow/python/framework/lib_native_proto_caster[^/]*$",
    r"(^|/)tensorflow/include/",
]
_EXCLUDED = re.compile("|".join(EXCLUDED_PATH_PATTERNS), re.IGNORECASE)


def keep(dest: str) -> bool:
    """Whether a file with this destination path inside the bundle stays in it."""
    return not _EXCLUDED.search(dest.replace("\\", "/"))


def filter_toc(toc: list[tuple]) -> list[tuple]:
    """PyInstaller TOC entries are (dest_name, src_name, typecode); keep the ones `keep` allows."""
    return [entry for entry in toc if keep(entry[0])]


def filter_binaries(toc: list[tuple]) -> list[tuple]:
    """filter_toc, then drop the shared libraries that only the dropped binaries needed.

    PyInstaller collected the dependencies of every plugin before we dropped some (the GTK theme alone
    brings 28 libraries). A library goes only when it is a dependency of a dropped binary and of no
    kept one, so nothing that stays can miss it.
    """
    kept = [entry for entry in toc if keep(entry[0])]
    dropped = [entry for entry in toc if not keep(entry[0])]
    files = {entry[0]: os.path.realpath(entry[1]) for entry in kept if entry[2] != "SYMLINK"}
    candidates = set().union(*(_dependencies(src) for _, src, kind in dropped if kind != "SYMLINK"))
    # libpython is loaded by name by the bootloader, so no binary lists it; never a candidate.
    candidates = {path for path in candidates & set(files.values()) if "libpython" not in os.path.basename(path)}
    needed: set[str] = set()
    if candidates:
        for src in files.values():
            if src not in candidates:
                needed |= _dependencies(src) & candidates
        # Windows and macOS list direct dependencies only: follow the chain through the needed ones.
        todo = set(needed)
        while todo:
            more = _dependencies(todo.pop()) & candidates - needed
            needed |= more
            todo |= more
    gone = {dest for dest, src in files.items() if src in candidates - needed} | {entry[0] for entry in dropped}
    return [entry for entry in kept if entry[0] not in gone and not _links_to(entry, gone)]


def _links_to(entry: tuple, dests: set[str]) -> bool:
    """Whether a TOC entry is a symbolic link (dest, target relative to its folder, "SYMLINK") into `dests`."""
    return entry[2] == "SYMLINK" and os.path.normpath(os.path.join(os.path.dirname(entry[0]), entry[1])) in dests


def _dependencies(src: str) -> set[str]:
    """The shared libraries a binary loads (on Linux ldd's list: indirect ones too), as real paths."""
    from PyInstaller.depend.bindepend import get_imports

    try:
        return {os.path.realpath(path) for _, path in get_imports(src) if path}
    except Exception:  # not a binary PyInstaller can read, so nothing we could drop depends on it
        return set()
