"""The text filter over a million rows: every slot's folded text in one string, searched with `str.find`.

A row's text is its folded fields (core.paths.fold of every name and folder) joined by NUL, and rows are
joined by NUL too. No field holds NUL (core.store.base.validate) and a word with NUL matches nothing, so a
word is found in the big string exactly where it is a substring of one field of one row. `str.find` runs
at memory speed in C, so a selective word costs one pass over the text (~30 MB at 1M images) and a
broad one a few microseconds per row it is in; a Python loop over a million rows would cost a second.
"""

from __future__ import annotations

import numpy as np

SEP = "\x00"


class WordIndex:
    """Slots' texts for substring matching: a base built in one go, plus the texts changed since.

    `slots`: int64 (n,) and `texts`: the n rows' NUL-joined folded fields. Not thread-safe on its own.
    """

    def __init__(self, slots: np.ndarray, texts: list[str]):
        self._slots = np.asarray(slots, np.int64)
        self._text = SEP + SEP.join(texts) + SEP
        lengths = np.fromiter((len(t) + 1 for t in texts), np.int64, len(texts))
        self._starts = np.concatenate([[1], 1 + np.cumsum(lengths)])[:-1] if len(texts) else np.zeros(0, np.int64)
        self._changed: dict[int, str | None] = {}  # slot -> its new text, or None when it left

    @property
    def changed(self) -> int:
        """How many slots changed since the base was built (the owner rebuilds when this grows large)."""
        return len(self._changed)

    def set(self, slot: int, text: str | None) -> None:
        """Give `slot` a new text (a new row, or new paths), or None to forget it."""
        self._changed[slot] = text

    def matching(self, words: list[str], rows: int) -> np.ndarray:
        """A bool mask (rows,) of the slots whose text holds every word (already folded) as a substring."""
        mask = np.ones(rows, bool)
        if any(SEP in w for w in words):
            return np.zeros(rows, bool)
        for word in words:
            found = np.zeros(rows, bool)
            hits, pos = [], self._text.find(word)
            while pos != -1:
                hits.append(pos)
                pos = self._text.find(word, pos + 1)
            if hits:
                slots = self._slots[np.searchsorted(self._starts, np.array(hits), "right") - 1]
                found[slots[slots < rows]] = True
            mask &= found
        if self._changed:
            changed = np.fromiter(self._changed, np.int64, len(self._changed))
            inside = changed < rows
            mask[changed[inside]] = False
            for slot, text in self._changed.items():
                if slot < rows and text is not None and all(w in text for w in words):
                    mask[slot] = True
        return mask
