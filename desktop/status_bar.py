"""The status bar: errors with Retry, the job in progress, the index and its count, the model, the API."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPushButton

from desktop.index_widgets import JobStatus


def build_status_bar(w) -> None:
    """Makes w.status_error, w.retry_button, w.job_status, w.status_index, w.status_model and w.status_api."""
    bar = w.statusBar()
    w.status_error = QLabel()
    w.status_error.setObjectName("statusError")
    w.status_error.setMinimumWidth(60)  # a long message is cut (the tooltip has it all), never widens the window
    w.retry_button = QPushButton("Retry")
    bar.addWidget(w.status_error, 1)
    bar.addWidget(w.retry_button)
    w.status_error.hide()
    w.retry_button.hide()
    w.job_status = JobStatus()
    w.status_index = QLabel("Opening index…")
    w.status_model = QLabel()
    w.status_api = QLabel()
    w.status_api.setOpenExternalLinks(True)
    for widget in (w.job_status, w.status_index, w.status_model, w.status_api):
        bar.addPermanentWidget(widget)


def show_model(w, text: str, tip: str) -> None:
    w.status_model.setText(text)
    w.status_model.setToolTip(tip)


def show_info(w, info: dict) -> None:
    backend = "Embedded index" if info["backend"] == "embedded" else "Elasticsearch"
    w.status_index.setText(f"{backend} · {info['count']:,} images")
    w.status_index.setToolTip(info["location"])


def show_api(w, api, error: str | None) -> None:
    w.status_api.setText(f'API: <a href="{api.url}">{api.url}</a>' if api is not None else "API off")
    w.status_api.setToolTip(f"The HTTP API could not start: {error}" if error else "")
    if error:
        # The whole reason, where it is not cut off: the permanent label holds only "API off".
        w.statusBar().showMessage(f"The HTTP API could not start: {error}", 15000)
