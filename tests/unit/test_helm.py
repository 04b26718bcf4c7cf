"""The Helm chart in deploy/helm, checked with the pinned Helm (`helm lint`,
`helm template`) and by reading the objects it renders: probes on the
health endpoints, resources set, secrets never in a ConfigMap, autoscaling
capped at the partition count."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.tools import helm_path
from stream.settings import ENV_NAMES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "fraudstream"
SECRET_NAMES = {"FRAUD_REDIS_URL", "FRAUD_KEY_HASH_SECRET", "FRAUD_KAFKA_SASL_PASSWORD"}


@pytest.fixture(scope="module")
def helm() -> Path:
    path = helm_path()
    if not path.is_file():
        if shutil.which("go") is None:
            pytest.skip("Helm is built with Go, and Go is not installed")
        pytest.fail(f"{path} missing: run `python -m devenv install --with-helm`")
    return path


def run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def render(helm: Path, *sets: str) -> dict[str, dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    proc = run(helm, "template", "fs", str(CHART), *args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind expected"
    return by_kind


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (worker,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(worker)


def test_the_chart_lints_clean(helm: Path) -> None:
    proc = run(helm, "lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_probes_hit_the_health_endpoints_and_resources_are_set(helm: Path) -> None:
    objects = render(helm)
    worker = container(objects)
    assert worker["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["resources"]["requests"]["cpu"] and worker["resources"]["limits"]["memory"]
    config = objects["ConfigMap"]["data"]
    assert str(worker["ports"][0]["containerPort"]) == config["FRAUD_WEB_PORT"]
    assert config["FRAUD_WEB_HOST"] == "0.0.0.0"
    assert set(config) <= ENV_NAMES, set(config) - ENV_NAMES
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_secrets_go_to_a_secret_never_to_the_config_map(helm: Path) -> None:
    objects = render(
        helm,
        "secret.values.FRAUD_REDIS_URL=redis://:pw@redis:6379/0",
        "secret.values.FRAUD_KEY_HASH_SECRET=s3cret",
    )
    assert not SECRET_NAMES & set(objects["ConfigMap"]["data"])
    assert "pw" not in yaml.safe_dump(objects["ConfigMap"])
    secret = objects["Secret"]
    assert set(secret["stringData"]) == {"FRAUD_REDIS_URL", "FRAUD_KEY_HASH_SECRET"}
    refs = container(objects)["envFrom"]
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in refs
    proc = run(helm, "template", "fs", str(CHART), "--set", "settings.FRAUD_REDIS_URL=redis://x")
    assert proc.returncode != 0 and "is a secret" in proc.stderr
    existing = render(helm, "secret.existingSecret=prod-fraud")
    assert "Secret" not in existing
    assert {"secretRef": {"name": "prod-fraud"}} in container(existing)["envFrom"]


def test_keda_scales_on_the_groups_lag_up_to_the_partition_count(helm: Path) -> None:
    objects = render(helm, "partitions=24", "settings.FRAUD_APP_ID=fraud-prod")
    scaled = objects["ScaledObject"]["spec"]
    assert scaled["maxReplicaCount"] == 24
    assert scaled["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "fraud-prod"  # faust's group is the app id
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert "replicas" not in objects["Deployment"]["spec"]  # the autoscaler owns it
    assert "HorizontalPodAutoscaler" not in objects


def test_the_hpa_alternative_and_fixed_replicas(helm: Path) -> None:
    objects = render(helm, "autoscaling.keda.enabled=false", "autoscaling.hpa.enabled=true")
    assert "ScaledObject" not in objects
    assert objects["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 12
    fixed = render(helm, "autoscaling.keda.enabled=false", "replicas=40", "partitions=8")
    assert fixed["Deployment"]["spec"]["replicas"] == 8  # never more workers than partitions
    both = run(helm, "template", "fs", str(CHART), "--set", "autoscaling.hpa.enabled=true")
    assert both.returncode != 0 and "not both" in both.stderr


def test_the_pod_runs_as_the_images_unprivileged_user(helm: Path) -> None:
    objects = render(helm)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"--uid {pod['securityContext']['runAsUser']} " in dockerfile
    worker = container(objects)
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert "/var/lib/fraudstream" in mounts  # FRAUD_DATA_DIR of the image
    assert "ENV FRAUD_DATA_DIR=/var/lib/fraudstream" in dockerfile
