"""Indexing feedback: the status-bar progress (count, ETA, Cancel) and the end-of-run report."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.indexer import IndexProgress, IndexReport


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d} left"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min left"


class IndexStatus(QWidget):
    """Lives in the status bar while a folder is indexed."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the batch being processed; everything indexed so far is kept")
        self.cancel_button.clicked.connect(self._cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.hide()

    def start(self, what: str) -> None:
        self.bar.setRange(0, 0)  # busy until the scan knows how many files need work
        self.label.setText(f"Scanning {what}…")
        self.cancel_button.setEnabled(True)
        self.show()

    def update_progress(self, progress: IndexProgress) -> None:
        self.bar.setRange(0, max(progress.total, 1))
        self.bar.setValue(progress.done)
        eta = format_eta(progress.eta_s) if progress.done < progress.total else ""
        self.label.setText(f"Indexing {progress.done}/{progress.total}" + (f" · {eta}" if eta else ""))
        self.setToolTip(progress.path)

    def finish(self) -> None:
        self.hide()

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText("Stopping after this batch…")
        self.cancel_requested.emit()


class ReportDialog(QDialog):
    """The end of a run that skipped files: the summary, and every skipped file with the reason."""

    def __init__(self, report: IndexReport, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Indexing finished")
        self.resize(760, 420)
        summary = QLabel(report.summary())
        summary.setWordWrap(True)
        self.skipped = QTreeWidget()
        self.skipped.setHeaderLabels(["Skipped file", "Reason"])
        self.skipped.setRootIsDecorated(False)
        self.skipped.setColumnWidth(0, 420)
        for path, reason in report.skipped:
            item = QTreeWidgetItem([path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.skipped.addTopLevelItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy List", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(
            lambda: QGuiApplication.clipboard().setText("\n".join(f"{p}\t{r}" for p, r in report.skipped)))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(QLabel(f"{len(report.skipped)} files could not be indexed:"))
        layout.addWidget(self.skipped)
        layout.addWidget(buttons, alignment=Qt.AlignmentFlag.AlignRight)

    def skipped_rows(self) -> list[tuple[str, str]]:
        return [(self.skipped.topLevelItem(i).text(0), self.skipped.topLevelItem(i).text(1))
                for i in range(self.skipped.topLevelItemCount())]
