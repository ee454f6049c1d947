"""What the lifespan builds and the routers use: settings, the model registry, the batchers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.config import Settings
from app.inference.batcher import Batcher, BatchResult, BatchTiming, QueueFullError
from app.inference.classifier import Classifier, Input, Outcome
from app.inference.registry import ModelRegistry, ReloadReport
from app.telemetry import ModelSeries


@dataclass
class Admission:
    batcher: Batcher[Input, Outcome]
    held: int  # images still reserved; handed over to the queue on submit

    def release(self) -> None:
        self.batcher.release(self.held)
        self.held = 0

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass
class ModelQueue:
    """A loaded classifier with its batcher and metric series, made together on first use."""

    classifier: Classifier
    batcher: Batcher[Input, Outcome]
    series: ModelSeries


@dataclass
class Runtime:
    settings: Settings
    registry: ModelRegistry
    # Keyed by id(classifier); the classifier is kept in its queue so the id is never reused.
    queues: dict[int, ModelQueue] = field(default_factory=dict)
    draining: bool = False  # set on SIGTERM: readiness answers 503 while in-flight work finishes

    def queue_for(self, classifier: Classifier) -> ModelQueue:
        """One queue (batcher and metric series) per loaded classifier, made on first use (the
        batcher needs the running event loop)."""
        queue = self.queues.get(id(classifier))
        if queue is None:
            if classifier.closed:
                raise QueueFullError("this model version was just replaced")  # 503, Retry-After
            series = ModelSeries.of(classifier.name, classifier.version)
            batcher = Batcher(
                classifier.classify_async,
                workers=classifier.pool.size,
                max_batch_size=classifier.batch_policy.max_batch_size,
                max_delay_ms=self.settings.max_batch_delay_ms,
                max_queue_images=self.settings.max_queue_images,
                on_batch=series.record_batch,
            )
            queue = self.queues[id(classifier)] = ModelQueue(classifier, batcher, series)
        return queue

    async def reload(self) -> ReloadReport:
        """Rescan the model directory off the event loop, then retire what was replaced."""
        report = await asyncio.to_thread(self.registry.reload)
        await self.retire_unloaded()
        return report

    async def retire_unloaded(self) -> None:
        """Close the batchers of classifiers a reload replaced or removed, once their queues drain
        (requests already queued finish on the version they started with), then their predictors."""
        retired = self.registry.take_retired()
        live = {id(classifier) for classifier in self.registry.classifiers()}
        for key in [k for k in self.queues if k not in live]:
            await self.queues.pop(key).batcher.close()
        for classifier in retired:
            await asyncio.to_thread(classifier.close)

    def admit(self, classifier: Classifier, images: int) -> Admission:
        """Reserve queue room for a request before decoding it; raises QueueFullError at once."""
        batcher = self.queue_for(classifier).batcher
        batcher.reserve(images)
        return Admission(batcher, images)

    async def classify(self, classifier: Classifier, inputs: Sequence[Input],
                       admission: Admission | None = None) -> tuple[list[Outcome], BatchTiming]:
        """Queue encoded images or model inputs on the model's batcher: an Outcome per input (its
        probabilities or its own error), and where the batch's time went."""
        queue = self.queue_for(classifier)
        result = await self.submit(queue, inputs, admission)
        # The batcher times whole predictor calls (decoding included, where the predictor decodes);
        # report the model runs: the first outcome of each chunk the batcher split the request into.
        chunk = queue.batcher.max_batch_size
        model_ms = sum(outcome.inference_ms for outcome in result.outcomes[::chunk])
        return result.outcomes, BatchTiming(result.timing.queue_ms, model_ms, result.timing.batch_size)

    async def submit(self, queue: ModelQueue, inputs: Sequence[Input],
                     admission: Admission | None) -> BatchResult[Outcome]:
        """Raises the batcher's QueueFull/Timeout/Inference errors."""
        queue.series.queue_depth.set(queue.batcher.queued_images + len(inputs))
        reserved = 0
        if admission is not None:
            reserved, admission.held = admission.held, 0
        result = await queue.batcher.submit(inputs, self.settings.request_timeout_ms / 1000, reserved)
        queue.series.queue_depth.set(queue.batcher.queued_images)
        queue.series.queue_wait.observe(result.timing.queue_ms / 1000)
        return result

    async def close(self) -> None:
        """Drain every batcher, then stop every predictor."""
        for queue in self.queues.values():
            await queue.batcher.close()
        await asyncio.to_thread(self.registry.close)
