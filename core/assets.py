"""Where resources/ is (the web page, the OpenAPI document, the desktop's style sheet and icons).

One rule for every way the code runs: an installed wheel carries resources/ inside the core package
(`core/resources`, mapped by `package-dir` in pyproject.toml); the source tree has it beside core/, and so
does a PyInstaller bundle (its spec copies resources/ to `<bundle>/resources`, and PyInstaller sets a
frozen module's `__file__` to where it would lie in the bundle, so `core/..` is the bundle's top folder).
"""

from __future__ import annotations

import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def resources_root() -> Path:
    """The resources folder in use: `core/resources` when installed, else `resources` beside core/."""
    installed = PACKAGE / "resources"
    return installed if installed.is_dir() else PACKAGE.parent / "resources"


def resources_path(*parts: str) -> Path:
    """The path of `resources/<parts...>`, e.g. resources_path("web", "openapi.json"). It is not checked to
    exist: callers that need the file get the usual OSError when it is missing."""
    return resources_root().joinpath(*parts)
