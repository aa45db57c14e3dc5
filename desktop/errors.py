"""What users see when something needs their attention, in the app's own words; and About.

The one place that maps an error to the desktop's output: an index that is away gets the status bar and
Retry; a setting the user must change gets a dialog that leads to Settings; a bad query image is said in
the query pane; anything else (a bug) a dialog too, never swallowed. Core messages are written for the
command line; `plain_words` takes out flag and variable names a desktop user cannot act on.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from core import __version__
from core.errors import CONFIG, CONFLICT, INVALID, NOT_FOUND, UNAVAILABLE, UNSUPPORTED, UserError
from core.images import ImageError
from core.model import WeightsError, keras_cache_dir

TITLES = {CONFIG: "A setting cannot be used", CONFLICT: "The index was built with another model",
          UNAVAILABLE: "The index cannot be reached", INVALID: "This cannot be used", NOT_FOUND: "Not in the index",
          UNSUPPORTED: "This index cannot do that"}
ADVICE = {
    CONFLICT: "In Settings, choose the weights the index was built with, or another index folder (or "
              "Elasticsearch index) for this model.",
    CONFIG: "Change it in Settings.",
}
_REPHRASE = [(re.compile(r"pass its path with --weights PATH \(or set IMAGE_SEARCH_WEIGHTS=PATH, or choose the file "
                         r"in Settings\)"), "choose the file in Settings → Model → Weights")]
_CLI_WORDS = re.compile(r"--[a-z][a-z-]+|IMAGE_SEARCH_[A-Z_]+")


def kind_of(exc: Exception) -> str | None:
    """The error's kind (core.errors): every user-facing error carries one; None for anything else."""
    return getattr(exc, "kind", None) if isinstance(exc, UserError) else None


def plain_words(text: str) -> str:
    """The message without command-line advice: sentences naming flags or variables are left out."""
    for pattern, words in _REPHRASE:
        text = pattern.sub(words, text)
    sentences = re.split(r"(?<=[.;])\s+", text.strip())
    kept = [s for s in sentences if not _CLI_WORDS.search(s)] or [_CLI_WORDS.sub("", sentences[0])]
    text = " ".join(kept).rstrip(";") or text
    return text[:1].upper() + text[1:]


class ErrorPresenter:
    def __init__(self, window, open_settings: Callable[[], None]):
        self.w = window
        self.open_settings = open_settings
        self.box: QMessageBox | None = None
        self._retry: Callable[[], None] | None = None

    def handle(self, exc: Exception, retry: Callable[[], None] | None = None) -> None:
        kind = kind_of(exc)
        if kind == UNAVAILABLE:
            self.show_status(f"Index unavailable: {exc}", retry)
        elif isinstance(exc, ImageError):
            self.w.pane.show_error(exc.reason)
        else:
            self._dialog(exc, kind)

    def show_job_failure(self, job: dict, retry: Callable[[], None]) -> None:
        self.show_status(f"Indexing failed: {job['error']}", retry)

    def show_status(self, text: str, retry: Callable[[], None] | None) -> None:
        self.w.status_error.setText(text)
        self.w.status_error.setToolTip(text)
        self.w.status_error.show()
        self._retry = retry
        self.w.retry_button.setVisible(retry is not None)

    def clear(self) -> None:
        self.w.status_error.hide()
        self.w.retry_button.hide()
        self._retry = None

    def retry(self) -> None:
        retry = self._retry
        self.clear()
        if retry is not None:
            retry()

    def _dialog(self, exc: Exception, kind: str | None) -> None:
        if self.box is not None:
            self.box.close()
        box = self.box = QMessageBox(self.w)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setText(plain_words(str(exc)))
        if isinstance(exc, WeightsError):
            box.setWindowTitle("VGG16 weights needed")
            box.setInformativeText(f"Put the weights file in {keras_cache_dir()}, or choose the .h5 file in "
                                   "Settings → Model → Weights.")
            box.addButton("Choose Weights File…", QMessageBox.ButtonRole.AcceptRole).clicked.connect(
                self._choose_weights)
        elif kind in TITLES:
            box.setWindowTitle(TITLES[kind])
            box.setInformativeText(ADVICE.get(kind, ""))
        else:
            box.setWindowTitle("Something went wrong")
            box.setInformativeText(f"{type(exc).__name__}. The app keeps running; please report this if it repeats.")
        if kind in (CONFIG, CONFLICT):
            box.addButton("Settings…", QMessageBox.ButtonRole.ActionRole).clicked.connect(self.open_settings)
        box.addButton(QMessageBox.StandardButton.Close)
        box.open()  # does not block: the window keeps drawing and the workers keep reporting

    def _choose_weights(self) -> None:
        if "weights" in self.w.locked:
            self.w.statusBar().showMessage(LOCKED_MESSAGE, 10000)
            return
        path, _ = QFileDialog.getOpenFileName(self.w, "VGG16 weights", str(keras_cache_dir()),
                                              "Keras weights (*.h5 *.keras);;All files (*)")
        if path:
            choices = self.w.choices
            self.w.apply_choices(replace(choices, settings=choices.settings.replace(weights=path)))


LOCKED_MESSAGE = "The weights were set when the app was started (command line or environment): restart without "\
                 "them to choose another file."


def about_text(engine=None) -> str:
    """Version, model, backend and paths; in an installed app also its build (the installer points
    IMAGE_SEARCH_BUILD_INFO at a JSON file)."""
    text = (f"<b>Image Search</b> {__version__}<br>Finds visually similar images with VGG16 descriptors, "
            "in an index on this computer or on an Elasticsearch server.")
    if engine is not None:
        rows = {"Model": f"VGG16 {engine.identity.label()}", "Weights": engine.settings.weights,
                "Index": f"{engine.store.backend}: {engine.store.location()}"}
        runtime = engine.info()["runtime"]
        if runtime is not None:
            rows["Runs on"] = f"{runtime['runtime']}, {runtime['precision']}, {runtime['device']}"
        text += "<p>" + "<br>".join(f"{k}: {html.escape(str(v))}" for k, v in rows.items()) + "</p>"
    try:
        build = json.loads(Path(os.environ["IMAGE_SEARCH_BUILD_INFO"]).read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return text
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in build.items())
    warning = ("<p><b>TEST BUILD: random weights. Search results are not meaningful.</b></p>"
               if build.get("weights") == "random" else "")
    return f"{text}{warning}<p>Build:</p><table>{rows}</table>"
