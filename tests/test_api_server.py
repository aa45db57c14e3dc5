"""ApiServer (the embeddable server thread) and `image-search serve` over real sockets on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.config import Settings
from core.server import ApiServer, ServerStartError

REPO = Path(__file__).resolve().parent.parent


def get_json(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_thread_starts_serves_and_stops_quickly(engine):
    server = ApiServer(engine, engine.settings.replace(api_port=0))
    server.start()
    port = server.port
    try:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        status, body = get_json(server.url + "/api/health")
        assert status == 200 and body["status"] == "ok"
        status, body = get_json(server.url + "/api/images/nope")
        assert status == 404 and body["error"] == "Not Found"
        with pytest.raises(ServerStartError, match="already running"):
            server.start()
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.5
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.stop()  # a second stop is harmless


def test_busy_port_is_a_clear_error(engine):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiServer(engine, engine.settings.replace(api_port=port))
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()


def test_exposed_bind_needs_a_token(engine):
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com", ""):
        with pytest.raises(ServerStartError, match="without a token"):
            ApiServer(engine, engine.settings.replace(api_host=host))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        ApiServer(engine, engine.settings.replace(api_host=host))
    exposed = ApiServer(engine, engine.settings.replace(api_host="0.0.0.0", api_token="t"))
    assert exposed.app is not None


def test_token_over_the_wire(engine):
    with ApiServer(engine, engine.settings.replace(api_port=0, api_token="s3cret")) as server:
        status, body = get_json(server.url + "/api/jobs")
        assert status == 401 and "token" in body["detail"]
        status, body = get_json(server.url + "/api/jobs", {"Authorization": "Bearer s3cret"})
        assert status == 200
        assert get_json(server.url + "/api/health")[0] == 200


def test_token_from_a_file(engine, tmp_path, monkeypatch):
    """A Docker secret: the file named by IMAGE_SEARCH_API_TOKEN_FILE, its trailing newline dropped."""
    secret = tmp_path / "token"
    secret.write_text("fr0m-a-file\n")
    monkeypatch.setenv("IMAGE_SEARCH_API_TOKEN_FILE", str(secret))
    from_env = Settings.load()
    assert from_env.api_token_file == str(secret)
    exposed = engine.settings.replace(api_port=0, api_host="0.0.0.0", api_token_file=str(secret))
    with ApiServer(engine, exposed) as server:
        assert get_json(server.url + "/api/jobs")[0] == 401
        assert get_json(server.url + "/api/jobs", {"Authorization": "Bearer fr0m-a-file"})[0] == 200
    secret.write_text("\n")
    with pytest.raises(ServerStartError, match="is empty"):
        ApiServer(engine, engine.settings.replace(api_token_file=str(secret)))
    with pytest.raises(ServerStartError, match="cannot read the token file"):
        ApiServer(engine, engine.settings.replace(api_token_file=str(tmp_path / "missing")))


def test_a_model_that_fails_to_build_makes_health_503(settings, tmp_path):
    """The warm-up of `serve` logs the failure once; health reports it instead of claiming to be ready."""
    from core.engine import Engine

    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an HDF5 file")
    engine = Engine(settings.replace(weights=str(broken), runtime="onnxruntime"))
    try:
        server = ApiServer(engine, engine.settings.replace(api_port=0))
        with server:
            assert get_json(server.url + "/api/health")[0] == 200  # the file is there: not known to be bad yet
            server.warm_up()
            status, body = get_json(server.url + "/api/health")
            assert status == 503 and "could not be loaded" in body["detail"]
    finally:
        engine.close()


def test_serve_command_runs_until_interrupted(tmp_path):
    """`image-search serve` prints its URL, answers, and exits 0 on Ctrl-C (SIGINT)."""
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "core", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
               "--weights", "random"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        first_line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in first_line, first_line
        status, body = get_json(f"http://127.0.0.1:{port}/api/health")
        assert status == 200 and body["count"] == 0
        # Let the background warm-up finish so that the interrupt tests the server's own shutdown.
        deadline = time.monotonic() + 120
        while not body["model_loaded"] and time.monotonic() < deadline:
            time.sleep(0.5)
            body = get_json(f"http://127.0.0.1:{port}/api/health")[1]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_without_its_weights_file_answers_503_instead_of_exiting(tmp_path):
    """A missing weights file is one clear line and 503s with the reason (an unhealthy container), not an exit
    that a restart policy would repeat; SIGTERM still stops it at once."""
    port = free_port()
    missing = tmp_path / "weights" / "vgg16.h5"
    command = [sys.executable, "-m", "core", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
               "--weights", str(missing)]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert f"http://127.0.0.1:{port}/" in process.stdout.readline()
        for path in ("/api/health", "/api/jobs"):
            status, body = get_json(f"http://127.0.0.1:{port}{path}")
            assert status == 503 and str(missing) in body["detail"], body
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert process.returncode == 1
        assert [line for line in errors.splitlines() if "error" in line] == [
            f"image-search: error: weights file not found: {missing}. Give the path of a VGG16 .h5 weights file, "
            "or 'imagenet' to use the Keras cache. (answering 503 until restarted)"]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_refuses_an_exposed_bind_without_token(tmp_path):
    command = [sys.executable, "-m", "core", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "without a token" in result.stderr
