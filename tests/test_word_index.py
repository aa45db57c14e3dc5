"""The text filter's word index: substring matches per field, never across fields or rows; changed rows."""

from __future__ import annotations

import numpy as np
import pytest

from core.store.word_index import SEP, WordIndex


def test_words_match_within_one_field_of_one_row():
    texts = [SEP.join(["img7.jpg", "/photos/a"]), "cat.png", SEP.join(["x", "ab"])]
    index = WordIndex.from_texts(np.array([4, 0, 2]), texts)
    assert list(np.flatnonzero(index.matching(["img7"], 6))) == [4]
    assert list(np.flatnonzero(index.matching(["photos", ".jpg"], 6))) == [4]  # two fields, both words
    assert list(np.flatnonzero(index.matching(["jpg/photos"], 6))) == []  # never across fields
    assert list(np.flatnonzero(index.matching(["pngx"], 6))) == []  # nor across rows
    assert list(np.flatnonzero(index.matching(["a"], 6))) == [0, 2, 4]
    assert not index.matching(["a\x00b"], 6).any()
    assert list(np.flatnonzero(index.matching(["img7"], 3))) == []  # slots past the mapped rows


def test_changed_rows_override_the_base():
    index = WordIndex.from_texts(np.array([0, 1]), ["cat.png", "dog.png"])
    index.set(0, "bird.png")
    index.set(1, None)
    index.set(2, "cat2.png")
    assert index.changed == 3
    assert list(np.flatnonzero(index.matching(["cat"], 3))) == [2]
    assert list(np.flatnonzero(index.matching(["png"], 3))) == [0, 2]


def test_an_empty_index():
    assert not WordIndex.from_texts(np.zeros(0, np.int64), []).matching(["x"], 0).any()


def test_non_ascii_words_match_by_character_and_every_occurrence_counts():
    texts = [SEP.join(["zürich.jpg", "/photos/straße"]), "ürü", "aaaa", SEP.join(["ü", "x"])]
    index = WordIndex.from_texts(np.arange(4), texts)
    assert list(np.flatnonzero(index.matching(["ü"], 4))) == [0, 1, 3]
    assert list(np.flatnonzero(index.matching(["straße"], 4))) == [0]
    assert list(np.flatnonzero(index.matching(["aa"], 4))) == [2]  # overlapping occurrences
    assert list(np.flatnonzero(index.matching(["üx"], 4))) == []
    assert not index.matching(["\udcff"], 4).any()  # a lone surrogate matches nothing and raises nothing


def test_the_joined_base_the_store_reads_equals_the_texts():
    texts = ["a\x00bc", "", "dé"]
    encoded = [t.encode() for t in texts]
    joined = WordIndex(np.array([5, 6, 7]), np.array([len(e) for e in encoded]), b"\x00".join(encoded))
    assert list(np.flatnonzero(joined.matching(["é"], 8))) == [7]
    assert list(np.flatnonzero(joined.matching(["bc"], 8))) == [5]
    with pytest.raises(ValueError):
        WordIndex(np.array([0]), np.array([3]), b"ab")
