"""The append-only vector file: committed rows only, torn appends dropped, growth seen without a reload."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.store.vector_file import HEADER, VectorFile, VectorFileError, compact, vector_path

DIMS = 16


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)


def test_append_then_map_reads_the_rows_back(tmp_path):
    f = VectorFile(vector_path(tmp_path, 0), DIMS, create=True)
    assert f.append(rows(5), at=0) == range(0, 5)
    assert f.append(rows(3, 1), at=5) == range(5, 8)
    np.testing.assert_array_equal(f.map(8), np.concatenate([rows(5), rows(3, 1)]))
    assert isinstance(f.matrix.base, np.memmap) and not f.matrix.flags.writeable
    assert (vector_path(tmp_path, 0).stat().st_size - HEADER) == 8 * DIMS * 4


def test_a_torn_append_is_never_read_and_is_cut_off_by_the_next_write(tmp_path):
    path = vector_path(tmp_path, 0)
    f = VectorFile(path, DIMS, create=True)
    f.append(rows(4), at=0)  # committed: 4
    with open(path, "ab") as raw:  # a crashed writer: one and a half rows, never committed
        raw.write(rows(2, 9).tobytes()[: DIMS * 4 * 3 // 2])
    reopened = VectorFile(path, DIMS)
    np.testing.assert_array_equal(reopened.map(4), rows(4))
    reopened.append(rows(2, 1), at=4)
    assert (path.stat().st_size - HEADER) == 6 * DIMS * 4
    np.testing.assert_array_equal(reopened.map(6)[4:], rows(2, 1))


def test_another_process_commit_is_seen_by_mapping_the_tail(tmp_path):
    path = vector_path(tmp_path, 0)
    reader = VectorFile(path, DIMS, create=True)
    reader.append(rows(3), at=0)
    before = reader.map(3)
    script = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from core.store.vector_file import VectorFile
        f = VectorFile(Path({str(path)!r}), {DIMS})
        f.append(np.full((2, {DIMS}), 7, np.float32), at=3)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1])
    assert reader.rows == 3  # not committed to this reader yet
    grown = reader.map(5)
    np.testing.assert_array_equal(grown[:3], before)
    assert (grown[3:] == 7).all()


def test_bad_files_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(VectorFileError, match="missing"):
        VectorFile(tmp_path / "nope.f32", DIMS)
    (tmp_path / "junk.f32").write_bytes(b"not a vector file at all" * 4)
    with pytest.raises(VectorFileError, match="not an image-search vector file"):
        VectorFile(tmp_path / "junk.f32", DIMS)
    VectorFile(vector_path(tmp_path, 0), DIMS, create=True).append(rows(2), at=0)
    with pytest.raises(VectorFileError, match="holds 16-d vectors"):
        VectorFile(vector_path(tmp_path, 0), 32)
    with pytest.raises(VectorFileError, match="references 3"):
        VectorFile(vector_path(tmp_path, 0), DIMS).map(3)
    with pytest.raises(ValueError, match="shape"):
        VectorFile(vector_path(tmp_path, 0), DIMS).append(np.zeros((1, 8), np.float32), at=2)


def test_compact_keeps_the_live_rows_in_the_order_given(tmp_path):
    f = VectorFile(vector_path(tmp_path, 0), DIMS, create=True)
    f.append(rows(10), at=0)
    f.map(10)
    new = compact(f, np.array([7, 2, 5]), vector_path(tmp_path, 1))
    np.testing.assert_array_equal(new.matrix, rows(10)[[7, 2, 5]])
    np.testing.assert_array_equal(VectorFile(vector_path(tmp_path, 1), DIMS).map(3), rows(10)[[7, 2, 5]])
    assert not vector_path(tmp_path, 1).with_suffix(".tmp").exists()
