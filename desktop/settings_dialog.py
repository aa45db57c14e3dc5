"""Settings: every setting of core/config.py, in tabs, each widget derived from the setting's definition.

The type and metadata of each Settings field choose its widget (choices: a combo box; bool: a check box;
int and float: spin boxes, the unit from the name's `_s`/`_mb` ending; secret: a password field; other
text: a line edit) and its label and tooltip (the first clause of its help, and all of it). What the
definitions do not say is added here by name: the tab, file and folder pickers, the list editor of
`reference_folders`, nicer labels and ranges. A setting added to core/config.py shows up (in "Other")
without touching this file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.config import DESCRIPTORS, ConfigError, Settings, setting_fields
from core.store import open_store
from desktop.preferences import Choices
from desktop.worker import Worker

# The tabs and the settings each shows, in order. The Index tab's `es_*` settings are the Elasticsearch
# page, shown when that backend is chosen; a setting named nowhere goes to "Other".
GROUPS = {
    "Index": ("backend", "data_dir", "es_url", "es_index", "es_api_key", "es_username", "es_password",
              "es_ca_certs", "es_timeout_s"),
    "Model": ("weights", "descriptor", "runtime", "precision", "batch_size", "labels"),
    "Folders": ("exclude", "follow_external_symlinks", "reference_folders", "keeper_rules"),
    "HTTP API": ("api_host", "api_port", "api_token", "api_token_file", "api_cors_origins", "max_upload_mb"),
}
LABELS = {"backend": "Where the index is", "data_dir": "Index folder", "weights": "Model weights",
          "descriptor": "Descriptor for new indexes", "reference_folders": "Reference folders",
          "exclude": "Names the scan ignores", "keeper_rules": "Keeper rules",
          "labels": "Name what is in each image (ImageNet labels; needs the full 528 MB weights)",
          # on the Elasticsearch page, where the help's "Elasticsearch ..." would say it again on every row
          "es_url": "URL", "es_index": "Index name", "es_api_key": "API key", "es_username": "User name",
          "es_password": "Password", "es_ca_certs": "CA certificate", "es_timeout_s": "Timeout"}
CHOICE_LABELS = {
    "backend": {"embedded": "On this computer (embedded)", "elasticsearch": "Elasticsearch server"},
    "descriptor": {"gem": "GeM-pooled conv features, 512-d (recommended)",
                   "fc1": "fc1 layer, 4096-d (as the original project)"},
}
FILES = {"weights": "Keras weights (*.h5 *.keras);;All files (*)",
         "es_ca_certs": "Certificates (*.pem *.crt *.cer);;All files (*)", "api_token_file": "All files (*)"}
FOLDERS = ("data_dir",)
FOLDER_LISTS = ("reference_folders",)
INT_RANGES = {"api_port": (0, 65535), "batch_size": (1, 1024)}
UNITS = {"_s": " s", "_mb": " MB"}
SPECIAL_WEIGHTS = ("imagenet", "random")
LOCKED_TIP = "They were given when Image Search was started; start it without them to change them here."


def probe_store(settings: Settings) -> str:
    """Open the index the settings name and count its images (runs in a worker); raises StoreError."""
    store = open_store(settings)
    try:
        return f"Connected: {store.count()} images in {store.location()}"
    finally:
        store.close()


def label_of(f: dataclasses.Field) -> str:
    """The setting's label: LABELS, else its help up to the first parenthesis, colon or semicolon, capitalised."""
    text = LABELS.get(f.name) or re.split(r" \(|[:;]", f.metadata["help"])[0].strip()
    return text[:1].upper() + text[1:]


def group_of(name: str) -> str:
    return next((tab for tab, names in GROUPS.items() if name in names), "Other")


