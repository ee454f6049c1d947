"""Dynamic batching: requests queue per model; workers take what is queued (up to the model's max
batch size, waiting at most `max_delay_ms` for more), run it through one predictor call, and hand
each request its own outcomes back.

What a request queues (encoded images, arrays) and what comes back per input are the predict
function's business: the batcher only counts, groups and scatters them, in order.

One worker per predictor in the pool, so N predictors run N batches at once while the event loop
keeps decoding and queueing; `predict` is awaited, so where it runs (a child process, a thread,
or inline) is the pool's business. It is told whether its batch is alone: no other batch running,
none left queued for another worker to take (a model may then give it all the cores). No FastAPI
here: errors are plain exceptions the routers map.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """More images are waiting than the queue admits: answer 503 at once rather than queue forever."""


class QueueTimeoutError(RuntimeError):
    """The request waited longer than its deadline."""


class InferenceError(RuntimeError):
    """The predictor raised while running a batch this request was part of."""


@dataclass
class BatchTiming:
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 0


S = TypeVar("S")  # one input as queued
R = TypeVar("R")  # what became of it


@dataclass
class _Item:
    inputs: list[Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


def answered(future_ref: weakref.ref[asyncio.Future]) -> bool:
    future = future_ref()
    return future is None or future.done()


@dataclass
class BatchResult(Generic[R]):
    outcomes: list[R]  # one per input, in the order submitted
    timing: BatchTiming


class Batcher(Generic[S, R]):
    def __init__(
        self,
        predict: Callable[[list[S], bool], Awaitable[list[R]]],
        workers: int,
        max_batch_size: int,
        max_delay_ms: float,
        max_queue_images: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay = max(0.0, max_delay_ms) / 1000
        self.max_queue_images = max(1, max_queue_images)
        self._queue: deque[_Item] = deque()
        self._queued_images = 0
        self._reserved_images = 0  # admitted requests still being decoded, not yet queued
        self._wakeup = asyncio.Event()
        self._on_batch = on_batch
        self._closed = False
        self._busy = 0
        # Pending deadlines, earliest first, watched by one timer for the whole batcher:
        # asyncio.wait_for made a timer, a waiter future and callbacks per request, a noticeable
        # share of the server's CPU per small-model request. Entries hold a weak reference to the request's future, so
        # answered requests queued behind a slow one are not kept alive until it finishes.
        self._deadlines: list[tuple[float, int, weakref.ref[asyncio.Future], float]] = []
        self._order = itertools.count()
        self._deadline_timer: asyncio.TimerHandle | None = None
        # What each worker is running, with the requests in it: when every one of them has given
        # up (timed out), the worker's run is cancelled rather than left to occupy a predictor.
        self._running: dict[asyncio.Task[None], list[_Item]] = {}
        self._abandoning: set[asyncio.Task[None]] = set()
        self._workers = [asyncio.get_running_loop().create_task(self._work()) for _ in range(max(1, workers))]

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def check_room(self, images: int) -> None:
        """Raise QueueFullError if `images` more would not fit now; reserves nothing."""
        if self._closed:
            raise QueueFullError("this model version is closing; retry")
        if self._queued_images + self._reserved_images + images > self.max_queue_images:
            raise QueueFullError(f"{self._queued_images + self._reserved_images} images are already waiting "
                                 f"for this model")

    def reserve(self, images: int) -> None:
        """Admit a request before its images are decoded, so an overload is refused at once,
        before any work is spent on it. Pair with release() (or submit(..., reserved=images))."""
        self.check_room(images)
        self._reserved_images += images

    def release(self, images: int) -> None:
        self._reserved_images -= images

    async def submit(self, inputs: Sequence[S], timeout: float | None, reserved: int = 0) -> BatchResult[R]:
        """Requests larger than the max batch size are split into chunks.
        `reserved`: images this request reserved earlier; they are released here."""
        self.release(reserved)
        if self._closed:
            raise QueueFullError("this model version is closing; retry")
        if self._queued_images + self._reserved_images + len(inputs) > self.max_queue_images:
            raise QueueFullError(f"{self._queued_images} images are already queued for this model")
        chunks = [list(inputs[i : i + self.max_batch_size]) for i in range(0, len(inputs), self.max_batch_size)]
        loop = asyncio.get_running_loop()
        items = [_Item(chunk, loop.create_future()) for chunk in chunks]
        for item in items:
            self._queue.append(item)
            self._queued_images += len(item.inputs)
        self._wakeup.set()
        if timeout is not None:
            self._watch_deadline(items, loop.time() + timeout, timeout)
        try:
            if len(items) == 1:
                return await items[0].future
            results: list[BatchResult[R]] = await asyncio.gather(*(item.future for item in items))
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()  # workers skip cancelled items still in the queue
        return BatchResult(
            [outcome for result in results for outcome in result.outcomes],
            BatchTiming(
                queue_ms=max(r.timing.queue_ms for r in results),
                inference_ms=sum(r.timing.inference_ms for r in results),
                batch_size=max(r.timing.batch_size for r in results),
            ),
        )

    def _watch_deadline(self, items: list[_Item], deadline: float, timeout: float) -> None:
        while self._deadlines and answered(self._deadlines[0][2]):
            heapq.heappop(self._deadlines)
        for item in items:
            heapq.heappush(self._deadlines, (deadline, next(self._order), weakref.ref(item.future), timeout))
        if self._deadline_timer is None or deadline < self._deadline_timer.when():
            self._arm_deadline_timer()

    def _arm_deadline_timer(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_timer = None
        if self._deadlines:
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_at(self._deadlines[0][0], self._expire_deadlines)

    def _expire_deadlines(self) -> None:
        """Fail what is still waiting at its deadline, queued or running: 504 at once."""
        self._deadline_timer = None
        now = asyncio.get_running_loop().time()
        while self._deadlines and (self._deadlines[0][0] <= now or answered(self._deadlines[0][2])):
            _deadline, _order, future_ref, timeout = heapq.heappop(self._deadlines)
            future = future_ref()
            if future is not None and not future.done():
                future.set_exception(QueueTimeoutError(f"no result within {timeout * 1000:.0f} ms"))
        self._abandon_unwanted()
        self._arm_deadline_timer()

    def _abandon_unwanted(self) -> None:
        """Cancel runs whose requests have all been answered already (timed out): a batch of huge
        images must not keep a predictor busy for minutes after its clients got their 504."""
        for worker, batch in list(self._running.items()):
            if worker not in self._abandoning and all(item.future.done() for item in batch):
                log.warning("cancelling a batch of %d images: every request in it has timed out",
                            sum(len(item.inputs) for item in batch))
                self._abandoning.add(worker)
                worker.cancel()

    def _take_batch(self) -> list[_Item]:
        """Queued requests in order, up to the max batch size and to this worker's share of what is
        queued: beside an idle worker, two queued images run at once on two predictors instead of
        one after the other on one (for a compute-bound model, two batches of one on two
        one-thread predictors answer more images/s than one batch of two)."""
        idle = len(self._workers) - self._busy
        limit = min(self.max_batch_size, -(-self._queued_images // max(1, idle)))
        batch: list[_Item] = []
        size = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # cancelled by a timeout: drop it
                self._queue.popleft()
                self._queued_images -= len(item.inputs)
                continue
            if batch and size + len(item.inputs) > limit:
                break
            self._queue.popleft()
            self._queued_images -= len(item.inputs)
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_delay and sum(len(i.inputs) for i in self._queue) < self.max_batch_size:
                await asyncio.sleep(self.max_delay)
            batch = self._take_batch()
            if not batch:
                continue
            if self._queue:
                self._wakeup.set()  # let another idle worker start on what is left
            alone = not self._busy and (not self._queue or len(self._workers) == 1)
            self._busy += 1
            try:
                await self._run(batch, alone)
            finally:
                self._busy -= 1

    async def _run(self, batch: list[_Item], alone: bool) -> None:
        inputs = batch[0].inputs if len(batch) == 1 else [x for item in batch for x in item.inputs]
        started = time.perf_counter()
        worker = asyncio.current_task()
        assert worker is not None
        self._running[worker] = batch
        try:
            outcomes = await self._predict(inputs, alone)
            if len(outcomes) != len(inputs):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(inputs)} inputs")
        except asyncio.CancelledError:
            abandoned = worker in self._abandoning
            self._abandoning.discard(worker)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(InferenceError("the model version closed while this request ran"))
            if abandoned and worker.cancelling() == 1:
                worker.uncancel()  # only this run was given up: the worker goes on
                return
            raise  # the batcher is closing
        except Exception as exc:  # noqa: BLE001 - fail this batch's requests, keep the worker alive
            log.exception("inference failed for a batch of %d", len(inputs))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(InferenceError(f"inference failed: {type(exc).__name__}: {exc}"))
            return
        finally:
            self._running.pop(worker, None)
        inference_ms = (time.perf_counter() - started) * 1000
        if self._on_batch:
            self._on_batch(len(inputs), inference_ms)
        offset = 0
        for item in batch:
            rows = outcomes[offset : offset + len(item.inputs)]
            offset += len(item.inputs)
            if not item.future.done():
                timing = BatchTiming((started - item.enqueued) * 1000, inference_ms, len(inputs))
                item.future.set_result(BatchResult(rows, timing))

    def stop_admitting(self) -> None:
        """From now on check_room, reserve and submit refuse (QueueFullError)."""
        self._closed = True

    async def close(self, grace: float | None = None) -> None:
        """Admit nothing new; stop the workers once queued and running batches have finished, or
        after `grace` seconds at most (what is still queued or running then fails)."""
        self._closed = True
        deadline = None if grace is None else time.perf_counter() + grace
        while (self._queue or self._busy) and (deadline is None or time.perf_counter() < deadline):
            await asyncio.sleep(0.01)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(QueueFullError("this model version closed before the request ran"))
