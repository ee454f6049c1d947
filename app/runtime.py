"""What the lifespan builds and the routers use: settings, the model registry, the inference threads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app.config import Settings
from app.inference.classifier import Classifier
from app.inference.postprocess import Prediction
from app.inference.registry import ModelRegistry


@dataclass
class Runtime:
    settings: Settings
    registry: ModelRegistry
    inference_threads: ThreadPoolExecutor

    async def classify(self, classifier: Classifier, inputs: Sequence[np.ndarray], k: int) -> list[list[Prediction]]:
        """One predictor run for all inputs, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.inference_threads, classifier.classify, list(inputs), k)
