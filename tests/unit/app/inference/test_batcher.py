"""The dynamic batcher with a stand-in predict function (the real predictor is covered by the
server tests): batching, scatter, per-batch failure, backpressure, timeouts."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.inference.batcher import Batcher, InferenceError, QueueFullError, QueueTimeoutError
from app.inference.tuning import choose_batch_size


class RecordingModel:
    """Returns each input's first pixel as its 'probability', slowly, and records batch sizes."""

    def __init__(self, delay: float = 0.02, fail_when: float | None = None) -> None:
        self.delay, self.fail_when, self.sizes = delay, fail_when, []
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(batch))
        time.sleep(self.delay)
        if self.fail_when is not None and (batch[:, 0, 0, 0] == self.fail_when).any():
            raise RuntimeError("boom")
        return batch[:, 0, 0, :1].reshape(len(batch), 1)


def image(value: float) -> np.ndarray:
    return np.full((1, 2, 2), value, dtype=np.float32)


async def run_requests(batcher: Batcher, values: list[float], timeout: float | None = 5) -> list:
    return await asyncio.gather(*(batcher.submit([image(v)], timeout) for v in values), return_exceptions=True)


def make_batcher(model: RecordingModel, **kwargs: object) -> tuple[Batcher, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(4)

    async def predict(inputs: list[np.ndarray], alone: bool) -> list[np.ndarray]:
        return list(await asyncio.get_running_loop().run_in_executor(executor, model, np.stack(inputs)))

    options = {"workers": 1, "max_batch_size": 8, "max_delay_ms": 0, "max_queue_images": 100, **kwargs}
    return Batcher(predict, **options), executor


def test_batcher_groups_waiting_requests_and_scatters_results() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher, executor = make_batcher(model)
        results = await run_requests(batcher, [float(i) for i in range(20)])
        assert [float(r.outcomes[0][0]) for r in results] == [float(i) for i in range(20)]
        assert max(model.sizes) > 1 and sum(model.sizes) == 20 and max(model.sizes) <= 8
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_splits_requests_larger_than_max_batch() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0)
        batcher, executor = make_batcher(model, max_batch_size=4)
        result = await batcher.submit([image(i) for i in range(10)], 5)
        assert [float(row[0]) for row in result.outcomes] == list(range(10))
        assert max(model.sizes) <= 4
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_failure_fails_only_its_batch() -> None:
    async def scenario() -> None:
        model = RecordingModel(fail_when=3.0)
        batcher, executor = make_batcher(model, max_batch_size=1)
        results = await run_requests(batcher, [1.0, 2.0, 3.0, 4.0])
        assert isinstance(results[2], InferenceError)
        assert [float(r.outcomes[0][0]) for i, r in enumerate(results) if i != 2] == [1.0, 2.0, 4.0]
        later = await batcher.submit([image(5.0)], 5)
        assert float(later.outcomes[0][0]) == 5.0
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_refuses_when_queue_is_full() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0.2)
        batcher, executor = make_batcher(model, max_batch_size=1, max_queue_images=3)
        results = await run_requests(batcher, [float(i) for i in range(10)])
        refused = [r for r in results if isinstance(r, QueueFullError)]
        served = [r for r in results if not isinstance(r, Exception)]
        assert refused and served and len(refused) + len(served) == 10
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_times_out_and_drops_the_waiting_request() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0.3)
        batcher, executor = make_batcher(model, max_batch_size=1)
        results = await run_requests(batcher, [1.0, 2.0, 3.0], timeout=0.1)
        assert all(isinstance(r, QueueTimeoutError) for r in results)
        await asyncio.sleep(0.5)
        assert sum(model.sizes) < 3, "a timed-out request still queued must not be run"
        assert batcher.queued_images == 0
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_times_out_a_shorter_deadline_submitted_after_a_longer_one() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0.4)
        batcher, executor = make_batcher(model, max_batch_size=1)
        started = time.perf_counter()

        async def hasty() -> tuple[Exception, float]:
            try:
                await batcher.submit([image(2.0)], 0.1)
            except QueueTimeoutError as exc:
                return exc, time.perf_counter() - started
            raise AssertionError("no timeout")

        patient, (error, waited) = await asyncio.gather(batcher.submit([image(1.0)], 5), hasty())
        assert "100 ms" in str(error) and waited < 0.35  # not held back until the 0.4 s batch ends
        assert float(patient.outcomes[0][0]) == 1.0
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_batcher_keeps_no_answered_request_alive_behind_a_stuck_one() -> None:
    """The deadline watch must not hold the results of requests answered while an earlier one is
    still running: under load that would be seconds of responses kept in memory."""
    async def scenario() -> None:
        release = asyncio.Event()

        async def predict(inputs: list[np.ndarray], alone: bool) -> list[np.ndarray]:
            if inputs[0][0, 0, 0] == 0.0:
                await release.wait()  # the first request's batch hangs
            return [np.full(1000, x[0, 0, 0], dtype=np.float32) for x in inputs]

        batcher = Batcher(predict, workers=2, max_batch_size=1, max_delay_ms=0, max_queue_images=100)
        stuck = asyncio.ensure_future(batcher.submit([image(0.0)], 30))
        await asyncio.sleep(0.01)
        outputs = [weakref.ref((await batcher.submit([image(float(i))], 30)).outcomes[0]) for i in range(1, 20)]
        gc.collect()
        assert not stuck.done()
        assert all(ref() is None for ref in outputs[:-1])  # the free worker's last batch may linger
        release.set()
        assert float((await stuck).outcomes[0][0]) == 0.0
        await batcher.close()

    asyncio.run(scenario())


