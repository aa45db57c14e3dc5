"""The duplicates window's calls into the engine, in one place.

The Engine's duplicates methods (issue 15: duplicate_groups, plan_duplicates, act_on_duplicates,
undo_last_action, mark_not_duplicates, reset_decisions) are used when the engine has them; until then the
same calls go to core.duplicates, core.file_actions and core.store.decisions directly. Everything here runs
in a worker thread except `plan`, which is pure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from core.duplicates import Group, find_groups
from core.file_actions import Plan, Result, execute, plan, undo_last
from core.store.decisions import decisions_for

Progress = Callable[[int, int], None]  # (done, total)


class DuplicatesEngine:
    def __init__(self, engine):
        self.engine = engine

    def groups(self, threshold: float, reference_folders: Sequence[str] | None, progress: Progress | None = None,
               cancel: threading.Event | None = None) -> list[Group]:
        """Groups at cosine similarity >= threshold; reference_folders None: the settings' ones.
        Raises core.duplicates.Cancelled, StoreError."""
        if hasattr(self.engine, "duplicate_groups"):
            return self.engine.duplicate_groups(threshold, reference_folders=reference_folders, progress=progress,
                                                cancel=cancel)
        settings = self.engine.settings
        decisions = decisions_for(self.engine.store)
        try:
            return find_groups(self.engine.store, threshold, progress=progress, cancel=cancel, decisions=decisions,
                               reference_folders=settings.reference_folder_list() if reference_folders is None
                               else reference_folders, keeper_rules=settings.keeper_rule_list())
        finally:
            decisions.close()

    def plan(self, groups: Sequence[Group], marks: Iterable[str], action: str = "trash",
             move_to: str | None = None) -> Plan:
        """The plan for the user's marks (image ids). Raises ValueError (e.g. every copy of a group marked)."""
        if hasattr(self.engine, "plan_duplicates"):
            return self.engine.plan_duplicates(groups, action=action, move_to=move_to, marks=marks)
        return plan(groups, action=action, move_to=move_to, marks=marks)

    def act(self, to_do: Plan, progress: Progress | None = None, cancel: threading.Event | None = None) -> Result:
        """Carry out the plan, journaled in the data folder; the index is updated file by file."""
        if hasattr(self.engine, "act_on_duplicates"):
            return self.engine.act_on_duplicates(to_do, progress=progress, cancel=cancel)
        return execute(to_do, self.engine.store, self.engine.settings.data_dir, progress=progress, cancel=cancel)

    def undo(self) -> Result:
        if hasattr(self.engine, "undo_last_action"):
            return self.engine.undo_last_action()
        return undo_last(self.engine.settings.data_dir, self.engine.store)

    def not_duplicates(self, ids: Iterable[str]) -> int:
        if hasattr(self.engine, "mark_not_duplicates"):
            return self.engine.mark_not_duplicates(ids)
        return self._with_decisions(lambda d: d.mark_not_duplicates(ids))

    def reset_decisions(self) -> None:
        if hasattr(self.engine, "reset_decisions"):
            self.engine.reset_decisions()
        else:
            self._with_decisions(lambda d: d.reset())

    def _with_decisions(self, call):
        decisions = decisions_for(self.engine.store)
        try:
            return call(decisions)
        finally:
            decisions.close()
