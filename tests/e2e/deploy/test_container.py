"""The Dockerfile and docker-compose.yml, built and run by a real container engine (podman).

One image build serves both tests; the compose test brings up two replicas behind nginx, stops
one, and checks that the single published port still answers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS_DIR, ROOT, free_port
from tests.e2e.deploy.conftest import ARTIFACTS
from tests.e2e.deploy.engine import Podman

LENET = "/v1/models/mnist-lenet"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answers_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def classify(url: str, digit_png: bytes) -> httpx.Response:
    return httpx.post(f"{url}{LENET}/predict", files={"file": ("digit.png", digit_png, "image/png")}, timeout=30)


@pytest.fixture
def container(podman: Podman, image: str) -> Iterator[Callable[..., tuple[str, str]]]:
    names: list[str] = []

    def start(*run_args: str) -> tuple[str, str]:
        name, port = f"pcs-test-{uuid.uuid4().hex[:8]}", free_port()
        podman.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", *run_args, image)
        names.append(name)
        return name, f"http://127.0.0.1:{port}"

    yield start
    for name in names:
        logs = podman.run("logs", name, check=False)
        (ARTIFACTS / f"{name}.log").write_text(logs.stdout + logs.stderr)
        podman.run("rm", "-f", name, check=False)


def test_image_runs_as_non_root_turns_healthy_and_classifies_a_digit(podman: Podman, container, digit) -> None:  # noqa: ANN001
    name, url = container()
    # podman runs the image's own HEALTHCHECK command on demand (no systemd timer here).
    wait_until(lambda: podman.run("healthcheck", "run", name, check=False).returncode == 0, 120, "HEALTHCHECK")
    wait_until(lambda: answers_ready(url), 120, "/readyz")
    png, label = digit
    response = classify(url, png)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == str(label)
    assert {m["name"] for m in httpx.get(url + "/v1/models").json()["models"]} >= {"mnist-lenet", "mnist-mlp", "mnist-softmax"}
    assert podman.run("exec", name, "id", "-u").stdout.strip() == "10001"
    # Graceful stop: SIGTERM drains (APP_DRAIN_SECONDS, 2 s) and exits, long before the 20 s kill.
    started = time.monotonic()
    podman.run("stop", "-t", "20", name)
    assert time.monotonic() - started < 12
    assert "Application shutdown complete" in podman.run("logs", name).stdout + podman.run("logs", name).stderr


def test_image_serves_models_mounted_over_the_baked_ones(container, digit, tmp_path: Path) -> None:  # noqa: ANN001
    mounted = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "mnist-lenet", mounted / "mnist-lenet")
    mounted.chmod(0o755)
    _, url = container("-v", f"{mounted}:/srv/models:ro")
    wait_until(lambda: answers_ready(url), 120, "/readyz")
    assert [m["name"] for m in httpx.get(url + "/v1/models").json()["models"]] == ["mnist-lenet"]
    png, label = digit
    assert classify(url, png).json()["predictions"][0]["label"] == str(label)


@pytest.fixture
def compose_stack(podman: Podman, image: str) -> Iterator[tuple[str, Callable[..., subprocess.CompletedProcess[str]]]]:
    project, port = f"pcs{uuid.uuid4().hex[:6]}", free_port()
    env = {**podman.env, "APP_PORT": str(port)}
    compose = [sys.executable, "-m", "podman_compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]

    def run_compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert not check or result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    try:
        yield f"http://127.0.0.1:{port}", project, run_compose
    finally:
        for cid in podman.container_ids(f"label=io.podman.compose.project={project}"):
            logs = podman.run("logs", cid, check=False)
            (ARTIFACTS / f"{project}-{cid[:12]}.log").write_text(logs.stdout + logs.stderr)
        run_compose("down", check=False)
        # podman-compose's `down` forgets replicas added by --scale: remove what the project labels.
        leftovers = podman.run("ps", "-aq", "--filter", f"label=io.podman.compose.project={project}").stdout.split()
        if leftovers:
            podman.run("rm", "-f", *leftovers, check=False)
        podman.run("pod", "rm", "-f", f"pod_{project}", check=False)  # podman-compose's own pod
        podman.run("network", "rm", "-f", f"{project}_default", check=False)


def spread(url: str, digit: tuple[bytes, int], requests: int) -> dict[str, int]:
    """Classify through the balancer; count which replica (nginx's X-Upstream) answered."""
    png, label = digit
    seen: dict[str, int] = {}
    for _ in range(requests):
        response = classify(url, png)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"] == str(label)
        upstream = response.headers["X-Upstream"].split(", ")[-1]  # the last one tried answered
        seen[upstream] = seen.get(upstream, 0) + 1
    return seen


def test_compose_scales_behind_the_balancer_and_survives_a_stopped_replica(
        podman: Podman, compose_stack, digit) -> None:  # noqa: ANN001
    url, project, run_compose = compose_stack
    run_compose("up", "-d", "--scale", "api=2")
    replicas = podman.container_ids(f"label=io.podman.compose.project={project}", "label=io.podman.compose.service=api")
    assert len(replicas) == 2
    assert not podman.container_ids(f"label=io.podman.compose.project={project}", "label=io.podman.compose.service=api-gpu")
    for replica in replicas:
        wait_until(lambda replica=replica: podman.run("healthcheck", "run", replica, check=False).returncode == 0, 180,
                   f"replica {replica[:12]} healthy")
    wait_until(lambda: answers_ready(url), 60, "the balancer")
    both = spread(url, digit, 20)
    assert len(both) == 2 and min(both.values()) >= 5, both

    podman.run("stop", "-t", "20", replicas[0])
    survivor = spread(url, digit, 20)
    assert len(survivor) == 1, survivor
