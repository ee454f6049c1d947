"""A container engine for the deployment tests, or a clear skip where none can run.

CI sets REQUIRE_CONTAINER_ENGINE=1, which turns that skip into a failure."""

from __future__ import annotations

import os

import pytest

from tests.e2e.deploy.engine import Podman, engine_unavailable_reason, ensure_base_images


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
