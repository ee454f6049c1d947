"""The Paddle Inference predictor wrapper: OpenMP spin time after a run."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pytest

from app.inference.predictor import (
    Predictor, RuntimeOptions, import_paddle, intel_openmp, spin_ms, usable_cpus,
)

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
    assert [spin_ms("auto", ms) for ms in (0.0, 0.12, 0.7, 4.6, 500.0)] == [1, 1, 2, 10, 200]
    assert spin_ms(7, 500.0) == 7 and spin_ms(None, 5.0) is None


def test_predictor_auto_blocktime_is_short_for_a_small_model(openmp) -> None:  # noqa: ANN001
    """LeNet runs in well under a millisecond: its threads must not keep spinning for OpenMP's 200 ms
    (how much CPU they then burn cannot be asserted: the runtime itself stops spinning when a
    process has more math threads than cores, as this test process does)."""
    predictor = lenet(blocktime="auto")

    def run_then_read() -> int:
        for _ in range(6):  # the first runs of a new batch shape build oneDNN kernels: they are slow
            predictor.run(np.zeros((8, 1, 28, 28), dtype=np.float32))
        return openmp.kmp_get_blocktime()

    assert 1 <= in_new_thread(run_then_read) < 50  # ~1 here; a busy machine slows single runs


def test_predictor_with_solo_threads_answers_alike_on_both_copies() -> None:
    predictor = Predictor.create(LENET / "inference.json", LENET / "inference.pdiparams",
                                 RuntimeOptions("cpu", cpu_threads=1, solo_threads=2))
    batch = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert predictor.has_solo and predictor.clone().has_solo
    np.testing.assert_allclose(predictor.run(batch, solo=True), predictor.run(batch), rtol=1e-4, atol=1e-5)
    # No solo copy where it would have no more threads than the predictor itself.
    assert not lenet(blocktime=None).has_solo


@pytest.mark.parametrize(("files", "expected_cap"), [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2, docker --cpus 1.5
    ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1, --cpus 1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
    ({}, None),  # no cgroup files at all
])
def test_usable_cpus_honours_the_container_cpu_limit(tmp_path: Path, files: dict[str, str],
                                                       expected_cap: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (min(affinity, expected_cap) if expected_cap else affinity)
