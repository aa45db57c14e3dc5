"""Tools → Find Duplicates: review duplicate groups (keeper and reason, marks, side-by-side compare) and move
the marked copies to the trash or into a folder, with undo (issue 15).

The window's state lives in desktop/duplicates_review.Review (no Qt), its list in desktop/duplicates_tree.
Every engine call (Engine.duplicate_groups, act_on_duplicates, undo_last_action, mark_not_duplicates,
reset_decisions) runs in the window's own thread (desktop/duplicates_calls) with a cancel event and progress;
the GUI thread only shows results.
After files are moved, `files_changed` tells the main window to search again (the engine has already
taken them out of the index). Groups are then found again; the user's keep-this choices and marks carry
over (desktop/duplicates_review.Review(groups, earlier)). The status line counts the groups, images and
marks shown, kept current after every mark, keep, "not duplicates" and action.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.duplicates import Cancelled
from core.file_actions import Result
from desktop import files
from desktop.compare_view import CompareView
from desktop.duplicates_calls import Calls
from desktop.duplicates_review import Review
from desktop.duplicates_tree import DuplicatesTree
from desktop.index_widgets import plural
from desktop.thumbnails import ThumbnailLoader

RERUN_AFTER_MS = 400  # the threshold box re-runs the search once the user stops changing it


class DuplicatesDialog(QDialog):
    find_similar = Signal(object)  # ImageRecord
    files_changed = Signal()  # files were moved or brought back: results on screen may list gone files
    groups_shown = Signal()
    action_finished = Signal(object)  # core.file_actions.Result of a move, trash or undo

    def __init__(self, engine, loader: ThumbnailLoader, parent: QWidget | None = None):
        """`engine`: the open core.engine.Engine; `loader`: the window's thumbnail loader."""
        super().__init__(parent)
        self.setWindowTitle("Find Duplicates")
        self.resize(1000, 640)
        self.engine = engine
        self.review = Review([])
        self.reference_folders: list[str] | None = None  # None: the settings' reference folders
        self.compare_view: CompareView | None = None
        self.calls = Calls(self)
        self._rerun = False  # find again once the call in progress ends
        self._finding = False  # the call in progress is a search (cancelled by a new one; an action never is)

        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.5, 1.0)
        self.threshold.setSingleStep(0.005)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.95)
        self.threshold.setToolTip("Images at least this similar (cosine similarity) are grouped together")
        self._rerun_timer = QTimer(self, singleShot=True, interval=RERUN_AFTER_MS, timeout=self.find)
        self.threshold.valueChanged.connect(lambda _v: self._rerun_timer.start())
        self.variants = QCheckBox("Mirrored and rotated copies")
        self.variants.setToolTip("Also match mirrored and rotated copies: decodes and embeds every indexed image "
                                 "4 more times (slow on a large index)")
        self.variants.toggled.connect(lambda _on: self._rerun_timer.start())
        self.find_button = self._button("Find", self.find)
        self.cancel_button = self._button("Cancel", self.calls.cancel.set)
        self.progress = QProgressBar()
        self.status = QLabel()
        self.outcome = QLabel()  # what the last move, trash or undo did (stays while groups are found again)
        self.outcome.setWordWrap(True)
        self.reference_label = QLabel()
        top = QHBoxLayout()
        for widget in (QLabel("Similarity at least"), self.threshold, self.variants, self.find_button,
                       self.cancel_button, self.progress):
            top.addWidget(widget)
        top.addWidget(self.status, 1)
        refs = QHBoxLayout()
        refs.addWidget(self.reference_label, 1)
        refs.addWidget(self._button("Add Reference Folder…", self._add_reference))
        self.reset_button = self._button("Reset Decisions", self.reset_decisions,
                                         "Forget every “not duplicates” decision and show those groups again")
        refs.addWidget(self.reset_button)

        self.tree = DuplicatesTree(loader, self)
        self.tree.command.connect(self._command)
        self.tree.doubleClicked.connect(lambda _i: self._with_record(lambda r: files.open_file(r.path)))
        self.tree.model_.modelReset.connect(self._show_counts)
        self.tree.model_.dataChanged.connect(self._marks_may_have_changed)

        self.keep_button = self._button("Keep This (K)", self.keep_current)
        self.compare_button = self._button("Compare (C)", self.compare)
        self.not_dups_button = self._button("Not Duplicates", self.not_duplicates,
                                            "This group (or the images of it you selected) are not duplicates: "
                                            "remembered until Reset Decisions")
        self.trash_button = self._button("Move Marked to Trash (Del)", lambda: self.act("trash"))
        self.move_button = self._button("Move Marked to Folder…", self._move_to_folder)
        self.undo_button = self._button("Undo Last Action", self.undo)
        self.similar_button = self._button("Find Similar", lambda: self._with_record(self.find_similar.emit))
        self.reveal_button = self._button("Reveal in Folder", lambda: self._with_record(lambda r: files.reveal(r.path)))
        bottom = QHBoxLayout()
        for button in (self.keep_button, self.compare_button, self.not_dups_button, self.similar_button,
                       self.reveal_button):
            bottom.addWidget(button)
        bottom.addStretch(1)
        for button in (self.trash_button, self.move_button, self.undo_button):
            bottom.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(refs)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.outcome)
        layout.addLayout(bottom)
        self.calls.progress.connect(self._show_progress)
        self.calls.busy_changed.connect(self._set_busy)
        self.calls.failed.connect(self._failed)
        self._set_busy(False)
        self._show_references()

    def _button(self, text: str, slot: Callable[[], object], tip: str | None = None) -> QPushButton:
        button = QPushButton(text)
        button.setAutoDefault(False)
        button.clicked.connect(lambda _checked=False: slot())
        if tip:
            button.setToolTip(tip)
        return button

    # -- finding ----------------------------------------------------------------------------------
    def find(self) -> None:
        """Search for groups at the threshold shown (cancels a search in progress and runs again)."""
        if self.calls.running:
            self._rerun = True
            if self._finding:
                self.calls.cancel.set()
            return
        threshold, references, variants = self.threshold.value(), self.reference_folders, self.variants.isChecked()
        self._start("Finding duplicates…", lambda: self.engine.duplicate_groups(
            threshold, reference_folders=references, progress=self.calls.progress.emit, cancel=self.calls.cancel,
            variants=variants), self._show_groups, finding=True)

    def groups(self) -> list[list[str]]:
        """The paths shown, group by group, the keeper first."""
        return [[r.member.record.path for r in self.review.rows(g)] for g in range(len(self.review.groups))]

    def _show_groups(self, groups) -> None:
        self.review = Review(groups, self.review)  # the user's keep-this choices and marks carry over
        self.tree.show_review(self.review)  # a model reset: _show_counts
        if groups:
            self.tree.go_to(0)
            self.tree.setFocus()
        self.groups_shown.emit()

    def _show_counts(self) -> None:
        """The status line: groups, images and marks shown now (left alone while a call reports its progress)."""
        if self.calls.running:
            return
        groups = self.review.groups
        if not groups:
            self.status.setText("No duplicates found.")
            return
        total = sum(len(g.members) for g in groups)
        marked = self.review.marks()
        self.status.setText(f"{plural(len(groups), 'group')}, {plural(total, 'image')}, "
                            f"{plural(len(marked), 'marked image')} ({files.human_size(self.review.marked_bytes())})")

    def _marks_may_have_changed(self, _first, _last, roles=()) -> None:
        if list(roles) != [Qt.ItemDataRole.DecorationRole]:  # not a thumbnail arriving
            self._show_counts()

    # -- reviewing --------------------------------------------------------------------------------
    def keep_current(self) -> None:
        group, image_id = self.tree.current()
        if image_id is not None:
            self.review.keep(group, image_id)
            self.tree.model_.refresh_group(group)
            self.tree.go_to(group, image_id)

    def toggle_marks(self) -> None:
        chosen = self.tree.selected_members() or [self.tree.current()]
        group, current = self.tree.current()
        for g, image_id in chosen:
            if image_id is not None:
                self.review.toggle(g, image_id)
        for g in sorted({g for g, _ in chosen if g is not None}):
            self.tree.model_.refresh_group(g)
        if group is not None:
            self.tree.go_to(group, current)

    def compare(self) -> None:
        """Compare the two selected members, or the current member with its group's keeper (or the runner-up)."""
        chosen = self.tree.selected_members()
        if len(chosen) == 2 and chosen[0][0] == chosen[1][0]:
            group, pair = chosen[0][0], [image_id for _, image_id in chosen]
        else:
            group, image_id = self.tree.current()
            if group is None:
                return
            ids = self.tree.image_ids(group)
            pair = [ids[0], image_id if image_id not in (None, ids[0]) else ids[1]]
        members = {m.record.id: m.record for m in self.review.groups[group].members}
        if self.compare_view is not None:
            self.compare_view.close()
        self.compare_view = CompareView(members[pair[0]], members[pair[1]], self)
        self.compare_view.show()

    def not_duplicates(self) -> None:
        """Remember the current group as "not duplicates" and hide it, or, with two or more of its images
        selected, only those as not duplicates of each other (then groups are found again: they may still
        share a group through another image). The outcome line says what was done and how to bring it back
        (Reset Decisions: the decisions store has no per-group undo)."""
        group, _ = self.tree.current()
        if group is None:
            return
        found = self.review.groups[group]
        chosen = [image_id for g, image_id in self.tree.selected_members() if g == group]
        if 2 <= len(chosen) < len(found.members):
            names = ", ".join(m.record.name for m in found.members if m.record.id in chosen)
            said = f"{names}: marked “not duplicates” of each other. Reset Decisions forgets it."

            def find_again(_count) -> None:
                self.outcome.setText(said)
                self.find()

            self._start("Saving…", lambda: self.engine.mark_not_duplicates(chosen), find_again)
            return
        ids = [m.record.id for m in found.members]
        said = (f"Group {group + 1} ({plural(len(ids), 'image')}, keeper {self.review.keeper(group).record.name}) "
                "marked “not duplicates” and hidden, now and on later runs. Reset Decisions shows it again.")

        def hide(_count) -> None:
            where = next((n for n, g in enumerate(self.review.groups) if g is found), None)
            if where is not None:
                self.tree.model_.drop_group(where)  # and from the review
                if self.review.groups:
                    self.tree.go_to(min(where, len(self.review.groups) - 1))
            self.outcome.setText(said)

        self._start("Saving…", lambda: self.engine.mark_not_duplicates(ids), hide)

    def reset_decisions(self) -> None:
        def reset(_none) -> None:
            self.outcome.setText("“Not duplicates” decisions forgotten: those groups are shown again.")
            self._after_change(None)

        self._start("Resetting decisions…", self.engine.reset_decisions, reset)

    # -- acting -----------------------------------------------------------------------------------
    def act(self, action: str, move_to: str | None = None) -> None:
        """Move the marked files to the trash ("trash") or into `move_to` ("move"), after confirmation."""
        if not self.review.marks():
            self.status.setText("Nothing is marked.")
            return
        try:
            plan = self.engine.plan_duplicates(self.review.marked_groups(), action=action, move_to=move_to,
                                               marks=self.review.marks())
        except ValueError as exc:
            QMessageBox.warning(self, "Find Duplicates", str(exc))
            return
        what = (f"{plan.summary()}, freeing that space once the trash is emptied?" if action == "trash"
                else f"{plan.summary()}, keeping their folders below {plan.root}?")
        if not self.confirm(what + "\n\nKept copies and reference-folder files are not touched; "
                            "Undo Last Action brings the files back."):
            return
        calls = self.calls
        self._start("Moving files…", lambda: self.engine.act_on_duplicates(plan, calls.progress.emit, calls.cancel),
                    self._after_change)

    def undo(self) -> None:
        self._start("Undoing the last action…", self.engine.undo_last_action, self._after_change)

    def confirm(self, text: str) -> bool:
        """Ask before acting (a method, so tests can answer)."""
        answer = QMessageBox.question(self, "Find Duplicates", text,
                                      QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Ok

    def _move_to_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Move Marked Files Into")
        if folder:
            self.act("move", folder)

    def _after_change(self, result: Result | None) -> None:
        if result is not None:
            self.files_changed.emit()
            self.action_finished.emit(result)
            said = f"{plural(len(result.done), 'file')} done ({files.human_size(result.bytes)})"
            if result.skipped:
                said += f"; {len(result.skipped)} left alone: " + "; ".join(f"{p}: {why}" for p, why in
                                                                            result.skipped[:3])
            self.outcome.setText(said + ("; cancelled" if result.cancelled else "") + ".")
        self.find()  # the index changed: groups are found again

    # -- running ----------------------------------------------------------------------------------
    def _start(self, text: str, job: Callable[[], object], done: Callable[[object], None],
               finding: bool = False) -> None:
        self._rerun, self._finding = False, finding
        self.status.setText(text)

        def then(result) -> None:
            done(result)
            self._show_counts()  # the call is over: the status line counts again
            self._again()

        self.calls.start(job, then)

    def _failed(self, exc: Exception) -> None:
        self.status.setText("Cancelled." if isinstance(exc, Cancelled) else f"Failed: {exc}")
        self._again()

    def _again(self) -> None:
        if self._rerun and not self.calls.running:
            self._rerun = False
            self.find()

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)  # busy indicator until the first progress report
        self.cancel_button.setEnabled(busy)
        for button in (self.find_button, self.keep_button, self.compare_button, self.not_dups_button,
                       self.trash_button, self.move_button, self.undo_button, self.reset_button):
            button.setEnabled(not busy)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _command(self, name: str) -> None:
        if self.calls.running:
            return
        {"mark": self.toggle_marks, "keep": self.keep_current, "compare": self.compare,
         "trash": lambda: self.act("trash"), "next": lambda: self.tree.step_group(1),
         "previous": lambda: self.tree.step_group(-1)}[name]()

    def _with_record(self, action) -> None:
        group, image_id = self.tree.current()
        if image_id is not None:
            action(next(m.record for m in self.review.groups[group].members if m.record.id == image_id))

    def _add_reference(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Reference Folder (never marked, never moved)")
        if folder:
            self.reference_folders = [*(self.reference_folders or self.engine.settings.reference_folder_list()),
                                      folder]
            self._show_references()
            self.find()

    def _show_references(self) -> None:
        folders = (self.reference_folders if self.reference_folders is not None
                   else self.engine.settings.reference_folder_list())
        self.reference_label.setText("Reference folders: " + (", ".join(folders) if folders else "none"))

    def done(self, result: int) -> None:
        self._rerun = False
        self.calls.stop()
        if self.compare_view is not None:
            self.compare_view.close()
        super().done(result)
