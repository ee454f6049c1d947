"""The runtime between routes and models: a request holding a version that a reload replaced."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.inference.batcher import QueueFullError
from app.inference.classifier import LoadOptions
from app.inference.predictor import RuntimeOptions
from app.inference.registry import ModelRegistry
from app.runtime import Runtime
from tests.conftest import MODELS_DIR, png_bytes

OPTIONS = LoadOptions(RuntimeOptions(device="cpu", cpu_threads=1), predictors=1, max_image_pixels=1_000_000)


def test_runtime_refuses_a_version_a_reload_just_replaced(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "mnist-lenet")
    registry = ModelRegistry(tmp_path, OPTIONS)
    registry.load_all()
    runtime = Runtime(Settings(model_dir=tmp_path), registry)

    async def scenario() -> None:
        old = registry.get("mnist-lenet")
        digit = old.preprocess(png_bytes(mnist.test.images[0]))
        [first], _ = await runtime.classify(old, [digit])
        assert old.postprocess(first.probabilities, 1)[0].label == str(mnist.test.labels[0])

        # New files under the same version number: a request that looked the model up before the
        # swap still holds the old classifier, whose batcher and predictors are now gone.
        manifest = tmp_path / "mnist-lenet" / "1" / "manifest.json"
        manifest.write_text(manifest.read_text() + "\n")
        report = await runtime.reload()
        assert report.loaded == ["mnist-lenet/1"] and old.closed
        with pytest.raises(QueueFullError, match="just replaced"):  # the route answers 503 + Retry-After
            runtime.admit(old, 1)

        new = registry.get("mnist-lenet")
        assert new is not old
        [again], _ = await runtime.classify(new, [digit], runtime.admit(new, 1))
        assert np.array_equal(again.probabilities, first.probabilities)
        await runtime.close()

    asyncio.run(scenario())
