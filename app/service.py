"""What every protocol (/v1, /v2) does with a request, in order: lookup -> admit -> read ->
classify -> results. Routes read the body themselves (its form is the protocol's); everything
else they ask of the ModelService, which answers in the service's errors (ApiError).

A model version's queue (its batcher and metric series) is made on its first request and lives
until a reload replaces or removes the version. From that moment (the registry marks the version
retired as it swaps) no new work reaches it: a request that looked the old version up just before
the swap is refused with 503 and Retry-After, or, if it was already admitted, is refused by the
closed batcher. What was queued finishes on the old version, for at most the request timeout;
then its predictors are stopped, whatever they are doing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.config import Settings
from app.errors import ApiError
from app.inference.batcher import Batcher, BatchTiming, InferenceError, QueueFullError, QueueTimeoutError
from app.inference.handler import Outcome
from app.inference.input_errors import ImageDecodeError, ImageTooLargeError, PreprocessError, UnsupportedImageError
from app.inference.model_version import ModelVersion
from app.inference.pools.processes import name_process, process_context
from app.inference.postprocess import Prediction
from app.inference.preprocess import Input
from app.inference.registry import ModelNotFoundError, ModelNotReadyError, ModelRegistry, ReloadReport
from app.parsing import JsonParser
from app.signals import restore_signal_handlers
from app.telemetry import ModelSeries

log = logging.getLogger(__name__)


@dataclass
class ModelQueue:
    """A loaded model version with its batcher and metric series, made together on first use."""

    model: ModelVersion
    batcher: Batcher[Input, Outcome]
    series: ModelSeries


@dataclass
class Admission:
    """Room reserved in one queue for a request's images; they go to that queue and no other.
    A context manager: leaving it releases what the request still holds."""

    queue: ModelQueue
    held: int  # images still reserved; handed over to the queue on submit

    def release(self) -> None:
        self.queue.batcher.release(self.held)
        self.held = 0

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def overloaded(exc: QueueFullError) -> ApiError:
    return ApiError(503, "overloaded", f"the server is at capacity: {exc}; retry shortly",
                    headers={"Retry-After": "1"})


def input_error(exc: Exception) -> ApiError:
    """What one input's failure means to the client: 4xx for its bytes, 500 for anything else."""
    if isinstance(exc, UnsupportedImageError):
        return ApiError(415, "unsupported_media_type", str(exc))
    if isinstance(exc, ImageDecodeError):
        return ApiError(400, "invalid_image", str(exc))
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", str(exc))
    if isinstance(exc, PreprocessError):
        return ApiError(422, "unusable_image", str(exc))
    log.error("preparing an image failed: %s: %s", type(exc).__name__, exc)
    return ApiError(500, "inference_failed", f"preparing the image failed on the server: {type(exc).__name__}")


def probabilities_of(outcome: Outcome) -> np.ndarray:
    """One input's probabilities (K,), or its own error as the client should see it."""
    if outcome.error is not None or outcome.probabilities is None:
        raise input_error(outcome.error or RuntimeError("no probabilities"))
    return outcome.probabilities


