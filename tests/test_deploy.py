"""The Dockerfile and deploy/kubernetes/ agree with the CLI: health path, port, grace period.

The image is built and run only where a container engine answers; elsewhere that test is
skipped and says why.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

from fastserve.cli import config_from_args
from fastserve.config import Config

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
DEFAULTS = Config()
HEALTH = DEFAULTS.admin_prefix + "/health"


def documents() -> Dict[str, Dict[str, Any]]:
    """kind -> the manifest, from every YAML file below deploy/kubernetes."""
    found: Dict[str, Dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert document["kind"] not in found, f"two {document['kind']} manifests"
                found[document["kind"]] = document
    return found


@pytest.fixture(scope="module")
def manifests() -> Dict[str, Dict[str, Any]]:
    return documents()


def container(manifests) -> Dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_every_manifest_is_valid_yaml_with_the_parts_expected(manifests) -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Kustomization"} <= set(manifests)
    listed = manifests["Kustomization"]["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def test_probes_ask_the_health_endpoint_on_the_served_port(manifests) -> None:
    spec = container(manifests)
    config = config_from_args(spec["args"])
    assert config.admin_prefix + "/health" == HEALTH
    (port,) = spec["ports"]
    assert port["containerPort"] == config.port
    for probe in ("readinessProbe", "livenessProbe"):
        http = spec[probe]["httpGet"]
        assert http["path"] == HEALTH
        assert http["port"] in (port["name"], port["containerPort"])
    assert config.host == "0.0.0.0"


def test_grace_period_covers_prestop_delay_and_drain(manifests) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    spec = container(manifests)
    config = config_from_args(spec["args"])
    command = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert config.shutdown_delay > 0, "without it, health never says 503 before the listener closes"
    assert config.graceful_timeout >= DEFAULTS.graceful_timeout
    assert pod["terminationGracePeriodSeconds"] > pre_stop + config.shutdown_delay + config.graceful_timeout


def test_resources_service_and_autoscaler(manifests) -> None:
    spec = container(manifests)
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert manifests["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    deployment = manifests["Deployment"]["metadata"]["name"]
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = manifests["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == spec["ports"][0]["name"]
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]


def dockerfile() -> List[str]:
    return [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    lines = dockerfile()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build") and "slim" in stages[1]
    runtime = lines[lines.index(stages[1]):]
    assert not any("gcc" in line for line in runtime), "no compiler in the runtime image"
    user = [line for line in runtime if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    text = (REPO / "Dockerfile").read_text()
    assert f"EXPOSE {DEFAULTS.port}" in text and f"FASTSERVE_PORT={DEFAULTS.port}" in text
    healthcheck = re.search(r"HEALTHCHECK .*?CMD (.*)", text, re.S)
    assert healthcheck and HEALTH in healthcheck.group(1)
    assert 'ENTRYPOINT ["fastserve"]' in text


def _engine() -> str:
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=20).returncode == 0:
            return path
    return ""


@pytest.mark.skipif(not _engine(), reason="no container engine answers here (docker/podman info failed): image not built")
def test_the_image_builds_and_reports_healthy(tmp_path: Path) -> None:
    engine = _engine()
    tag = f"fastserve-test:{uuid.uuid4().hex[:8]}"
    subprocess.run([engine, "build", "-t", tag, str(REPO)], check=True, timeout=900)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the image\n")
    site.chmod(0o755)
    name = f"fastserve-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([engine, "run", "-d", "--name", name, "-p", "127.0.0.1::8000", "-v", f"{site}:/srv:ro", tag],
                   check=True, timeout=60)
    try:
        mapped = subprocess.run([engine, "port", name, "8000"], capture_output=True, text=True, check=True)
        port = int(mapped.stdout.split(":")[-1])
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH}", timeout=2) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            assert response.read() == b"hello from the image\n"
        user = subprocess.run([engine, "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() != "0"
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=60)