class FolderList(QWidget):
    """A list of folders with Add… and Remove, for a comma-separated setting of folders."""

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.addItems([p.strip() for p in text.split(",") if p.strip()])
        self.list.setMaximumHeight(96)
        self.add_button = QPushButton("Add…")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._add)
        self.remove_button.clicked.connect(lambda: [self.list.takeItem(self.list.row(i))
                                                    for i in self.list.selectedItems()])
        buttons = QVBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def folders(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def text(self) -> str:
        """The setting's value: the folders, comma-separated."""
        return ", ".join(self.folders())

    def add(self, folder: str) -> None:
        if folder and folder not in self.folders():
            self.list.addItem(folder)

    def _add(self) -> None:
        self.add(QFileDialog.getExistingDirectory(self, "Reference folder", os.path.expanduser("~")))


class SettingsDialog(QDialog):
    def __init__(self, choices: Choices, locked: Collection[str], worker: Worker, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._initial = choices
        self._worker = worker
        self.fields: dict[str, QWidget] = {}  # setting name -> its editor (also an attribute of that name)
        self.extras: dict[str, tuple[QWidget, ...]] = {}  # setting name -> its buttons, locked with it
        self.captions: dict[str, str] = {}  # setting name -> its label in the form
        forms: dict[str, QFormLayout] = {}
        self.tabs = QTabWidget()
        self.embedded_page, self.elastic_page = QWidget(), QWidget()
        pages = {self.embedded_page: QFormLayout(self.embedded_page), self.elastic_page: QFormLayout(self.elastic_page)}
        for form in pages.values():
            form.setContentsMargins(0, 0, 0, 0)
        order = [name for names in GROUPS.values() for name in names]
        for f in sorted(setting_fields(), key=lambda f: order.index(f.name) if f.name in order else len(order)):
            editor, row = self._editor(f, choices)
            self.fields[f.name] = editor
            setattr(self, f.name, editor)
            self.captions[f.name] = label_of(f)
            editor.setToolTip(f.metadata["help"])
            tab = group_of(f.name)
            if tab not in forms:
                page = QWidget()
                forms[tab] = QFormLayout(page)
                forms[tab].setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
                self.tabs.addTab(page, tab)
            form = forms[tab]
            if tab == "Index" and f.name != "backend":
                form = pages[self.elastic_page if f.name.startswith("es_") else self.embedded_page]
            if isinstance(editor, QCheckBox):
                form.addRow(row)
            else:
                form.addRow(self.captions[f.name] + ":", row)
        self.browse_data, = self.extras["data_dir"]
        self.browse_weights, self.imagenet_button = self.extras["weights"]

        # The Index tab: the backend's page, and a connection test.
        self.pages = QStackedWidget()
        self.pages.addWidget(self.embedded_page)
        self.pages.addWidget(self.elastic_page)
        self.backend.currentIndexChanged.connect(self._backend_changed)
        self.test_button = QPushButton("Test Connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel()
        self.test_result.setObjectName("testResult")
        self.test_result.setWordWrap(True)
        forms["Index"].addRow(self.pages)
        forms["Index"].addRow(_row(self.test_button, stretch=True))
        forms["Index"].addRow(self.test_result)
        note = QLabel("An existing index keeps the descriptor it was built with.")
        note.setObjectName("note")
        forms["Model"].addRow(note)

        # The HTTP API tab: the app's own on/off choice first; the settings apply while it is on.
        self.api_enabled = QCheckBox("Serve the HTTP API and web page while the app runs")
        self.api_enabled.setChecked(choices.api_enabled)
        forms["HTTP API"].insertRow(0, self.api_enabled)
        self.api_enabled.toggled.connect(self._api_toggled)

        self.error = QLabel()
        self.error.setObjectName("message")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self._lock(locked))
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self._api_toggled(choices.api_enabled)
        self._backend_changed()
        buttons.button(QDialogButtonBox.StandardButton.Ok).setFocus()  # no key lands on a field unasked

    def _editor(self, f: dataclasses.Field, choices: Choices) -> tuple[QWidget, QWidget]:
        """The editor of setting `f` showing its value in `choices`, and the row that holds it (with buttons)."""
        name, kind, meta = f.name, str(f.type), f.metadata
        value = choices.new_descriptor if name == "descriptor" else getattr(choices.settings, name)
        self.extras[name] = ()
        if meta["choices"]:
            editor = QComboBox()
            for key in DESCRIPTORS if name == "descriptor" else meta["choices"]:
                editor.addItem(CHOICE_LABELS.get(name, {}).get(key, key), key)
            editor.setCurrentIndex(max(0, editor.findData(value)))
        elif kind.startswith("bool"):
            editor = QCheckBox(label_of(f))
            editor.setChecked(bool(value))
        elif kind.startswith(("int", "float")):
            editor = QSpinBox() if kind.startswith("int") else QDoubleSpinBox()
            if isinstance(editor, QDoubleSpinBox):
                editor.setDecimals(1)
            editor.setRange(*INT_RANGES.get(name, (0, 1_000_000)))
            editor.setSuffix(next((unit for end, unit in UNITS.items() if name.endswith(end)), ""))
            editor.setValue(value)
        elif name in FOLDER_LISTS:
            editor = FolderList(value or "")
        else:
            editor = QLineEdit("" if value is None else str(value))
            if meta["secret"]:
                editor.setEchoMode(QLineEdit.EchoMode.Password)
        if name == "api_port":
            editor.setSpecialValueText("any free port")  # 0: the system picks one (core.server)
        if name == "weights":
            editor.setPlaceholderText("imagenet")
            imagenet = QPushButton("ImageNet")
            imagenet.setToolTip("Use the standard ImageNet weights")
            imagenet.clicked.connect(lambda: editor.setText("imagenet"))
            self.extras[name] = (self._browse(editor, FILES[name]), imagenet)
        elif name in FILES:
            self.extras[name] = (self._browse(editor, FILES[name]),)
        elif name in FOLDERS:
            self.extras[name] = (self._browse(editor, None),)
        return editor, (_row(editor, *self.extras[name]) if self.extras[name] else editor)

    def _browse(self, editor: QLineEdit, file_filter: str | None) -> QPushButton:
        """A Browse… button that puts a chosen file (or folder, without a filter) into `editor`."""
        button = QPushButton("Browse…")

        def choose() -> None:
            if file_filter is None:
                path = QFileDialog.getExistingDirectory(self, "Choose a folder", editor.text())
            else:
                path, _ = QFileDialog.getOpenFileName(self, "Choose a file", "", file_filter)
            if path:
                editor.setText(path)

        button.clicked.connect(choose)
        return button

    def value(self, name: str):
        """What the editor of setting `name` shows, as that setting's type (empty text: None where the setting
        may be unset, else its default, else the value the dialog opened with)."""
        editor = self.fields[name]
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            return editor.currentData()
        if isinstance(editor, QSpinBox | QDoubleSpinBox):
            return editor.value()
        if isinstance(editor, FolderList):
            return editor.text()
        text = editor.text() if editor.echoMode() == QLineEdit.EchoMode.Password else editor.text().strip()
        if text:
            return text
        f = next(f for f in setting_fields() if f.name == name)
        if "None" in str(f.type):
            return None
        return f.default if f.default is not dataclasses.MISSING else getattr(self._initial.settings, name)

    def choices(self) -> Choices:
        """What the dialog shows now."""
        names = [name for name in self.fields if name != "descriptor"]
        settings = self._initial.settings.replace(**{name: self.value(name) for name in names})
        return Choices(settings, self.descriptor.currentData(), self.api_enabled.isChecked())

    def accept(self) -> None:
        """Close with the choices, unless the weights file is missing or a value is refused by
        Settings.validate (then the message is shown on the tab of the weights, or stays on this one)."""
        weights = self.weights.text().strip()
        problem = None
        if weights and weights not in SPECIAL_WEIGHTS and not os.path.isfile(os.path.expanduser(weights)):
            problem = f"Weights file not found: {weights}. Choose a VGG16 .h5 file, or 'imagenet'."
            self.tabs.setCurrentIndex(next(i for i in range(self.tabs.count())
                                           if self.tabs.widget(i).isAncestorOf(self.weights)))
        else:
            try:
                self.choices().settings.validate()
            except ConfigError as exc:
                problem = f"{exc}."
        if problem is not None:
            self.error.setText(problem)
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
        current = 0 if self.backend.currentData() == "embedded" else 1
        self.pages.setCurrentIndex(current)
        # A stacked widget is as tall as its tallest page: the hidden one is ignored, so no empty gap is left.
        for i in range(self.pages.count()):
            policy = QSizePolicy.Policy.Preferred if i == current else QSizePolicy.Policy.Ignored
            self.pages.widget(i).setSizePolicy(policy, policy)
        self.pages.adjustSize()
        self.adjustSize()

    def _api_toggled(self, on: bool) -> None:
        for name in GROUPS["HTTP API"]:
            if name not in self.locked_fields:
                self.fields[name].setEnabled(on)

    def _lock(self, locked: Collection[str]) -> QLabel:
        """Settings fixed for this launch (command-line options or environment variables) are shown read-only,
        their buttons off and out of the tab order, so no key or click can change them (issue 14)."""
        names = [name for name in self.fields if name in locked]
        for name in names:
            for widget in (self.fields[name], *self.extras[name]):
                if isinstance(widget, QLineEdit):
                    widget.setReadOnly(True)
                widget.setEnabled(False)
                widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                widget.setToolTip(LOCKED_TIP)
        self.locked_fields = frozenset(names)
        said = [f"Elasticsearch {self.captions[n]}" if n.startswith("es_") else self.captions[n][:1].lower()
                + self.captions[n][1:] for n in names]
        label = QLabel("Fixed for this launch: " + ", ".join(said) + ". " + LOCKED_TIP)
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
