"""The service between routes and models: requests holding a version that a reload replaced."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.errors import ApiError
from app.inference.backends import BackendOptions
from app.inference.model_version import LoadOptions
from app.inference.registry import ModelRegistry
from app.service import ModelService
from tests.conftest import MODELS_DIR, png_bytes

OPTIONS = LoadOptions(BackendOptions(device="cpu", cpu_threads=1), predictors=1, max_image_pixels=1_000_000)


def touch_manifest(models: Path) -> None:
    """New files under the same version number: the next reload replaces the loaded version."""
    manifest = models / "mnist-lenet" / "1" / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")


def test_service_refuses_a_version_a_reload_just_replaced(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "mnist-lenet")
    registry = ModelRegistry(tmp_path, OPTIONS)
    registry.load_all()
    service = ModelService(Settings(model_dir=tmp_path), registry)

    async def scenario() -> None:
        old = registry.get("mnist-lenet")
        digit = old.handler.preprocess([png_bytes(mnist.test.images[0])]).arrays[0]
        [first], _ = await service.classify(service.admit(old, 1), [digit])
        assert old.handler.top_k(first.probabilities, 1)[0].label == str(mnist.test.labels[0])
        early = service.admit(old, 1)  # admitted before the swap, classified after it

        touch_manifest(tmp_path)
        report = await service.reload()
        assert report.loaded == ["mnist-lenet/1"] and old.retired
        # A request that looked the old version up before the swap is refused (503 + Retry-After
        # in the routes), never given a second queue on the retired version's predictors.
        with pytest.raises(ApiError, match="just replaced") as refused:
            service.admit(old, 1)
        assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
        with pytest.raises(ApiError, match="closing"):
            await service.classify(early, [digit])
        await asyncio.wait(service.retiring, timeout=30)
        assert old.closed and not service.retired

        new = registry.get("mnist-lenet")
        assert new is not old
        [again], _ = await service.classify(service.admit(new, 1), [digit])
        assert np.array_equal(again.probabilities, first.probabilities)
        await service.close()

    asyncio.run(scenario())


def test_service_retires_a_version_whose_predictor_is_stuck_within_the_request_timeout(tmp_path: Path,
                                                                                         mnist) -> None:  # noqa: ANN001
    """A queued request on the old version keeps it open only until its own deadline; then the
    old predictor processes are stopped, and nothing of the old version is left running."""
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "mnist-lenet")
    options = LoadOptions(BackendOptions(device="cpu", cpu_threads=1), predictors=1, max_image_pixels=1_000_000,
                          isolation="process", max_batch_size=1)
    registry = ModelRegistry(tmp_path, options)
    registry.load_all()
    service = ModelService(Settings(model_dir=tmp_path, request_timeout_ms=1500), registry)

    async def scenario() -> None:
        import os
        import signal

        old = registry.get("mnist-lenet")
        [process] = old.pool.processes  # the test stops the real child
        os.kill(process.pid, signal.SIGSTOP)
        try:
            digit = png_bytes(mnist.test.images[0])
            waiting = asyncio.create_task(service.classify(service.admit(old, 1), [digit]))
            await asyncio.sleep(0.2)
            touch_manifest(tmp_path)
            started = asyncio.get_running_loop().time()
            await service.reload()  # returns at once: retirement runs in the background
            assert asyncio.get_running_loop().time() - started < 10
            with pytest.raises(Exception):  # noqa: B017 - 504 timeout, or the batch cancelled with the version
                await waiting
            await asyncio.wait(service.retiring, timeout=30)
            assert old.closed and process.pid is None
        finally:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGCONT)
        await service.close()

    asyncio.run(scenario())
