"""The Kubernetes Deployment's pod template (deploy/kubernetes/base), run by `podman kube play` with
its ConfigMap, two replicas: each answers /v2 and /v1 as uid 10001 on a read-only root filesystem,
one is removed and the other still answers, and nothing is left behind.

What podman does differently from a cluster, and is taken out of the manifest here (and only that):
- it publishes every containerPort on the host, so a second replica could not bind: `ports` go;
- it runs an httpGet probe as `curl` inside the container, and the image has no curl: the probes
  go (the test waits on /readyz itself, as the readiness probe would);
- a secretKeyRef names a podman secret, which this machine does not have: the admin token goes.
A Service, HorizontalPodAutoscaler and PodDisruptionBudget do nothing under podman: their fields are
checked against the Kubernetes schemas in tests/unit/test_kubernetes_files.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
import yaml

from tests.conftest import ROOT
from tests.e2e.deploy.conftest import ARTIFACTS
from tests.e2e.deploy.engine import Podman
from tests.e2e.deploy.test_container import answers_ready, classify, wait_until

BASE = ROOT / "deploy" / "kubernetes" / "base"
KUBE_NETWORK = "podman-default-kube-network"


def for_podman(deployment: dict[str, Any], name: str, settings: str, image: str) -> dict[str, Any]:
    deployment["metadata"]["name"] = name
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for podman_differs in ("ports", "startupProbe", "readinessProbe", "livenessProbe"):
            container.pop(podman_differs)
        container["env"] = [e for e in container.get("env", []) if "secretKeyRef" not in e.get("valueFrom", {})]
        container["envFrom"] = [{"configMapRef": {"name": settings}}]
        container["image"] = image
    return deployment


@pytest.fixture
def kube_play(podman: Podman, image: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The base ConfigMap and Deployment, renamed for this run and adapted as above, in one file."""
    name = f"pcs-kube-{uuid.uuid4().hex[:6]}"
    settings = yaml.safe_load((BASE / "configmap.yaml").read_text())
    settings["metadata"]["name"] = f"{name}-settings"
    deployment = for_podman(yaml.safe_load((BASE / "deployment.yaml").read_text()), name, f"{name}-settings", image)
    played = tmp_path / "kube.yaml"
    played.write_text(yaml.safe_dump_all([settings, deployment], sort_keys=False))
    network_existed = podman.run("network", "exists", KUBE_NETWORK, check=False).returncode == 0
    try:
        yield name, played
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for cid in podman.container_ids(f"name={name}"):
            logs = podman.run("logs", cid, check=False)
            (ARTIFACTS / f"{name}-{cid[:12]}.log").write_text(logs.stdout + logs.stderr)
        podman.run("kube", "down", str(played), check=False, timeout=300)
        for pod in podman.run("pod", "ps", "-q", "--filter", f"name={name}", check=False).stdout.split():
            podman.run("pod", "rm", "-f", pod, check=False)  # what a failed test left
        if not network_existed:
            podman.run("network", "rm", "-f", KUBE_NETWORK, check=False)


def pod_address(podman: Podman, pod: str) -> str:
    infra = podman.run("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
    address = podman.run("inspect", infra, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    return f"{address.stdout.strip()}:8000"


def answers(address: str, digit: tuple[bytes, int]) -> None:
    """/v1 predict, and /v2 infer through Triton's own client."""
    png, label = digit
    predicted = classify(f"http://{address}", png)
    assert predicted.status_code == 200 and predicted.json()["predictions"][0]["label"] == str(label), predicted.text
    tensor = triton.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([png], dtype=np.object_))
    result = triton.InferenceServerClient(address).infer("mnist-lenet", [tensor])
    assert int(result.as_numpy("probabilities")[0].argmax()) == label


def leftovers(podman: Podman, name: str) -> list[str]:
    return (podman.run("pod", "ps", "-q", "--filter", f"name={name}").stdout.split()
            + podman.run("ps", "-aq", "--filter", f"name={name}").stdout.split())


def test_kubernetes_pod_template_runs_two_replicas_under_podman(podman: Podman, kube_play, digit) -> None:  # noqa: ANN001
    name, played = kube_play
    podman.run("kube", "play", str(played), timeout=300)
    pods = sorted(podman.run("pod", "ps", "--filter", f"name={name}", "--format", "{{.Name}}").stdout.split())
    assert pods == [f"{name}-pod-0", f"{name}-pod-1"]  # replicas: 2
    addresses = [pod_address(podman, pod) for pod in pods]
    for address in addresses:
        wait_until(lambda address=address: answers_ready(f"http://{address}"), 240, f"{address}/readyz")
        answers(address, digit)
    container = f"{pods[0]}-api"
    assert podman.run("exec", container, "id", "-u").stdout.strip() == "10001"
    assert podman.run("exec", container, "touch", "/srv/models/x", check=False).returncode != 0  # read-only root
    assert podman.run("exec", container, "touch", "/tmp/x", check=False).returncode == 0  # its emptyDir

    # One replica goes (SIGTERM, as a node drain sends it): the other still answers.
    podman.run("pod", "stop", "-t", "35", pods[0], timeout=120)
    assert not answers_ready(f"http://{addresses[0]}")
    answers(addresses[1], digit)

    podman.run("kube", "down", str(played), timeout=300)
    assert leftovers(podman, name) == []