class BatcherErrors:
    """The batcher's errors as API errors: 503 overloaded, 504 timeout, 500 for a failed batch.
    A class, not @contextmanager: it is entered on every prediction, and a generator costs more."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, trace: object) -> None:
        if isinstance(exc, QueueFullError):
            raise overloaded(exc) from exc
        if isinstance(exc, QueueTimeoutError):
            raise ApiError(504, "timeout", f"inference did not finish in time: {exc}") from exc
        if isinstance(exc, InferenceError):
            raise ApiError(500, "inference_failed", str(exc)) from exc


@dataclass
class ModelService:
    settings: Settings
    registry: ModelRegistry
    # Keyed by id(model); the model is kept in its queue so the id is never reused.
    queues: dict[int, ModelQueue] = field(default_factory=dict)
    draining: bool = False  # set on SIGTERM: readiness answers 503 while in-flight work finishes
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    retired: list[ModelVersion] = field(default_factory=list)  # taken from the registry, maybe not yet closed
    json_parser: JsonParser = field(default_factory=lambda: JsonParser(process_context(), name_process))

    # lookup

    def lookup(self, name: str, version: int | None = None) -> ModelVersion:
        """The version a request names, or its model's default: 404 if there is none, 503 while it
        loads or after it failed."""
        try:
            return self.registry.get(name, version)
        except ModelNotFoundError as exc:
            raise ApiError(404, "model_not_found", str(exc)) from exc
        except ModelNotReadyError as exc:
            raise ApiError(503, "model_not_ready", str(exc), headers={"Retry-After": "1"}) from exc

    def versions_of(self, name: str) -> list[int]:
        return next((sorted(e.versions) for e in self.registry.models() if e.name == name), [])

    # admit

    def queue_for(self, model: ModelVersion) -> ModelQueue:
        """One queue (batcher and metric series) per loaded version, made on first use (the batcher
        needs the running event loop). A retired version gets none: QueueFullError."""
        if model.retired or model.closed:
            raise QueueFullError("this model version was just replaced; retry")  # 503, Retry-After
        queue = self.queues.get(id(model))
        if queue is None:
            series = ModelSeries.of(model.name, model.version)
            batcher = Batcher(
                model.classify_async,
                workers=model.pool.size,
                max_batch_size=model.batch_policy.max_batch_size,
                max_delay_ms=self.settings.max_batch_delay_ms,
                max_queue_images=self.settings.max_queue_images,
                on_batch=series.record_batch,
            )
            queue = self.queues[id(model)] = ModelQueue(model, batcher, series)
        return queue

    def check_room(self, model: ModelVersion, images: int = 1) -> None:
        """Refuse an overload (503) before a request's body is read; reserves nothing, so a client
        that is slow to send holds no room meanwhile."""
        try:
            self.queue_for(model).batcher.check_room(images)
        except QueueFullError as exc:
            raise overloaded(exc) from exc

    def check_request_pixels(self, model: ModelVersion, images: Sequence[bytes]) -> None:
        """Bound the decoding one request may ask for: the pixels its images declare, summed (read
        from their headers only). A single image is bounded by the per-image limit where it is
        decoded; this is for requests of several."""
        if len(images) < 2:
            return
        limit, total = self.settings.max_request_pixels, 0
        for data in images:
            try:
                width, height = model.handler.image_size(data)
            except (ImageDecodeError, ImageTooLargeError):
                continue  # that image fails on its own, where it is decoded
            total += width * height
        if total > limit:
            raise ApiError(413, "request_too_large", f"the images add up to {total} pixels; the limit is {limit} "
                                                     f"per request: send them in smaller requests")

    def admit(self, model: ModelVersion, images: int) -> Admission:
        """Reserve queue room for a request's images once they are read, before they are
        classified: 503 at once when there is none."""
        try:
            queue = self.queue_for(model)
            queue.batcher.reserve(images)
        except QueueFullError as exc:
            raise overloaded(exc) from exc
        return Admission(queue, images)

    # classify

    async def classify(self, admission: Admission, inputs: Sequence[Input]) -> tuple[list[Outcome], BatchTiming]:
        """Queue encoded images or model inputs on the admitted queue's batcher: an Outcome per
        input (its probabilities or its own error), and where the batch's time went."""
        queue = admission.queue
        queue.series.queue_depth.set(queue.batcher.queued_images + len(inputs))
        reserved, admission.held = admission.held, 0
        with BatcherErrors():
            result = await queue.batcher.submit(inputs, self.settings.request_timeout_ms / 1000, reserved)
        queue.series.queue_depth.set(queue.batcher.queued_images)
        queue.series.queue_wait.observe(result.timing.queue_ms / 1000)
        # The batcher times whole predictor calls (decoding included, where the predictor decodes);
        # report the model runs: the first outcome of each chunk the batcher split the request into.
        chunk = queue.batcher.max_batch_size
        model_ms = sum(outcome.inference_ms for outcome in result.outcomes[::chunk])
        return result.outcomes, BatchTiming(result.timing.queue_ms, model_ms, result.timing.batch_size)

    # results

    def resolve_top_k(self, model: ModelVersion, requested: int | None) -> int:
        count = len(model.labels)
        if requested is None:
            return min(self.settings.default_top_k, count)
        if requested > count:
            raise ApiError(422, "invalid_top_k", f"top_k is {requested}; model {model.name} has {count} classes")
        return requested

    @staticmethod
    def predictions(model: ModelVersion, outcome: Outcome, k: int) -> list[Prediction]:
        """One input's k best classes, or its own error as the client should see it."""
        return model.handler.top_k(probabilities_of(outcome), k)

    # the models' lifecycle

    async def reload(self) -> ReloadReport:
        """Rescan the model directory off the event loop; what it replaced or removed is retired
        in the background (the reload does not wait for their queues to drain)."""
        report = await asyncio.to_thread(self.registry.reload)
        restore_signal_handlers()  # the reload may have created Paddle predictors in this process
        self.retire_unloaded()
        return report

    def retire_unloaded(self) -> None:
        """Close what a reload replaced or removed: its batcher admits nothing more from now on,
        what it holds gets the request timeout to finish, then its predictors are stopped."""
        for model in self.registry.take_retired():
            self.retired.append(model)
            queue = self.queues.pop(id(model), None)
            if queue is not None:
                queue.batcher.stop_admitting()
            task = asyncio.get_running_loop().create_task(self.retire(model, queue))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)

    async def retire(self, model: ModelVersion, queue: ModelQueue | None) -> None:
        if queue is not None:
            await queue.batcher.close(self.settings.request_timeout_ms / 1000)
        await asyncio.to_thread(model.close)
        self.retired.remove(model)
        log.info("retired %s/%d", model.name, model.version)

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
        for model in leftover:
            await asyncio.to_thread(model.close)

    def kill(self) -> None:
        """Stop every predictor at once, without waiting for anything (shutdown overran)."""
        for model in [*self.registry.loaded_versions(), *self.retired]:
            model.kill()
