"""The Paddle Inference backend: OpenMP spin time after a run, the solo copy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, TypeVar

import numpy as np
import pytest

from app.inference.backends import BackendOptions, BackendSpec, load_backend
from app.inference.backends.paddle import PaddleBackend, import_paddle
from app.inference.cpu import intel_openmp
from tests.conftest import MODELS_DIR

LENET = MODELS_DIR / "mnist-lenet" / "1"
T = TypeVar("T")


def in_new_thread(function: Callable[[], T]) -> T:
    """The blocktime is per thread: each check starts from a thread that has not run anything."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(function()))
    thread.start()
    thread.join()
    return results[0]


def lenet(options: BackendOptions) -> PaddleBackend:
    backend = load_backend(BackendSpec("paddle", LENET / "inference.json", LENET / "inference.pdiparams", options))
    assert isinstance(backend, PaddleBackend)
    return backend


def lenet_spinning(blocktime: int | Literal["auto"] | None) -> PaddleBackend:
    return lenet(BackendOptions("cpu", cpu_threads=2, omp_blocktime_ms=blocktime))


@pytest.fixture(scope="module")
def openmp():  # noqa: ANN201
    import_paddle()  # which loads the OpenMP runtime
    runtime = intel_openmp()
    if runtime is None:
        pytest.skip("this Paddle build does not use Intel's OpenMP runtime")
    return runtime


def test_paddle_backend_blocktime_is_set_in_the_thread_that_runs(openmp) -> None:  # noqa: ANN001
    predictor = lenet_spinning(blocktime=3)

    def run_then_read() -> int:
        predictor.run(np.zeros((1, 1, 28, 28), dtype=np.float32))
        return openmp.kmp_get_blocktime()

    assert in_new_thread(run_then_read) == 3


def test_paddle_backend_auto_blocktime_is_short_for_a_small_model(openmp) -> None:  # noqa: ANN001
    """LeNet runs in well under a millisecond: its threads must not keep spinning for OpenMP's 200 ms
    (how much CPU they then burn cannot be asserted: the runtime itself stops spinning when a
    process has more math threads than cores, as this test process does)."""
    predictor = lenet_spinning(blocktime="auto")

    def run_then_read() -> int:
        for _ in range(6):  # the first runs of a new batch shape build oneDNN kernels: they are slow
            predictor.run(np.zeros((8, 1, 28, 28), dtype=np.float32))
        return openmp.kmp_get_blocktime()

    assert 1 <= in_new_thread(run_then_read) < 50  # ~1 here; a busy machine slows single runs


def test_paddle_backend_with_solo_threads_answers_alike_on_both_copies() -> None:
    predictor = lenet(BackendOptions("cpu", cpu_threads=1, solo_threads=2))
    batch = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert predictor.has_solo and predictor.clone().has_solo
    np.testing.assert_allclose(predictor.run(batch, solo=True), predictor.run(batch), rtol=1e-4, atol=1e-5)
    # No solo copy where it would have no more threads than the predictor itself.
    assert not lenet_spinning(blocktime=None).has_solo


def test_paddle_backend_describes_its_runtime() -> None:
    info = lenet(BackendOptions("cpu", cpu_threads=1, omp_blocktime_ms="auto")).describe()
    assert info == {"backend": "paddle-inference", "device": "cpu", "cpu_threads": 1, "onednn": True,
                    "precision": "fp32", "omp_blocktime_ms": "auto"}


def test_load_backend_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_backend(BackendSpec("tensorrt", LENET / "inference.json", LENET / "inference.pdiparams",
                                 BackendOptions()))


def test_paddle_backend_spins_between_runs_unless_openmp_is_told_not_to() -> None:
    assert lenet_spinning(blocktime="auto").spins_between_runs
    assert not lenet_spinning(blocktime=0).spins_between_runs  # a predictor process may then poll instead
