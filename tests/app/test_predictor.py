"""The Paddle Inference predictor wrapper: OpenMP spin time after a run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pytest

from app.inference.predictor import Predictor, RuntimeOptions, import_paddle, intel_openmp, spin_ms

LENET = Path(__file__).resolve().parents[2] / "models" / "mnist-lenet" / "1"
T = TypeVar("T")


def in_new_thread(function: Callable[[], T]) -> T:
    """The blocktime is per thread: each check starts from a thread that has not run anything."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(function()))
    thread.start()
    thread.join()
    return results[0]


def lenet(blocktime: int | Literal["auto"] | None) -> Predictor:
    return Predictor.create(LENET / "inference.json", LENET / "inference.pdiparams",
                            RuntimeOptions("cpu", cpu_threads=2, omp_blocktime_ms=blocktime))


def idle_cpu_ms_after_runs(predictor: Predictor) -> float:
    """Process CPU time spent while the caller sleeps 0.2 s after a few runs: the math threads spinning."""
    time.sleep(0.25)  # threads that other tests' predictors left spinning go to sleep first
    batch = np.zeros((8, 1, 28, 28), dtype=np.float32)
    for _ in range(5):
        predictor.run(batch)
    started = time.process_time()
    time.sleep(0.2)
    return (time.process_time() - started) * 1000


@pytest.fixture(scope="module")
def openmp():  # noqa: ANN201
    import_paddle()  # which loads the OpenMP runtime
    runtime = intel_openmp()
    if runtime is None:
        pytest.skip("this Paddle build does not use Intel's OpenMP runtime")
    return runtime


def test_predictor_blocktime_is_set_in_the_thread_that_runs(openmp) -> None:  # noqa: ANN001
    predictor = lenet(blocktime=3)

    def run_then_read() -> int:
        predictor.run(np.zeros((1, 1, 28, 28), dtype=np.float32))
        return openmp.kmp_get_blocktime()

    assert in_new_thread(run_then_read) == 3


def test_spin_ms_auto_is_twice_the_last_run_within_bounds() -> None:
    assert spin_ms("auto", 0.0) == 1 and spin_ms("auto", 0.12) == 1 and spin_ms("auto", 0.7) == 2 and spin_ms("auto", 4.6) == 10
    assert spin_ms("auto", 500.0) == 200
    assert spin_ms(7, 500.0) == 7 and spin_ms(None, 5.0) is None


@pytest.mark.parametrize("blocktime", [1, "auto"])
def test_predictor_short_blocktime_stops_math_threads_spinning(openmp, blocktime) -> None:  # noqa: ANN001
    short = in_new_thread(lambda: idle_cpu_ms_after_runs(lenet(blocktime)))
    assert short < 40, f"{short:.0f} ms of CPU while idle for 200 ms"
    if "KMP_BLOCKTIME" not in os.environ:  # Intel's default (200 ms): a math thread spins the whole time
        spinning = in_new_thread(lambda: idle_cpu_ms_after_runs(lenet(blocktime=None)))
        assert spinning > 100 > short, (spinning, short)
