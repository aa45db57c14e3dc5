"""The text filter over a million rows: every slot's folded text in one UTF-8 byte string, searched with NumPy.

A row's text is its folded fields (core.paths.fold of every name and folder) joined by NUL, and rows are
joined by NUL too. No field holds NUL (core.store.base.validate) and a word with NUL matches nothing, so a
word is found in the big string exactly where it is a substring of one field of one row. Matching UTF-8
bytes is matching characters: UTF-8 is self-synchronising, so a valid UTF-8 word only matches a valid
text at character boundaries (RFC 3629 §3).

A word is matched with a few whole-array NumPy passes, whatever the number of hits: the positions of the
word's rarest byte (a histogram kept from the build), then, for each other byte of the word, the candidates
whose byte at that offset agrees. At 1M images (~37 MB of text) that is tens of milliseconds for a word in
every row or in none; a Python loop over the hits (`bytes.find` hit after hit) would cost ~1.5 µs per hit.

The store reads the base in one SQLite query that concatenates inside SQLite (`group_concat`), so no Python
object is made per row: about a second at 1M images, once per process (bench/embedded_index.py).
"""

from __future__ import annotations

import numpy as np

SEP = "\x00"


class WordIndex:
    """Slots' texts for substring matching: a base built in one go, plus the texts changed since.

    `slots`: int64 (n,), the rows' slots; `lengths`: int64 (n,), the UTF-8 byte length of each row's text;
    `text`: the n texts (NUL-joined folded fields, UTF-8) joined by NUL, in the same order. Not thread-safe.
    """

    def __init__(self, slots: np.ndarray, lengths: np.ndarray, text: bytes):
        self._slots = np.asarray(slots, np.int64)
        lengths = np.asarray(lengths, np.int64)
        self._text = np.frombuffer(text, np.uint8)
        if len(self._text) != max(0, int(lengths.sum()) + len(lengths) - 1):
            raise ValueError("the lengths do not add up to the joined text")
        self._starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64) if len(lengths) \
            else np.zeros(0, np.int64)
        self._counts = np.bincount(self._text, minlength=256)  # to anchor each word on its rarest byte
        self._changed: dict[int, str | None] = {}  # slot -> its new text, or None when it left

    @classmethod
    def from_texts(cls, slots: np.ndarray, texts: list[str]) -> WordIndex:
        """A base from the rows' texts (str, NUL-joined folded fields), one per slot in `slots`."""
        encoded = [t.encode("utf-8") for t in texts]
        return cls(slots, np.fromiter(map(len, encoded), np.int64, len(encoded)), SEP.encode().join(encoded))

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
            hits = self._positions(word.encode("utf-8", "surrogatepass"))
            if len(hits):
                slots = self._slots[np.searchsorted(self._starts, hits, "right") - 1]
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

    def _positions(self, needle: bytes) -> np.ndarray:
        """Start offsets (int64) of every occurrence of `needle` in the base text."""
        text, size = self._text, len(needle)
        if size == 0 or size > len(text):
            return np.zeros(0, np.int64)
        anchor = min(range(size), key=lambda i: self._counts[needle[i]])
        starts = np.flatnonzero(text == needle[anchor]) - anchor
        starts = starts[(starts >= 0) & (starts <= len(text) - size)]
        for offset, byte in enumerate(needle):
            if offset != anchor and len(starts):
                starts = starts[text[starts + offset] == byte]
        return starts
