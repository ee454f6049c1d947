"""What the lifespan builds and the routers use: settings, the model registry, the batchers."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.config import Settings
from app.inference.batcher import Batcher, BatchTiming
from app.inference.classifier import Classifier
from app.inference.postprocess import Prediction
from app.inference.registry import ModelRegistry


@dataclass
class Runtime:
    settings: Settings
    registry: ModelRegistry
    inference_threads: ThreadPoolExecutor
    batchers: dict[int, Batcher] = field(default_factory=dict)
    draining: bool = False  # set on SIGTERM: readiness answers 503 while in-flight work finishes

    def batcher_for(self, classifier: Classifier) -> Batcher:
        """One batcher per loaded classifier, made on first use (it needs the running event loop)."""
        batcher = self.batchers.get(id(classifier))
        if batcher is None:
            batcher = Batcher(
                classifier.predict,
                self.inference_threads,
                workers=classifier.pool.size,
                max_batch_size=classifier.batch_policy.max_batch_size,
                max_delay_ms=self.settings.max_batch_delay_ms,
                max_queue_images=self.settings.max_queue_images,
                run_inline=classifier.runs_inline(),
            )
            self.batchers[id(classifier)] = batcher
        return batcher

    async def classify(self, classifier: Classifier, inputs: Sequence[np.ndarray],
                       k: int) -> tuple[list[list[Prediction]], BatchTiming]:
        """Queue the inputs on the model's batcher; raises the batcher's QueueFull/Timeout/Inference errors."""
        result = await self.batcher_for(classifier).submit(inputs, self.settings.request_timeout_ms / 1000)
        return [classifier.postprocess(row, k) for row in result.probabilities], result.timing

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
