"""The duplicates window's state without Qt: the groups found, the keeper of each, and the user's marks.

Marks (image ids) start on the non-kept `exact` and `near-duplicate` members, as core.file_actions.plan
would act on them by default; `similar` members are never marked for the user. A member in a reference
folder and the keeper itself can never be marked. "Keep this" makes another member the keeper: kinds and
scores are relative to the keeper the engine chose (core.duplicates), so the engine's keeper takes the new
keeper's kind and score (both relations are symmetric) and the others keep theirs (relative to the
engine's keeper: exact stays exact; near-duplicate and similar are approximations there).

The user's choices outlive a new search (after an action, a threshold change, Reset Decisions): a Review
made with `earlier` keeps each "keep this" whose image is still in a group and each mark or unmark the
user made on an image still shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.duplicates import KEEPER, Group, Member

DEFAULT_MARKED = frozenset({"exact", "near-duplicate"})
CHOSEN_REASON = "chosen by you"


@dataclass(frozen=True)
class Row:
    """One member as shown: `kind` and `score` relative to the group's current keeper."""

    member: Member
    kind: str  # KEEPER or a member kind
    score: float
    marked: bool
    markable: bool

    @property
    def id(self) -> str:
        return self.member.record.id


class Review:
    def __init__(self, groups: list[Group], earlier: Review | None = None):
        self.groups = list(groups)  # as found, in the engine's order; "not duplicates" removes one
        self._keeper = [g.keeper.record.id for g in self.groups]  # the current keeper of each group
        self._marks = {m.record.id for g in self.groups for m in g.others
                       if m.kind in DEFAULT_MARKED and not m.reference}
        self._chosen: set[str] = set()  # image ids the user chose to keep
        self._set_by_user: dict[str, bool] = {}  # image id -> marked, as the user last set it
        if earlier is not None:
            self._carry(earlier)

    def rows(self, group: int) -> list[Row]:
        """The members of group `group`, the current keeper first, then as the engine ordered them."""
        found = self.groups[group]
        keeper_id = self._keeper[group]
        chosen = next(m for m in found.members if m.record.id == keeper_id)
        # A chosen exact copy of another member (copy_of) relates to the engine's keeper as that member does,
        # and that member is an exact copy of it.
        lead = next((m for m in found.members if m.record.id == chosen.copy_of), chosen)
        rows = [Row(chosen, KEEPER, 1.0, False, False)]
        for m in found.members:
            if m is chosen:
                continue
            if m is found.keeper:
                kind, score = lead.kind, lead.score
            else:
                kind, score = ("exact" if m is lead else m.kind), m.score
            rows.append(Row(m, kind, score, m.record.id in self._marks, not m.reference))
        return rows

    def reason(self, group: int) -> str:
        """Why the keeper is kept: the engine's rule (core.duplicates.RULE_REASONS) or CHOSEN_REASON."""
        found = self.groups[group]
        return found.reason if self._keeper[group] == found.keeper.record.id else CHOSEN_REASON

    def keeper(self, group: int) -> Member:
        return self.rows(group)[0].member

    def keep(self, group: int, image_id: str) -> None:
        """Make `image_id` the keeper of `group`: its mark goes, and the member it replaces (and the member it is
        an exact copy of, if any) is marked when its kind, now relative to the new keeper, is one marked by
        default. KeyError when it is not in the group."""
        if not any(m.record.id == image_id for m in self.groups[group].members):
            raise KeyError(image_id)
        replaced = self._keeper[group]
        self._keeper[group] = image_id
        self._chosen.discard(replaced)
        self._chosen.add(image_id)
        self._marks.discard(image_id)
        copy_of = next(m.copy_of for m in self.groups[group].members if m.record.id == image_id)
        for row in self.rows(group):  # the old keeper, and the member the new one is an exact copy of
            if row.id in (replaced, copy_of) and row.markable and row.kind in DEFAULT_MARKED:
                self._marks.add(row.id)

    def set_mark(self, group: int, image_id: str, marked: bool) -> bool:
        """Mark or unmark a member; False (and nothing changes) for the keeper or a reference-folder file."""
        row = next(r for r in self.rows(group) if r.id == image_id)
        if not row.markable:
            return False
        (self._marks.add if marked else self._marks.discard)(image_id)
        self._set_by_user[image_id] = marked
        return True

    def toggle(self, group: int, image_id: str) -> bool:
        return self.set_mark(group, image_id, image_id not in self._marks)

    def marks(self) -> list[str]:
        """The marked image ids of the groups still shown, group by group (never a keeper: `keep` unmarks it
        and `set_mark` refuses it)."""
        return [m.record.id for g in self.groups for m in g.members if m.record.id in self._marks]

    def marked_groups(self) -> list[Group]:
        """The groups with at least one mark (what core.file_actions.plan gets with `marks`)."""
        marks = set(self.marks())
        return [g for g in self.groups if any(m.record.id in marks for m in g.members)]

    def marked_bytes(self) -> int:
        marks = set(self.marks())
        return sum(m.record.size for g in self.groups for m in g.members if m.record.id in marks)

    def _carry(self, earlier: Review) -> None:
        """Apply `earlier`'s keep-this choices, then its user's marks, to the groups found now."""
        for n, found in enumerate(self.groups):  # a group holding two chosen images keeps the first shown
            chosen = next((m.record.id for m in found.members if m.record.id in earlier._chosen), None)
            if chosen is not None:
                self.keep(n, chosen)
        where = {m.record.id: n for n, g in enumerate(self.groups) for m in g.members}
        for image_id, marked in earlier._set_by_user.items():
            if image_id in where:
                self.set_mark(where[image_id], image_id, marked)

    def drop(self, group: int) -> Group:
        """Take a group off the list (after "not duplicates"); its marks go with it."""
        found = self.groups.pop(group)
        del self._keeper[group]
        self._marks -= {m.record.id for m in found.members}
        return found
