"""The only code that touches `paddle.inference`: device choice, predictor configuration, runs.

Paddle is imported lazily so that importing the app (or unit-testing preprocessing) stays cheap;
predictors are created in the lifespan, never at import.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

import numpy as np

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]
T = TypeVar("T")


class DeviceUnavailableError(RuntimeError):
    """APP_DEVICE=gpu was asked for, but this Paddle build or this machine cannot provide it."""


@dataclass(frozen=True)
class RuntimeOptions:
    device: Device = "cpu"
    cpu_threads: int = 1
    onednn: bool = True
    gpu_id: int = 0
    gpu_memory_mb: int = 512  # initial pool; Paddle grows it on demand
    new_executor: bool = False
    # How long OpenMP's math threads spin after a run before they sleep: milliseconds, "auto" (twice
    # the previous run, 1-200 ms), or None for the runtime's own (200 ms for Intel's). See spin_ms.
    omp_blocktime_ms: int | Literal["auto"] | None = None
    # Math threads for a batch that runs alone (nothing else running or queued for its model): above
    # cpu_threads, each predictor gets a second copy of the model on this many threads (see Predictor).
    solo_threads: int = 0

    @property
    def has_solo(self) -> bool:
        """Whether predictors hold the all-cores copy (CPU only, and only with more threads than cpu_threads)."""
        return self.device == "cpu" and self.solo_threads > self.cpu_threads

    def threads_for(self, solo: bool) -> int:
        """Math threads of the copy that `Predictor.run(..., solo)` uses."""
        return self.solo_threads if solo and self.has_solo else self.cpu_threads


def import_paddle() -> ModuleType:
    """Import Paddle and take the fatal-signal handlers it installs back out.

    Paddle's import installs C-level handlers (SIGTERM among them) that print a C++ trace and
    re-raise the signal. They silently replace uvicorn's graceful shutdown, and as PID 1 in a
    container the re-raised SIGTERM is ignored, so `docker stop` waits for SIGKILL. Callers in the
    main thread re-register Python's handlers afterwards (`signal.signal` reinstalls them in C).
    """
    import warnings

    with warnings.catch_warnings():
        # Paddle's C++-extension helper warns at import that ccache is missing: irrelevant to
        # inference, which compiles nothing.
        warnings.filterwarnings("ignore", message="No ccache found")
        import paddle

    paddle.disable_signal_handler()
    return paddle


def gpu_status() -> tuple[bool, str]:
    """(usable, why) for the CUDA predictor on this machine."""
    paddle = import_paddle()

    if not paddle.device.is_compiled_with_cuda():
        return False, f"paddlepaddle {paddle.__version__} is a CPU-only build (install paddlepaddle-gpu for CUDA)"
    count = paddle.device.cuda.device_count()
    if count < 1:
        return False, "Paddle has CUDA support but no CUDA device is visible (check drivers / CUDA_VISIBLE_DEVICES)"
    return True, f"{count} CUDA device(s) visible"


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity mask (taskset, docker --cpuset-cpus), capped by
    its cgroup's CPU quota (docker --cpus, Kubernetes limits), neither of which os.cpu_count()
    sees. With APP_CPU_THREADS=0 a compute-heavy model gets one predictor process per CPU: counted
    from os.cpu_count(), a container limited to 2 CPUs on a 64-core host would start 64."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota)) if quota else count)


def cpu_quota(cgroup_root: Path) -> float | None:
    """CPUs' worth of time per period that the cgroup allows (v2 cpu.max, or v1's cfs files); None
    where there is no limit or no such file."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def resolve_device(requested: str) -> tuple[Device, str]:
    """Map APP_DEVICE (auto|cpu|gpu) to the device to use, with a reason to log and report."""
    if requested == "cpu":
        return "cpu", "APP_DEVICE=cpu"
    usable, why = gpu_status()
    if requested == "gpu":
        if not usable:
            raise DeviceUnavailableError(f"APP_DEVICE=gpu but the GPU cannot be used: {why}")
        return "gpu", why
    if requested == "auto":
        return ("gpu", why) if usable else ("cpu", f"auto: no usable GPU ({why})")
    raise ValueError(f"unknown device {requested!r}: use auto, cpu or gpu")


_thread_state = threading.local()


@lru_cache(maxsize=1)
def intel_openmp() -> ctypes.CDLL | None:
    """Intel's OpenMP runtime, which Paddle's CPU build loads; None where it is not loaded. Ask
    after Paddle is imported (a predictor's run is): the answer is kept, as `auto` changes the
    blocktime almost every run of a large model."""
    try:
        return ctypes.CDLL("libiomp5.so", mode=os.RTLD_NOLOAD)
    except OSError:
        return None


def set_omp_blocktime(milliseconds: int | None) -> None:
    """Set, for the calling thread's OpenMP team, how long its math threads spin after a run
    (kmp_set_blocktime: the setting is per thread, so it is made in the thread that runs)."""
    if milliseconds is None or getattr(_thread_state, "omp_blocktime_ms", None) == milliseconds:
        return
    runtime = intel_openmp()
    if runtime is not None:
        runtime.kmp_set_blocktime(ctypes.c_int(milliseconds))
    _thread_state.omp_blocktime_ms = milliseconds


