"""`image-search duplicates` and `image-search undo`, run as users run them: a real process on real files, the
real VGG16 graph (deterministic random weights), both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.corpus import rotated_library

pytest_plugins = ["tests.es_fixtures"]
REPO = Path(__file__).resolve().parents[1]
# Random weights do not tell photos apart as ImageNet's do (two different test photos reach 0.993); a
# quality-60 copy stays above this (tests/test_duplicates.py, test_real_files).
THRESHOLD = "0.995"
IMAGE_FIELDS = {"path", "id", "kind", "score", "size", "width", "height"}


def run(base: list[str], *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a process of its own with no terminal on stdin (as in a script or CI)."""
    return subprocess.run([sys.executable, "-m", "core", *args, *base], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=REPO, timeout=300)


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


@pytest.fixture(params=["embedded", "elasticsearch"])
def base(request, tmp_path) -> list[str]:
    """Global options of one fresh index on either backend (Elasticsearch: the shared test server)."""
    options = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    if request.param == "elasticsearch":
        options += ["--backend", "elasticsearch", "--es-url", request.getfixturevalue("es_url"),
                    "--es-index", request.getfixturevalue("es_alias")]
    return options


def make_library(photo_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """An original in a reference folder; in the library an exact copy, a quality-60 re-encoded copy and
    another photo."""
    lib, ref = tmp_path / "lib", tmp_path / "ref"
    (lib / "sub").mkdir(parents=True)
    ref.mkdir()
    original = photo_dir / "astronaut.jpg"
    files = {"ref": ref / "astronaut.jpg", "exact": lib / "exact.jpg", "q60": lib / "sub" / "q60.jpg",
             "other": lib / "coffee.jpg"}
    for name in ("ref", "exact"):
        files[name].write_bytes(original.read_bytes())
    Image.open(original).save(files["q60"], quality=60)
    files["other"].write_bytes((photo_dir / "coffee.jpg").read_bytes())
    return files


def groups_of(base: list[str], *args: str) -> dict:
    out = ok(run(base, "duplicates", "--threshold", THRESHOLD, "--json", *args))
    return json.loads(out.stdout)  # ONE object: nothing else on stdout


def test_list_move_without_confirmation_move_and_undo(base, photo_dir, tmp_path):
    files = make_library(photo_dir, tmp_path)
    ref, dest = tmp_path / "ref", tmp_path / "dest"
    ok(run(base, "index", str(tmp_path / "lib"), str(ref)))

    body = groups_of(base, "--reference", str(ref))
    assert body["threshold"] == float(THRESHOLD)
    [group] = body["groups"]
    assert group["keep"] == str(files["ref"]) and group["reason"] == "in a reference folder"
    assert group["kind"] == "near-duplicate"
    assert all(set(image) >= IMAGE_FIELDS for image in group["images"])
    kinds = {image["path"]: image["kind"] for image in group["images"]}
    assert kinds == {str(files["ref"]): "keeper", str(files["exact"]): "exact", str(files["q60"]): "near-duplicate"}
    assert group["images"][0]["score"] == 1.0 and group["images"][0]["reference"] is True

    text = run(base, "duplicates", "--threshold", THRESHOLD, "--reference", str(ref), "--move-to", str(dest))
    assert text.returncode == 3, text.stderr  # no terminal, no --yes: nothing done
    assert f"keep     {files['ref']}  (in a reference folder)" in text.stdout
    assert "Move 2 files" in text.stdout and "not done" in text.stdout
    assert not dest.exists() and files["exact"].exists() and files["q60"].exists()

    moved = run(base, "duplicates", "--threshold", THRESHOLD, "--reference", str(ref), "--move-to", str(dest),
                "--yes")
    ok(moved)
    assert "Move 2 files" in moved.stdout and "done for 2, 0 skipped" in moved.stdout
    assert not files["exact"].exists() and not files["q60"].exists() and files["ref"].exists()
    # Paths are kept relative to the moved files' common folder (lib).
    assert (dest / "exact.jpg").is_file() and (dest / "sub" / "q60.jpg").is_file()
    [group] = groups_of(base, "--reference", str(ref))["groups"]  # the index follows the files
    assert sorted(i["path"] for i in group["images"]) == sorted(
        [str(files["ref"]), str(dest / "exact.jpg"), str(dest / "sub" / "q60.jpg")])

    undone = ok(run(base, "undo"))
    assert "2 files back in place, 0 skipped" in undone.stdout
    assert files["exact"].is_file() and files["q60"].is_file() and not (dest / "exact.jpg").exists()
    [group] = groups_of(base, "--reference", str(ref))["groups"]
    assert sorted(i["path"] for i in group["images"]) == sorted(str(files[n]) for n in ("ref", "exact", "q60"))
    assert "nothing to undo" in ok(run(base, "undo")).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="undo from the trash is Linux only")
