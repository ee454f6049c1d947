"""A container engine for the deployment tests, or a clear skip where none can run.

CI sets REQUIRE_CONTAINER_ENGINE=1, which turns that skip into a failure."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from tests.conftest import ROOT, png_bytes
from tests.e2e.deploy.engine import Podman, engine_unavailable_reason, ensure_base_images

IMAGE = "paddle-classifier-serving:latest"  # the name docker-compose.yml builds, so compose reuses it
ARTIFACTS = ROOT / "test-artifacts" / "deploy"


@pytest.fixture(scope="session")
def podman() -> Podman:
    reason = engine_unavailable_reason()
    if reason is not None:
        if os.environ.get("REQUIRE_CONTAINER_ENGINE") == "1":
            pytest.fail(f"REQUIRE_CONTAINER_ENGINE=1 but {reason}")
        pytest.skip(reason)
    engine = Podman.create()
    ensure_base_images(engine)
    return engine


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    started = time.monotonic()
    build = podman.run("build", "--format", "docker", "--network=host", "--pull=never", "-t", IMAGE, str(ROOT),
                       timeout=1800)
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build.log").write_text(build.stdout + build.stderr)
    report = {"image": IMAGE, "size_bytes": size, "size_mb": round(size / 1e6), "build_seconds": round(time.monotonic() - started)}
    (ARTIFACTS / "image.json").write_text(json.dumps(report, indent=2))
    print(f"\nimage {IMAGE}: {report['size_mb']} MB, built in {report['build_seconds']} s", file=sys.stderr)
    return IMAGE


@pytest.fixture(scope="session")
def digit(mnist) -> tuple[bytes, int]:  # noqa: ANN001
    return png_bytes(mnist.test.images[0]), int(mnist.test.labels[0])
