"""Settings: where the index lives (embedded or Elasticsearch), the model's weights, the HTTP API."""

from __future__ import annotations

import os
from collections.abc import Collection

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.config import Settings
from core.store import open_store
from desktop.preferences import Choices
from desktop.worker import Worker

BACKEND_LABELS = {"embedded": "On this computer (embedded)", "elasticsearch": "Elasticsearch server"}
DESCRIPTOR_LABELS = {"gem": "GeM-pooled conv features, 512-d (recommended)",
                     "fc1": "fc1 layer, 4096-d (as the original project)"}
SPECIAL_WEIGHTS = ("imagenet", "random")
FIELD_NAMES = {"backend": "where the index is", "data_dir": "index folder", "weights": "model weights",
               "es_url": "Elasticsearch URL", "es_index": "index name", "es_api_key": "API key",
               "es_username": "user name", "es_password": "password", "descriptor": "descriptor",
               "api_port": "HTTP API port"}
LOCKED_TIP = "They were given when Image Search was started; start it without them to change them here."


def probe_store(settings: Settings) -> str:
    """Open the index the settings name and count its images (runs in a worker); raises StoreError."""
    store = open_store(settings)
    try:
        return f"Connected: {store.count()} images in {store.location()}"
    finally:
        store.close()


class SettingsDialog(QDialog):
    def __init__(self, choices: Choices, locked: Collection[str], worker: Worker, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._initial = choices
        self._worker = worker
        s = choices.settings

        # -- the index ----------------------------------------------------------------------------
        self.backend = QComboBox()
        for key, label in BACKEND_LABELS.items():
            self.backend.addItem(label, key)
        self.backend.setCurrentIndex(self.backend.findData(s.backend))
        self.data_dir = QLineEdit(s.data_dir)
        browse_data = self.browse_data = QPushButton("Browse…")
        browse_data.clicked.connect(self._choose_data_dir)
        embedded = QWidget()
        embedded_form = QFormLayout(embedded)
        embedded_form.setContentsMargins(0, 0, 0, 0)
        embedded_form.addRow("Index folder:", _row(self.data_dir, browse_data))

        self.es_url = QLineEdit(s.es_url)
        self.es_index = QLineEdit(s.es_index)
        self.es_api_key = QLineEdit(s.es_api_key or "")
        self.es_api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.es_username = QLineEdit(s.es_username or "")
        self.es_password = QLineEdit(s.es_password or "")
        self.es_password.setEchoMode(QLineEdit.EchoMode.Password)
        elastic = QWidget()
        elastic_form = QFormLayout(elastic)
        elastic_form.setContentsMargins(0, 0, 0, 0)
        elastic_form.addRow("URL:", self.es_url)
        elastic_form.addRow("Index name:", self.es_index)
        elastic_form.addRow("API key:", self.es_api_key)
        elastic_form.addRow("or user name:", self.es_username)
        elastic_form.addRow("and password:", self.es_password)

        self.pages = QStackedWidget()
        self.pages.addWidget(embedded)
        self.pages.addWidget(elastic)
        self.backend.currentIndexChanged.connect(self._backend_changed)
        self.test_button = QPushButton("Test Connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel()
        self.test_result.setObjectName("testResult")
        self.test_result.setWordWrap(True)

        index_box = QGroupBox("Index")
        index_layout = QFormLayout(index_box)
        index_layout.addRow("Backend:", self.backend)
        index_layout.addRow(self.pages)
        index_layout.addRow(_row(self.test_button, stretch=True))
        index_layout.addRow(self.test_result)

        # -- the model ----------------------------------------------------------------------------
        self.weights = QLineEdit(s.weights)
        self.weights.setPlaceholderText("imagenet")
        self.weights.setToolTip("'imagenet' (the Keras download or a bundled copy) or the path of a VGG16 .h5 file")
        browse_weights = self.browse_weights = QPushButton("Browse…")
        browse_weights.clicked.connect(self._choose_weights)
        imagenet = self.imagenet_button = QPushButton("ImageNet")
        imagenet.setToolTip("Use the standard ImageNet weights")
        imagenet.clicked.connect(lambda: self.weights.setText("imagenet"))
        self.descriptor = QComboBox()
        for key, label in DESCRIPTOR_LABELS.items():
            self.descriptor.addItem(label, key)
        self.descriptor.setCurrentIndex(self.descriptor.findData(choices.new_descriptor))
        note = QLabel("An existing index keeps the descriptor it was built with.")
        note.setObjectName("note")
        model_box = QGroupBox("Model (VGG16)")
        model_layout = QFormLayout(model_box)
        model_layout.addRow("Weights:", _row(self.weights, browse_weights, imagenet))
        model_layout.addRow("New indexes use:", self.descriptor)
        model_layout.addRow(note)

        # -- the HTTP API -------------------------------------------------------------------------
        self.api_enabled = QCheckBox("Serve the HTTP API and web page while the app runs")
        self.api_enabled.setChecked(choices.api_enabled)
        self.api_port = QSpinBox()
        self.api_port.setRange(1, 65535)
        self.api_port.setValue(s.api_port)
        self.api_enabled.toggled.connect(self.api_port.setEnabled)
        self.api_port.setEnabled(choices.api_enabled)
        api_box = QGroupBox("HTTP API")
        api_layout = QFormLayout(api_box)
        api_layout.addRow(self.api_enabled)
        api_layout.addRow(f"Port (on {s.api_host}):", self.api_port)

        self.error = QLabel()
        self.error.setObjectName("message")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(index_box)
        layout.addWidget(model_box)
        layout.addWidget(api_box)
        layout.addWidget(self._lock(locked))
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self._backend_changed()
        buttons.button(QDialogButtonBox.StandardButton.Ok).setFocus()  # no key lands on a field unasked

    def choices(self) -> Choices:
        """What the dialog shows now."""
        settings = self._initial.settings.replace(
            backend=self.backend.currentData(),
            data_dir=self.data_dir.text().strip() or self._initial.settings.data_dir,
            weights=self.weights.text().strip() or "imagenet",
            es_url=self.es_url.text().strip(),
            es_index=self.es_index.text().strip() or self._initial.settings.es_index,
            es_api_key=self.es_api_key.text() or None,
            es_username=self.es_username.text().strip() or None,
            es_password=self.es_password.text() or None,
            api_port=self.api_port.value(),
        )
        return Choices(settings, self.descriptor.currentData(), self.api_enabled.isChecked())

    def accept(self) -> None:
        weights = self.weights.text().strip()
        if weights and weights not in SPECIAL_WEIGHTS and not os.path.isfile(os.path.expanduser(weights)):
            self.error.setText(f"Weights file not found: {weights}. Choose a VGG16 .h5 file, or 'imagenet'.")
            self.error.show()
            return
        super().accept()

    def test_connection(self) -> None:
        """Opens the index in the worker (a server may take seconds to answer) and says what it found."""
        settings = self.choices().settings
        self.test_button.setEnabled(False)
        self.test_result.setText("Connecting…")
        self._worker.call(lambda: probe_store(settings), done=self._tested,
                          failed=lambda exc: self._tested(f"Failed: {exc}"))

    def _tested(self, text: str) -> None:
        if shiboken6.isValid(self):  # the dialog may have been closed and deleted meanwhile
            self.test_result.setText(text)
            self.test_button.setEnabled(True)

    def _backend_changed(self) -> None:
        self.pages.setCurrentIndex(0 if self.backend.currentData() == "embedded" else 1)

    def _choose_data_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index folder", self.data_dir.text())
        if folder:
            self.data_dir.setText(folder)

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG16 weights", "", "Keras weights (*.h5 *.keras);;All files (*)")
        if path:
            self.weights.setText(path)

    def _lock(self, locked: Collection[str]) -> QLabel:
        """Settings fixed for this launch (command-line options or environment variables) are shown read-only,
        their buttons off and out of the tab order, so no key or click can change them (issue 14)."""
        fields = {"backend": (self.backend,), "data_dir": (self.data_dir, self.browse_data),
                  "weights": (self.weights, self.browse_weights, self.imagenet_button), "es_url": (self.es_url,),
                  "es_index": (self.es_index,), "es_api_key": (self.es_api_key,),
                  "es_username": (self.es_username,), "es_password": (self.es_password,),
                  "descriptor": (self.descriptor,), "api_port": (self.api_port,)}
        names = [k for k in fields if k in locked]
        for name in names:
            for widget in fields[name]:
                if isinstance(widget, QLineEdit):
                    widget.setReadOnly(True)
                widget.setEnabled(False)
                widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                widget.setToolTip(LOCKED_TIP)
        self.locked_fields = frozenset(names)
        label = QLabel("Fixed for this launch: " + ", ".join(FIELD_NAMES[n] for n in names) + ". " + LOCKED_TIP)
        label.setObjectName("note")
        label.setWordWrap(True)
        label.setVisible(bool(names))
        return label


def _row(*widgets: QWidget, stretch: bool = False) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget, 0 if isinstance(widget, QPushButton) else 1)
    if stretch:
        layout.addStretch(1)
    return row
