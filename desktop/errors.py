"""What users see when something needs their attention: a dialog saying how to fix it, and About."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from core import __version__
from core.config import ConfigError
from core.model import WeightsError, keras_cache_dir
from core.store import IdentityMismatch

FIX_ERRORS = (IdentityMismatch, WeightsError, ConfigError)  # the user must change a setting


def fix_dialog(parent: QWidget, exc: Exception, open_settings: Callable[[], None],
               choose_weights: Callable[[], None]) -> QMessageBox:
    """A warning that says what happened and how to fix it, with buttons that lead there (not yet shown)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setText(str(exc))
    if isinstance(exc, WeightsError):
        box.setWindowTitle("VGG16 weights needed")
        box.setInformativeText(f"Put the weights file in {keras_cache_dir()} (Keras' cache), or choose the .h5 "
                               "file in Settings → Model → Weights.")
        box.addButton("Choose Weights File…", QMessageBox.ButtonRole.AcceptRole).clicked.connect(choose_weights)
    elif isinstance(exc, IdentityMismatch):
        box.setWindowTitle("The index was built with another model")
        box.setInformativeText("In Settings, choose the weights the index was built with, or another index "
                               "folder (or Elasticsearch index) for this model.")
    elif isinstance(exc, ConfigError):
        box.setWindowTitle("A setting cannot be used")
    else:
        box.setWindowTitle("Something went wrong")
        box.setInformativeText(f"{type(exc).__name__}. The app keeps running; please report this if it repeats.")
    if isinstance(exc, FIX_ERRORS):
        box.addButton("Settings…", QMessageBox.ButtonRole.ActionRole).clicked.connect(open_settings)
    box.addButton(QMessageBox.StandardButton.Close)
    return box


def about_text() -> str:
    """Version and, in an installed app, its build (the installer points IMAGE_SEARCH_BUILD_INFO at a JSON file)."""
    text = (f"<b>Image Search</b> {__version__}<br>Finds visually similar images with VGG16 descriptors, "
            "in an index on this computer or on an Elasticsearch server.")
    try:
        build = json.loads(Path(os.environ["IMAGE_SEARCH_BUILD_INFO"]).read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return text
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in build.items())
    warning = ("<p><b>TEST BUILD: random weights. Search results are not meaningful.</b></p>"
               if build.get("weights") == "random" else "")
    return f"{text}{warning}<p>Build:</p><table>{rows}</table>"