def test_batcher_waits_for_fuller_batch_with_delay() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0)
        batcher, executor = make_batcher(model, max_delay_ms=50)

        async def staggered(i: int):  # noqa: ANN202
            await asyncio.sleep(i * 0.005)
            return await batcher.submit([image(i)], 5)

        await asyncio.gather(*(staggered(i) for i in range(6)))
        assert model.sizes[0] > 1
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("measured", "expected"),
    [({1: 100.0, 8: 1000.0, 32: 1040.0}, 8), ({1: 240.0, 8: 160.0, 32: 148.0}, 1), ({1: 5.0}, 1),
     ({1: 154.7, 2: 198.5, 4: 215.7, 8: 214.5}, 4)],  # MobileNetV2 on one thread: 2 is within 92%
)
def test_choose_batch_size_prefers_smallest_near_best(measured: dict[int, float], expected: int) -> None:
    assert choose_batch_size(measured) == expected


def test_batcher_says_a_batch_is_alone_only_with_nothing_else_running_or_queued() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        seen: list[tuple[float, bool]] = []

        async def predict(inputs: list[np.ndarray], alone: bool) -> list[np.ndarray]:
            seen.append((float(inputs[0][0, 0, 0]), alone))
            if inputs[0][0, 0, 0] == 0.0:
                await release.wait()
            return [x[0, 0, :1] for x in inputs]

        batcher = Batcher(predict, workers=2, max_batch_size=4, max_delay_ms=0, max_queue_images=100)
        await batcher.submit([image(5.0)], 5)  # nothing else: alone
        stuck = asyncio.ensure_future(batcher.submit([image(0.0)], 5))
        await asyncio.sleep(0.01)
        await batcher.submit([image(1.0)], 5)  # beside a running batch: not alone
        release.set()
        await stuck
        assert seen == [(5.0, True), (0.0, True), (1.0, False)]
        await batcher.close()

        # One worker has no neighbour to share the cores with: every batch is alone, queue or not.
        flags: list[bool] = []

        async def recording(inputs: list[np.ndarray], alone: bool) -> list[np.ndarray]:
            flags.append(alone)
            await asyncio.sleep(0.01)
            return [x[0, 0, :1] for x in inputs]

        single = Batcher(recording, workers=1, max_batch_size=1, max_delay_ms=0, max_queue_images=100)
        await run_requests(single, [1.0, 2.0, 3.0])
        assert flags == [True, True, True]
        await single.close()

    asyncio.run(scenario())


def test_batcher_spreads_queued_images_over_idle_workers() -> None:
    async def scenario() -> None:
        model = RecordingModel(delay=0.05)
        batcher, executor = make_batcher(model, workers=2, max_batch_size=8)
        await run_requests(batcher, [1.0, 2.0])  # queued together: one each, side by side
        assert sorted(model.sizes) == [1, 1]
        model.sizes.clear()
        await run_requests(batcher, [float(i) for i in range(12)])
        assert max(model.sizes) <= 8 and sum(model.sizes) == 12 and len(model.sizes) >= 2
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())