def test_trash_exact_copies_only_then_undo(photo_dir, tmp_path):
    """--kind exact narrows the action to byte-identical copies; the trash is an isolated XDG trash."""
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    files = make_library(photo_dir, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "xdg")}  # never the user's trash
    ok(run(base, "index", str(tmp_path / "lib"), str(tmp_path / "ref")))

    out = ok(run(base, "duplicates", "--threshold", THRESHOLD, "--reference", str(tmp_path / "ref"), "--trash",
                 "--kind", "exact", "--yes", "--json", env=env))
    body = json.loads(out.stdout)
    assert body["result"]["done"] == [str(files["exact"])] and body["result"]["skipped"] == []
    assert body["result"]["bytes"] == files["ref"].stat().st_size
    assert "Move 1 file" in out.stderr  # --json keeps stdout for the one object
    assert not files["exact"].exists() and files["q60"].exists()
    assert [p.name for p in (home / "xdg" / "Trash" / "files").iterdir()] == ["exact.jpg"]

    ok(run(base, "undo", env=env))
    assert files["exact"].read_bytes() == files["ref"].read_bytes()
    [group] = groups_of(base)["groups"]
    assert str(files["exact"]) in {i["path"] for i in group["images"]}


def test_nothing_to_do_and_bad_settings(photo_dir, tmp_path):
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "coffee.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    ok(run(base, "index", str(tmp_path / "one")))
    out = ok(run(base, "duplicates", "--threshold", THRESHOLD, "--trash"))
    assert "0 groups" in out.stdout and "nothing to do" in out.stdout
    bad = run(base, "duplicates", env={"IMAGE_SEARCH_KEEPER_RULES": "size,prettiest"})
    assert bad.returncode == 1 and "unknown keeper rule 'prettiest'" in bad.stderr
    flag = run(base, "duplicates", "--keeper-rules", "oldest,biggest")
    assert flag.returncode == 1 and "unknown keeper rule 'biggest'" in flag.stderr


