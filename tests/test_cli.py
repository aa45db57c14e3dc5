"""The command line, run as users run it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.config import ConfigError, Settings


def run(*args, env=None, check=False):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=full_env,
                          check=check, timeout=300)


@pytest.fixture
def base(tmp_path):
    return ["--data-dir", str(tmp_path / "data"), "--weights", "random"]


def test_help_is_fast_and_does_not_load_tensorflow():
    code = "import sys, core.cli as c; c.build_parser().format_help(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "index" in run("--help", check=True).stdout


def test_index_search_similar_info_duplicates(base, photo_dir):
    indexed = json.loads(run(*base, "index", "--json", str(photo_dir), check=True).stdout)
    total = len(list(photo_dir.glob("*.jpg")))
    assert indexed["indexed"] == total == indexed["count"]

    queries = [str(photo_dir / "coffee.jpg"), str(photo_dir / "rocket.jpg")]
    out = run(*base, "search", *queries, "-k", "3", "--json", check=True).stdout.splitlines()
    results = [json.loads(line) for line in out]
    assert [r["query"] for r in results] == queries
    for result, query in zip(results, queries, strict=True):
        assert len(result["results"]) == 3
        assert set(result["results"][0]) == {"id", "path", "paths", "name", "folder", "size", "width", "height",
                                             "mtime", "score", "tags", "labels", "taken",
                                             "camera"}  # hit_json + annotations
        assert result["results"][0]["path"] == os.path.realpath(query) and result["results"][0]["score"] > 0.999

    similar = json.loads(run(*base, "similar", results[0]["results"][0]["id"], "--json", check=True).stdout)
    assert similar["results"][0]["path"] == os.path.realpath(queries[0])

    info = json.loads(run(*base, "info", "--json", check=True).stdout)
    assert info["backend"] == "embedded" and info["count"] == total
    assert info["model"] == {"descriptor": "gem", "dims": 512, "weights": "random-0"}
    assert json.loads(run(*base, "duplicates", "--threshold", "0.9999", "--json", check=True).stdout)["groups"] == []


def test_environment_variables_configure_it(tmp_path, photo_dir):
    env = {"IMAGE_SEARCH_DATA_DIR": str(tmp_path / "d"), "IMAGE_SEARCH_WEIGHTS": "random"}
    run("index", str(photo_dir / "coffee.jpg"), env=env, check=True)
    assert json.loads(run("info", "--json", env=env, check=True).stdout)["count"] == 1


def test_user_errors_are_one_line_with_a_nonzero_status(base, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    for args, expected in [
        ((*base, "search", str(bad)), "not a recognised image format"),
        ((*base, "similar", "no-such-id"), "not in the index"),
        (("--data-dir", str(tmp_path / "x"), "--weights", str(tmp_path / "missing.h5"), "info"), "weights file"),
        (("--backend", "elasticsearch", "--es-url", "http://127.0.0.1:9", "--weights", "random", "info"),
         "127.0.0.1:9"),
    ]:
        out = run(*args)
        assert out.returncode == 1, out
        assert "Traceback" not in out.stderr
        lines = [line for line in out.stderr.splitlines() if line.startswith("image-search: error:")]
        assert len(lines) == 1 and expected in lines[0], out.stderr


def test_settings_precedence(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('backend = "elasticsearch"\nbatch_size = 4\nes_url = "http://file:1"\n')
    monkeypatch.setenv("IMAGE_SEARCH_ES_URL", "http://env:2")
    settings = Settings.load({"batch_size": 8}, config_file=config)
    assert (settings.backend, settings.batch_size, settings.es_url) == ("elasticsearch", 8, "http://env:2")
    config.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="colour"):
        Settings.load(config_file=config)
    with pytest.raises(ConfigError, match="backend"):
        Settings.load({"backend": "mongo"}, config_file=tmp_path / "none.toml")


def test_scan_settings(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('exclude = ["*.tmp", "@eaDir"]\n')
    assert Settings.load(config_file=config).exclude_patterns() == ("*.tmp", "@eaDir")
    monkeypatch.setenv("IMAGE_SEARCH_EXCLUDE", ".*, raw ,")
    monkeypatch.setenv("IMAGE_SEARCH_FOLLOW_EXTERNAL_SYMLINKS", "yes")
    settings = Settings.load(config_file=config)
    assert settings.exclude_patterns() == (".*", "raw") and settings.follow_external_symlinks is True
    assert Settings().follow_external_symlinks is False and "$RECYCLE.BIN" in Settings().exclude_patterns()
    monkeypatch.setenv("IMAGE_SEARCH_FOLLOW_EXTERNAL_SYMLINKS", "maybe")
    with pytest.raises(ConfigError, match="follow_external_symlinks"):
        Settings.load(config_file=config)
