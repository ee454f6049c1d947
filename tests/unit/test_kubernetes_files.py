"""No cluster runs here: the Kubernetes manifests (deploy/kubernetes, each overlay as kustomize
renders it) are checked against the Kubernetes API's own schemas, strictly, and the KServe
InferenceService against KServe's CRD; both are checked against the app they deploy (its settings,
port, user, health routes). tests/e2e/deploy runs the pod template under podman."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.routers import health, v2
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "models-pvc", "gpu"]
# The oldest Kubernetes the manifests are written for (autoscaling/v2, policy/v1, seccompProfile
# as a field), and the newest whose schemas kubernetes-validate ships.
VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
KSERVE_CRD = ROOT / "tests" / "data" / "kserve" / "serving.kserve.io_inferenceservices.yaml.gz"
INFERENCE_SERVICE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
SETTINGS = {f"APP_{name.upper()}" for name in Settings.model_fields}  # every APP_* variable the app reads
HEALTH_ROUTES = {route.path for router in (health.router, v2.router) for route in router.routes}  # type: ignore[attr-defined]


def kustomize_unavailable_reason() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl is not installed: the overlays cannot be rendered (the base files are checked as they are)"
    version = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    kustomize_version = json.loads(version.stdout or "{}").get("kustomizeVersion", "v0")
    if int(kustomize_version.lstrip("v").split(".")[0]) < 5:
        return f"kubectl's kustomize is {kustomize_version}; the overlays are written for v5 (kubectl 1.27 on)"
    return None


def kustomize(overlay: str) -> list[dict[str, Any]]:
    """The overlay as `kubectl apply -k` sends it."""
    reason = kustomize_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    kubectl = str(shutil.which("kubectl"))
    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES / overlay)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def base_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((KUBERNETES / "base").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] != "Kustomization":
                yield path, document


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_kubernetes_base_files_validate_strictly(version: str) -> None:
    kinds = set()
    for _path, document in base_documents():
        kubernetes_validate.validate(document, version, strict=True)
        kinds.add(document["kind"])
    assert kinds == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_overlays_render_to_valid_objects(overlay: str) -> None:
    documents = kustomize(overlay)
    for document in documents:
        for version in VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    settings = by_kind(documents, "ConfigMap")["data"]
    if overlay == "models-pvc":
        assert by_kind(documents, "PersistentVolumeClaim")["metadata"]["name"] == \
            next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["claimName"]
        assert settings["APP_MODEL_POLL_SECONDS"] == "30"
    if overlay == "gpu":
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert settings["APP_DEVICE"] == "gpu" and pod["containers"][0]["image"].endswith(":gpu")


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    deployment = next(d for _, d in base_documents() if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kubernetes_files_match_the_app_they_deploy() -> None:
    documents = {d["kind"]: d for _, d in base_documents()}
    assert set(documents["ConfigMap"]["data"]) <= SETTINGS, set(documents["ConfigMap"]["data"]) - SETTINGS
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--uid {pod['securityContext']['runAsUser']} " in dockerfile
    assert container["ports"][0]["containerPort"] == int(re.search(r"^EXPOSE (\d+)", dockerfile, re.M).group(1))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/readyz", "/healthz", "/v2/health/ready", "/v2/health/live"} <= HEALTH_ROUTES
    assert container["livenessProbe"]["httpGet"]["path"] == container["startupProbe"]["httpGet"]["path"] == "/healthz"
    template = documents["Deployment"]["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    selector = documents["Deployment"]["spec"]["selector"]["matchLabels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = documents[kind]["spec"]
        assert (spec["selector"].get("matchLabels") or spec["selector"]) == selector
    assert selector.items() <= template["metadata"]["labels"].items()
    drain = int(documents["ConfigMap"]["data"]["APP_DRAIN_SECONDS"]) + int(documents["ConfigMap"]["data"]["APP_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain


def strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it with field validation Strict: an object with
    declared properties takes no others (unless it says it keeps unknown fields)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def inference_service_schema() -> dict[str, Any]:
    crd = yaml.safe_load(gzip.decompress(KSERVE_CRD.read_bytes()))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    return schema


def test_kserve_inference_service_validates_against_the_crd(inference_service_schema: dict[str, Any]) -> None:
    service = yaml.safe_load(INFERENCE_SERVICE.read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    jsonschema.validate(service, inference_service_schema)
    misspelt = yaml.safe_load(INFERENCE_SERVICE.read_text())
    misspelt["spec"]["predictor"]["minReplica"] = misspelt["spec"]["predictor"].pop("minReplicas")
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        jsonschema.validate(misspelt, inference_service_schema)


def test_kserve_inference_service_matches_the_app() -> None:
    predictor = yaml.safe_load(INFERENCE_SERVICE.read_text())["spec"]["predictor"]
    (container,) = predictor["containers"]
    port = container["ports"][0]["containerPort"]
    assert container["command"][:3] == ["python", "-m", "app"] and container["command"][-2:] == ["--port", str(port)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["STORAGE_URI"].startswith("pvc://") and env["APP_MODEL_DIR"] == "/mnt/models"
    assert {name for name in env if name.startswith("APP_")} <= SETTINGS