def answering(base: list[str], answer: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI with a terminal (a pseudo-terminal) on stdin, to which `answer` is typed."""
    import pty

    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")  # buffered by the terminal until input() reads it
        return subprocess.run([sys.executable, "-m", "core", *args, *base], capture_output=True, text=True,
                              stdin=terminal, cwd=REPO, timeout=300)
    finally:
        os.close(controller)
        os.close(terminal)


def test_confirmation_on_a_terminal(photo_dir, tmp_path):
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    files = make_library(photo_dir, tmp_path)
    dest = tmp_path / "dest"
    ok(run(base, "index", str(tmp_path / "lib"), str(tmp_path / "ref")))
    action = ("duplicates", "--threshold", THRESHOLD, "--reference", str(tmp_path / "ref"), "--move-to", str(dest))

    declined = ok(answering(base, "n", *action))
    assert "Move 2 files" in declined.stdout and "? [y/N]" in declined.stdout
    assert files["exact"].exists() and not dest.exists()
    accepted = ok(answering(base, "y", *action))
    assert "done for 2, 0 skipped" in accepted.stdout
    assert not files["exact"].exists() and (dest / "exact.jpg").is_file()


def test_variants_in_search_similar_and_duplicates(photo_dir, tmp_path):
    """--variants finds a copy rotated by 90 degrees, and says which transform matched."""
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    lib = rotated_library(photo_dir, tmp_path / "lib")
    rotated = str(lib / "chelsea-rot90.jpg")
    ok(run(base, "index", str(lib)))

    for command in ("search", "similar"):
        out = ok(run(base, command, str(lib / "chelsea.jpg"), "-k", "3", "--variants", "--json"))
        results = {r["path"]: r for r in json.loads(out.stdout)["results"]}
        assert results[rotated]["variant"] in ("rotate-90", "rotate-270") and results[rotated]["score"] >= 0.995
    text = ok(run(base, "search", str(lib / "chelsea.jpg"), "-k", "3", "--variants")).stdout
    assert f"{rotated}  [rotate-" in text

    assert groups_of(base)["groups"] == []
    body = groups_of(base, "--variants")
    assert body["variants"] is True
    [group] = body["groups"]
    assert sorted(i["path"] for i in group["images"]) == [rotated, str(lib / "chelsea.jpg")]
    assert group["kind"] == "similar" and group["images"][1]["variant"] in ("rotate-90", "rotate-270")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the isolated trash is the freedesktop.org one")
def test_exact_copies_of_a_copy_that_is_not_kept(photo_dir, tmp_path):
    """A reference original, a quality-60 copy and two byte-identical copies of that: the latter are `exact`
    copies of the first (copy_of), so `--kind exact` trashes them and keeps one quality-60 file."""
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    ref, lib = tmp_path / "ref", tmp_path / "lib"
    (lib / "b").mkdir(parents=True)
    ref.mkdir()
    (ref / "astronaut.jpg").write_bytes((photo_dir / "astronaut.jpg").read_bytes())
    Image.open(photo_dir / "astronaut.jpg").save(lib / "q60.jpg", quality=60)
    for copy in (lib / "q60 copy.jpg", lib / "b" / "q60.jpg"):
        copy.write_bytes((lib / "q60.jpg").read_bytes())
    os.utime(lib / "q60.jpg", ns=(10**18, 10**18))  # the oldest of the three: the lead of their exact set
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "xdg")}  # never the user's trash
    ok(run(base, "index", str(lib), str(ref)))

    [group] = groups_of(base, "--reference", str(ref))["groups"]
    images = {i["path"]: i for i in group["images"]}
    lead = images[str(lib / "q60.jpg")]
    assert group["keep"] == str(ref / "astronaut.jpg") and lead["kind"] == "near-duplicate" and "copy_of" not in lead
    for copy in (lib / "q60 copy.jpg", lib / "b" / "q60.jpg"):
        assert images[str(copy)]["kind"] == "exact" and images[str(copy)]["copy_of"] == lead["id"]
    listed = ok(run(base, "duplicates", "--threshold", THRESHOLD, "--reference", str(ref))).stdout
    assert f"exact          {lead['score']:.4f}  {lib / 'b' / 'q60.jpg'}  [copy of {lib / 'q60.jpg'}]" in listed

    out = ok(run(base, "duplicates", "--threshold", THRESHOLD, "--reference", str(ref), "--kind", "exact",
                 "--trash", "--yes", env=env))
    assert f"  trash  {lib / 'q60 copy.jpg'}\n" in out.stdout and f"  trash  {lib / 'b' / 'q60.jpg'}\n" in out.stdout
    assert "Move 2 files" in out.stdout and "done for 2, 0 skipped" in out.stdout
    assert (lib / "q60.jpg").exists() and (ref / "astronaut.jpg").exists()
    assert not (lib / "q60 copy.jpg").exists() and not (lib / "b" / "q60.jpg").exists()
