"""What the lifespan builds and the routers use: settings, the model registry, the batchers.

A model version's queue (its batcher and metric series) is made on its first request and lives
until a reload replaces or removes the version. From that moment (the registry marks the
classifier retired as it swaps) no new work reaches it: a request that looked the old version up
just before the swap is refused with 503 and Retry-After, or, if it was already admitted, is
refused by the closed batcher. What was queued finishes on the old version, for at most the
request timeout; then its predictor processes are stopped, whatever they are doing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.config import Settings
from app.inference.batcher import Batcher, BatchResult, BatchTiming, QueueFullError
from app.inference.classifier import Classifier, Input, Outcome
from app.inference.predictor_process import name_process, process_context
from app.inference.registry import ModelRegistry, ReloadReport
from app.parsing import JsonParser
from app.telemetry import ModelSeries

log = logging.getLogger(__name__)


@dataclass
class ModelQueue:
    """A loaded classifier with its batcher and metric series, made together on first use."""

    classifier: Classifier
    batcher: Batcher[Input, Outcome]
    series: ModelSeries


@dataclass
class Admission:
    """Room reserved in one queue for a request's images; they go to that queue and no other."""

    queue: ModelQueue
    held: int  # images still reserved; handed over to the queue on submit

    def release(self) -> None:
        self.queue.batcher.release(self.held)
        self.held = 0

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass
class Runtime:
    settings: Settings
    registry: ModelRegistry
    # Keyed by id(classifier); the classifier is kept in its queue so the id is never reused.
    queues: dict[int, ModelQueue] = field(default_factory=dict)
    draining: bool = False  # set on SIGTERM: readiness answers 503 while in-flight work finishes
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    retired: list[Classifier] = field(default_factory=list)  # taken from the registry, maybe not yet closed
    json_parser: JsonParser = field(default_factory=lambda: JsonParser(process_context(), name_process))

    def queue_for(self, classifier: Classifier) -> ModelQueue:
        """One queue (batcher and metric series) per loaded classifier, made on first use (the
        batcher needs the running event loop). A retired classifier gets none: QueueFullError."""
        if classifier.retired or classifier.closed:
            raise QueueFullError("this model version was just replaced; retry")  # 503, Retry-After
        queue = self.queues.get(id(classifier))
        if queue is None:
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

    def check_room(self, classifier: Classifier, images: int) -> None:
        """Refuse an overload (QueueFullError) before a request's body is read; reserves nothing,
        so a client that is slow to send holds no room meanwhile."""
        self.queue_for(classifier).batcher.check_room(images)

    def admit(self, classifier: Classifier, images: int) -> Admission:
        """Reserve queue room for a request's images once they are read, before they are
        classified; raises QueueFullError at once."""
        queue = self.queue_for(classifier)
        queue.batcher.reserve(images)
        return Admission(queue, images)

    async def classify(self, admission: Admission, inputs: Sequence[Input]) -> tuple[list[Outcome], BatchTiming]:
        """Queue encoded images or model inputs on the admitted queue's batcher: an Outcome per
        input (its probabilities or its own error), and where the batch's time went."""
        queue = admission.queue
        result = await self.submit(queue, inputs, admission)
        # The batcher times whole predictor calls (decoding included, where the predictor decodes);
        # report the model runs: the first outcome of each chunk the batcher split the request into.
        chunk = queue.batcher.max_batch_size
        model_ms = sum(outcome.inference_ms for outcome in result.outcomes[::chunk])
        return result.outcomes, BatchTiming(result.timing.queue_ms, model_ms, result.timing.batch_size)

    async def submit(self, queue: ModelQueue, inputs: Sequence[Input], admission: Admission) -> BatchResult[Outcome]:
        """Raises the batcher's QueueFull/Timeout/Inference errors."""
        queue.series.queue_depth.set(queue.batcher.queued_images + len(inputs))
        reserved, admission.held = admission.held, 0
        result = await queue.batcher.submit(inputs, self.settings.request_timeout_ms / 1000, reserved)
        queue.series.queue_depth.set(queue.batcher.queued_images)
        queue.series.queue_wait.observe(result.timing.queue_ms / 1000)
        return result

    async def reload(self) -> ReloadReport:
        """Rescan the model directory off the event loop; what it replaced or removed is retired
        in the background (the reload does not wait for their queues to drain)."""
        report = await asyncio.to_thread(self.registry.reload)
        self.retire_unloaded()
        return report

    def retire_unloaded(self) -> None:
        """Close what a reload replaced or removed: its batcher admits nothing more from now on,
        what it holds gets the request timeout to finish, then its predictors are stopped."""
        for classifier in self.registry.take_retired():
            self.retired.append(classifier)
            queue = self.queues.pop(id(classifier), None)
            if queue is not None:
                queue.batcher.stop_admitting()
            task = asyncio.get_running_loop().create_task(self.retire(classifier, queue))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)

    async def retire(self, classifier: Classifier, queue: ModelQueue | None) -> None:
        if queue is not None:
            await queue.batcher.close(self.settings.request_timeout_ms / 1000)
        await asyncio.to_thread(classifier.close)
        self.retired.remove(classifier)
        log.info("retired %s/%d", classifier.name, classifier.version)

    async def close(self) -> None:
        """Drain every batcher (bounded by the shutdown time), then stop every predictor."""
        grace = self.settings.shutdown_seconds
        for queue in list(self.queues.values()):
            await queue.batcher.close(grace)
        if self.retiring:
            await asyncio.wait(self.retiring, timeout=grace)
        for task in list(self.retiring):
            task.cancel()
        self.json_parser.close()
        leftover, self.retired = self.retired, []
        await asyncio.to_thread(self.registry.close)
        for classifier in leftover:
            await asyncio.to_thread(classifier.close)

    def kill(self) -> None:
        """Stop every predictor process at once, without waiting for anything (shutdown overran)."""
        for classifier in [*self.registry.classifiers(), *self.retired]:
            classifier.kill()
