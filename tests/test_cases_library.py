"""Cases 01, 02 and 10 of ../shared/cases, run as their CASE.md says: the CLI in a real process, on both
backends, with the inputs copied from the case folder (and the parts git cannot keep made here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.es_fixtures"]

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def case(name: str) -> Path:
    folder = CASES / name
    if not folder.is_dir():
        pytest.skip(f"the shared case {name} is not here ({folder})")
    return folder


@pytest.fixture(params=["embedded", "elasticsearch"])
def cli(request, tmp_path):
    """Run the CLI (`python -m core`) on a fresh index of each backend; returns CompletedProcess."""
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    if request.param == "elasticsearch":
        base += ["--backend", "elasticsearch", "--es-url", request.getfixturevalue("es_url"),
                 "--es-index", request.getfixturevalue("es_alias")]

    def run(*args: str | bytes, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "core", *base, *args], capture_output=True, timeout=300,
                             cwd=Path(__file__).resolve().parents[1])
        assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
        if check:
            assert out.returncode == 0, out.stderr.decode(errors="replace")
        return out

    return run


def copy_input(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for folder, _, files in os.walk(dst):  # the shared inputs are read-only
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return dst


def test_case_01_a_name_that_is_not_utf8(cli, tmp_path):
    src = case("01-latin1-filename")
    t = copy_input(src / "input", tmp_path / "t")
    latin1 = os.fsencode(t) + b"/caf\xe9_latin1.jpg"
    shutil.copy(src / "cafe_latin1.jpg.in", latin1)
    report = json.loads(cli("index", "--json", os.fsencode(t)).stdout)
    assert (report["indexed"], report["skipped"], report["count"]) == (2, [], 2)
    assert json.loads(cli("info", "--json").stdout)["count"] == 2

    # argv carries the raw bytes; JSON gives display text plus the bytes in base64.
    similar = json.loads(cli("similar", latin1, "-k", "2", "--json").stdout)
    first = similar["results"][0]
    assert first["path"] == os.fsencode(t).decode() + "/caf\ufffd_latin1.jpg" and first["score"] > 0.999
    import base64

    assert base64.b64decode(first["path_bytes"]) == latin1 and base64.b64decode(similar["query_bytes"]) == latin1
    assert "path_bytes" not in similar["results"][1]
    text = cli("search", latin1, "-k", "1").stdout.decode("utf-8")  # legible: a replacement character
    assert "caf\ufffd_latin1.jpg" in text
    again = json.loads(cli("index", "--json", os.fsencode(t)).stdout)
    assert (again["indexed"], again["unchanged"]) == (0, 2)


def test_case_01_kinds_nfd_nfc_newline_and_a_long_path(cli, tmp_path):
    import unicodedata

    src = case("01-latin1-filename") / "input" / "ok.jpg"
    t = tmp_path / "t"
    deep = t
    while len(str(deep)) < 3000:
        deep = deep / ("d" * 120)
    names = [t / unicodedata.normalize("NFC", "café.jpg"), t / unicodedata.normalize("NFD", "Zürich.jpg"),
             t / "new\nline.jpg", deep / "deep.jpg"]
    for n, path in enumerate(names):
        path.parent.mkdir(parents=True, exist_ok=True)
        data = bytearray(src.read_bytes())
        data[-3] ^= n  # distinct files (not hard links, not byte-identical copies)
        path.write_bytes(bytes(data))
    report = json.loads(cli("index", "--json", str(t)).stdout)
    assert report["indexed"] == 4 and report["count"] == 4 and report["skipped"] == []
    text = cli("similar", str(names[2]), "-k", "4").stdout.decode()
    assert "new\\nline.jpg" in text and len(text.splitlines()) == 5  # one line per file
    found = json.loads(cli("similar", str(names[1]), "-k", "4", "--text", "ZURICH", "--json").stdout)
    assert found["results"] == []  # ü is not u
    found = json.loads(cli("similar", str(names[0]), "-k", "4", "--text", "zürich", "--json").stdout)
    assert [r["name"] for r in found["results"]] == [unicodedata.normalize("NFD", "Zürich.jpg")]
    deep_hits = json.loads(cli("similar", str(names[3]), "-k", "4", "--json").stdout)["results"]
    assert str(names[3]) in [h["path"] for h in deep_hits]


def test_case_02_a_hard_link_is_one_image(cli, tmp_path):
    t = copy_input(case("02-hardlink-twice") / "input", tmp_path / "t")
    (t / "best").mkdir()
    os.link(t / "2023" / "IMG_0001.jpg", t / "best" / "IMG_0001.jpg")
    report = json.loads(cli("index", "--json", str(t)).stdout)
    assert report["indexed"] == 2 and report["count"] == 2
    hits = json.loads(cli("search", str(t / "2023" / "IMG_0001.jpg"), "-k", "3", "--json").stdout)["results"]
    assert len(hits) == 2 and hits[0]["paths"] == [str(t / "2023" / "IMG_0001.jpg"), str(t / "best" / "IMG_0001.jpg")]
    assert json.loads(cli("duplicates", "--threshold", "0.9999", "--json").stdout)["groups"] == []
    # A file under two roots is one image too.
    again = json.loads(cli("index", "--json", str(t), str(t / "2023")).stdout)
    assert (again["indexed"], again["unchanged"], again["count"]) == (0, 2, 2)


def test_case_02_a_bind_mount_is_one_image(cli, tmp_path):
    t = copy_input(case("02-hardlink-twice") / "input", tmp_path / "t")
    (t / "mirror").mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", t / "2023", t / "mirror"]).returncode:
        pytest.skip("bind mounts need root (mount --bind)")
    try:
        report = json.loads(cli("index", "--json", str(t)).stdout)
        assert report["indexed"] == 2 and report["count"] == 2
    finally:
        subprocess.run(["umount", t / "mirror"], check=True)


def test_case_10_an_empty_mount_point_keeps_the_drives_images(cli, tmp_path):
    t = copy_input(case("10-empty-mountpoint-prune") / "input" / "usbdisk", tmp_path / "usbdisk")
    first = json.loads(cli("index", "--json", str(t)).stdout)
    assert first["indexed"] == 3
    (t / "Photos").rename(tmp_path / "unplugged")
    second = cli("index", str(t))
    assert b"3 missing images kept" in second.stdout and b"--prune-missing" in second.stdout
    assert json.loads(cli("info", "--json").stdout)["count"] == 3
    (tmp_path / "unplugged").rename(t / "Photos")
    third = json.loads(cli("index", "--json", str(t)).stdout)
    assert (third["indexed"], third["unchanged"], third["removed"], third["missing_kept"]) == (0, 3, 0, [])


def test_case_10_with_a_real_mount(cli, tmp_path):
    src = case("10-empty-mountpoint-prune") / "input" / "usbdisk"
    t = tmp_path / "usbdisk"
    t.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "none", t]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        copy_input(src / "Photos", t / "Photos")
        assert json.loads(cli("index", "--json", str(t)).stdout)["indexed"] == 3
    finally:
        subprocess.run(["umount", t], check=True)
    second = json.loads(cli("index", "--json", str(t)).stdout)
    assert second["removed"] == 0 and second["count"] == 3
    assert [(k["root"], k["count"]) for k in second["missing_kept"]] == [(str(t), 3)]
    subprocess.run(["mount", "-t", "tmpfs", "none", t], check=True)
    try:  # the drive back (its files copied anew: new inodes and times, the same bytes)
        copy_input(src / "Photos", t / "Photos")
        third = json.loads(cli("index", "--json", str(t)).stdout)
        assert (third["indexed"], third["unchanged"], third["removed"], third["missing_kept"]) == (0, 3, 0, [])
        fourth = json.loads(cli("index", "--json", str(t)).stdout)
        assert (fourth["indexed"], fourth["unchanged"]) == (0, 3)
    finally:
        subprocess.run(["umount", t], check=True)
    pruned = json.loads(cli("index", "--json", "--prune-missing", str(t)).stdout)
    assert pruned["removed"] == 3 and pruned["count"] == 0
