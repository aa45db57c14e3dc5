"""Job feedback widgets: the status-bar progress (count, time left, Cancel), the end-of-run note that stays
until read, and the list of files that could not be indexed."""

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
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

ETA_AFTER = 2  # files: the first ones include the model's warm-up, so time left is shown from then on


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


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def outcome(job: dict) -> str:
    """What a finished job did, in words (the job snapshot of core.jobs)."""
    report, state = job.get("report") or {}, job["state"]
    if state == "failed":
        return f"{_NAMES[job['kind']]} failed: {job['error']}"
    if job["kind"] == "remove":
        return f"{plural(report.get('removed', 0), 'image')} removed from the index"
    if job["kind"] == "duplicates":
        return f"{plural(report.get('groups', 0), 'group')} of near-duplicates"
    if job["kind"] == "labels":
        said = f"{plural(report.get('labelled', 0), 'image')} labelled, {len(report.get('skipped', [])):,} skipped"
        meaningless = "" if report.get("labels_meaningful", True) else " (random weights: the labels mean nothing)"
        return ("Labelling cancelled (kept): " if state == "cancelled" else "Labelling finished: ") + said + meaningless
    parts = (f"{report.get('indexed', 0):,} indexed, {report.get('unchanged', 0):,} unchanged, "
             f"{len(report.get('skipped', [])):,} skipped, {report.get('removed', 0):,} removed")
    if state == "cancelled":
        return f"Indexing cancelled at {job['done']:,} of {job['total']:,}: {parts} (kept)"
    return f"Indexing finished: {parts}"


_NAMES = {"index": "Indexing", "remove": "Removing a folder", "duplicates": "Finding duplicates",
          "labels": "Labelling images"}


class JobStatus(QWidget):
    """Lives in the status bar: the running job with Cancel, then what it did until the user closes it."""

    cancel_requested = Signal()
    details_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(160)
        self.label = QLabel()
        self.label.setMinimumWidth(60)  # a long outcome is cut (the tooltip has it all), never widens the window
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the batch being processed; everything indexed so far is kept")
        self.cancel_button.clicked.connect(self._cancel)
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self.details_requested)
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.label, self.bar, self.cancel_button, self.details_button, self.close_button):
            layout.addWidget(widget)
        self.hide()

    def start(self, job: dict) -> None:
        self.bar.setRange(0, 0)  # busy until the scan knows how many files need work
        what = ", ".join(p.rstrip("/\\").rsplit("/", 1)[-1] or p for p in job["paths"])
        self.label.setText({"index": f"Scanning {what}…", "remove": f"Removing {what}…",
                            "duplicates": "Comparing every pair of images…",
                            "labels": "Labelling images…"}[job["kind"]])
        self.label.setToolTip("")
        self._set_running(True)
        self.show()

    def update_progress(self, job: dict) -> None:
        if job["kind"] not in ("index", "labels") or not job["total"]:
            return
        done, total = job["done"], job["total"]
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        eta = format_eta(job["eta_s"]) if done >= ETA_AFTER and done < total and job["eta_s"] else ""
        doing = "Indexing" if job["kind"] == "index" else "Labelling"
        self.label.setText(f"{doing} {done:,} of {total:,}" + (f" · {eta}" if eta else ""))
        self.setToolTip(job["current"] or "")
        self.cancel_button.setVisible(done < total)  # at 100 % only the last commit is left: nothing to stop

    def finish(self, job: dict, has_details: bool) -> None:
        """Says what the job did; stays until dismissed or the next job starts (a re-search does not clear it)."""
        self.label.setText(outcome(job))
        self.label.setToolTip(self.label.text())
        self._set_running(False)
        self.details_button.setVisible(has_details)
        self.show()

    def _set_running(self, running: bool) -> None:
        self.bar.setVisible(running)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(True)
        self.details_button.setVisible(False)
        self.close_button.setVisible(not running)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText("Stopping after this batch…")
        self.cancel_requested.emit()


class ReportDialog(QDialog):
    """Files that could not be indexed, each with the reason."""

    def __init__(self, summary: str, skipped: list[tuple[str, str]], heading: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Indexing finished")
        self.resize(760, 420)
        text = QLabel(summary)
        text.setWordWrap(True)
        self.skipped = QTreeWidget()
        self.skipped.setHeaderLabels(["Skipped file", "Reason"])
        self.skipped.setRootIsDecorated(False)
        self.skipped.setColumnWidth(0, 420)
        for path, reason in skipped:
            item = QTreeWidgetItem([path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.skipped.addTopLevelItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy List", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText("\n".join(f"{p}\t{r}" for p, r in skipped)))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(QLabel(heading))
        layout.addWidget(self.skipped)
        layout.addWidget(buttons, alignment=Qt.AlignmentFlag.AlignRight)

    def skipped_rows(self) -> list[tuple[str, str]]:
        return [(self.skipped.topLevelItem(i).text(0), self.skipped.topLevelItem(i).text(1))
                for i in range(self.skipped.topLevelItemCount())]