def spin_ms(setting: int | Literal["auto"] | None, last_run_ms: float) -> int | None:
    """How long the math threads should spin after the next run.

    Intel's default is 200 ms: after every run each math thread but the caller burns a core for
    0.2 s waiting for more work. Between a small model's sub-millisecond batches that spinning
    takes the core the HTTP server needs (measured: a lower share of the HTTP floor at c32). A
    model whose run takes milliseconds, though, pays to wake sleeping threads at every layer, and
    0 (sleep between layers too) costs it most. "auto" spins for twice the previous run, 1 to
    200 ms: short for a small model, long enough to bridge a large one's layers and batches."""
    if setting != "auto":
        return setting
    return min(200, max(1, math.ceil(2 * last_run_ms)))


class Predictor:
    """One Paddle Inference predictor. Not thread-safe: one caller at a time (the pool ensures it)."""

    def __init__(self, native: Any, options: RuntimeOptions, solo: "Predictor | None" = None) -> None:
        self._native = native
        self.options = options
        self._input = native.get_input_handle(native.get_input_names()[0])
        self._output = native.get_output_handle(native.get_output_names()[0])
        self.input_name: str = native.get_input_names()[0]
        self._last_run_ms = 0.0
        self._solo = solo

    @classmethod
    def create(cls, model_file: Path, params_file: Path, options: RuntimeOptions) -> "Predictor":
        """With options.solo_threads above cpu_threads, the predictor also holds a copy of the model on
        solo_threads math threads, for `run(..., solo=True)`. Paddle applies a predictor's thread count
        at each run, so the two take turns in one thread. Under load, one-thread predictors side by
        side (one per core) run more images/s than one team over all cores: the team waits at every
        layer for its slowest thread, and any other work on a core makes that thread slow. A lone
        image has no neighbour to run beside and gets all the cores."""
        solo = None
        if options.has_solo:
            solo = cls(cls.create_native(model_file, params_file, options, options.solo_threads), options)
        return cls(cls.create_native(model_file, params_file, options, options.cpu_threads), options, solo)

    @staticmethod
    def create_native(model_file: Path, params_file: Path, options: RuntimeOptions, threads: int) -> Any:
        from paddle import inference

        config = inference.Config(str(model_file), str(params_file))
        if options.device == "gpu":
            config.enable_use_gpu(options.gpu_memory_mb, options.gpu_id)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(max(1, threads))
            if options.onednn:
                # oneDNN is ~5x faster for convolutions on AVX-512 CPUs; plain CPU kernels otherwise.
                config.enable_mkldnn()
        config.switch_ir_optim(True)
        # Paddle's new executor hands each run to an internal worker thread; between requests that
        # thread sleeps, and waking it costs more than LeNet's whole inference. The classic
        # executor runs in the calling thread (measured: bench/serving.py, p50 4.5 -> 3.1 ms at c=1).
        config.enable_new_executor(options.new_executor)
        config.disable_glog_info()
        return inference.create_predictor(config)

    @property
    def has_solo(self) -> bool:
        return self._solo is not None

    def clone(self) -> "Predictor":
        """A second predictor sharing this one's weights (Paddle's clone), for another thread."""
        return Predictor(self._native.clone(), self.options, self._solo.clone() if self._solo else None)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """float32 (N, C, H, W) -> float32 (N, num_outputs); `solo`: on the all-cores copy, if any."""
        if solo and self._solo is not None:
            return self._solo.run(batch)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        set_omp_blocktime(spin_ms(self.options.omp_blocktime_ms, self._last_run_ms))
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        started = time.perf_counter()
        self._native.run()
        self._last_run_ms = (time.perf_counter() - started) * 1000
        return self._output.copy_to_cpu()


class Lender(Generic[T]):
    """Lends each of a fixed set of items to one caller at a time; further callers wait."""

    def __init__(self, items: Sequence[T]) -> None:
        self._free = list(items)
        self._available = threading.Semaphore(len(self._free))
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        with self._lock:
            self._free.append(item)
        self._available.release()

    @contextmanager
    def borrow(self, wait: bool = True) -> Iterator[T]:
        """One item for the `with` block. wait=False (callers on the event loop, which must never
        block): raise PoolBusyError at once when every item is lent."""
        if not self._available.acquire(blocking=wait):
            raise PoolBusyError("every predictor is busy")
        try:
            with self._lock:
                item = self._free.pop()
            try:
                yield item
            finally:
                with self._lock:
                    self._free.append(item)
        finally:
            self._available.release()


class PoolBusyError(RuntimeError):
    """A predictor was asked for on the event loop while every one was lent (never waited for)."""


class PredictorPool:
    """In-process predictors (thread isolation); a caller borrows one for the duration of one run.

    Paddle holds the GIL while it runs, so these share one core's worth of Python with the event
    loop; process isolation (predictor_process.py) is the server's default."""

    restarts = 0  # nothing to restart in-process; the same attribute as the process pool's

    def __init__(self, first: Predictor, size: int) -> None:
        predictors = [first] + [first.clone() for _ in range(max(1, size) - 1)]
        self.size = len(predictors)
        self.input_name = first.input_name
        # Set once a full batch is known to take about a millisecond: then handing it to a thread
        # and back (and fighting for the GIL) costs more than the inference, so run it on the loop.
        self.inline = False
        self._predictors = predictors
        self._lender = Lender(predictors)

    def run_each(self, batch: np.ndarray, solo: bool = False, start: int = 0) -> list[np.ndarray]:
        """Run the batch once on every predictor from `start` on, one after another (warm-up, before
        any request): `run` lends the same idle predictor each time."""
        return [predictor.run(batch, solo) for predictor in self._predictors[start:]]

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        with self._lender.borrow() as predictor:
            return predictor.run(batch, solo)

    def close(self) -> None:
        """Predictors are freed with the last reference to them."""

    def kill(self) -> None:
        """Nothing runs elsewhere to stop."""
