"""The text filter's word index: substring matches per field, never across fields or rows; changed rows."""

from __future__ import annotations

import numpy as np

from core.store.word_index import SEP, WordIndex


def test_words_match_within_one_field_of_one_row():
    index = WordIndex(np.array([4, 0, 2]), [SEP.join(["img7.jpg", "/photos/a"]), "cat.png", SEP.join(["x", "ab"])])
    assert list(np.flatnonzero(index.matching(["img7"], 6))) == [4]
    assert list(np.flatnonzero(index.matching(["photos", ".jpg"], 6))) == [4]  # two fields, both words
    assert list(np.flatnonzero(index.matching(["jpg/photos"], 6))) == []  # never across fields
    assert list(np.flatnonzero(index.matching(["pngx"], 6))) == []  # nor across rows
    assert list(np.flatnonzero(index.matching(["a"], 6))) == [0, 2, 4]
    assert not index.matching(["a\x00b"], 6).any()
    assert list(np.flatnonzero(index.matching(["img7"], 3))) == []  # slots past the mapped rows


def test_changed_rows_override_the_base():
    index = WordIndex(np.array([0, 1]), ["cat.png", "dog.png"])
    index.set(0, "bird.png")
    index.set(1, None)
    index.set(2, "cat2.png")
    assert index.changed == 3
    assert list(np.flatnonzero(index.matching(["cat"], 3))) == [2]
    assert list(np.flatnonzero(index.matching(["png"], 3))) == [0, 2]


def test_an_empty_index():
    assert not WordIndex(np.zeros(0, np.int64), []).matching(["x"], 0).any()
