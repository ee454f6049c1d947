"""What a model version measures at warm-up: whether a lone batch runs faster on all its cores,
and which batch size to form under load. docs/performance.md shows the measurements behind these
rules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from app.inference.backends import Backend
from app.inference.pools import Pool

BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
# A batch size whose first run takes longer than this is not a candidate, nor are larger ones: its
# requests would wait as long for their answers, and measuring it would take four such runs or more.
MAX_BATCH_RUN_SECONDS = 0.25
# A full batch faster than this runs on the event loop in in-process pools: cheaper than a thread hand-off.
INLINE_BATCH_MS = 2.0
K = TypeVar("K")


@dataclass(frozen=True)
class ThreadPolicy:
    """Whether lone batches run on the solo copies; each predictor's own threads are options.cpu_threads."""

    reason: str
    batch_one_ms: dict[int, float] = field(default_factory=dict)  # median batch-1 run, by thread count
    solo_threads: int = 0  # for a batch alone in the pool (nothing else running or queued); 0: none


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    reason: str
    measured_images_per_second: dict[int, float] = field(default_factory=dict)

    def runs_inline(self) -> bool:
        """Whether a full batch takes under INLINE_BATCH_MS, as measured."""
        rate = self.measured_images_per_second.get(self.max_batch_size)
        if not rate:
            return False
        return self.max_batch_size / rate * 1000 < INLINE_BATCH_MS


def zero_batch(shape: Sequence[int], size: int) -> np.ndarray:
    """A batch of `size` blank inputs of shape (C, H, W): warm-up and timing runs only."""
    return np.zeros((size, *shape), dtype=np.float32)


def choose_threads(batch_one_ms: dict[int, float]) -> int:
    """The most threads where they run one image faster than the fewest do; else the fewest. The math
    threads share the cores with the HTTP server and with decoding, and a thread team that does not
    help costs them a core in spinning and wake-ups. No margin beyond "faster": small and large
    models sit far on either side, and the warm-up measurement is noisy on a shared machine, so a
    threshold would flip a large model's choice on a noisy start."""
    many, few = max(batch_one_ms), min(batch_one_ms)
    return many if batch_one_ms[many] < batch_one_ms[few] else few


def median_run_ms(runs: dict[K, Callable[[], object]], min_runs: int, budget_seconds: float,
                  warm: bool = True) -> dict[K, float]:
    """Each call's median time in ms, after one untimed call each unless `warm` is False (oneDNN
    builds its kernels per shape and per predictor). The calls take turns, pass after pass, until
    each has `min_runs` and the budget is spent: a neighbour busy for part of the measurement then
    slows every candidate alike, where timing one size after another would crown whichever size a
    burst happened to spare."""
    for run in runs.values() if warm else ():
        run()
    times: dict[K, list[float]] = {key: [] for key in runs}
    started = time.perf_counter()
    while min(len(t) for t in times.values()) < min_runs or time.perf_counter() - started < budget_seconds:
        for key, run in runs.items():
            run_started = time.perf_counter()
            run()
            times[key].append((time.perf_counter() - run_started) * 1000)
    return {key: statistics.median(t) for key, t in times.items()}


def choose_batch_size(measured: dict[int, float], tolerance: float = 0.95) -> int:
    """The smallest batch within `tolerance` of the best throughput: bigger batches that barely
    help only add latency. Not wider than 5%: the warm-up times the model alone, and served, each
    batch also pays its hand-offs."""
    best = max(measured.values())
    return min(size for size, rate in measured.items() if rate >= tolerance * best)


def measure_threads(pool: Pool, shape: Sequence[int], few: int, many: int) -> ThreadPolicy:
    """Batch 1 on `many` threads (the solo copies) against `few`; the solo copies are kept for lone
    batches where they are faster. The pool's predictors must be warm at batch 1 on both copies."""
    dummy = zero_batch(shape, 1)
    runs: dict[int, Callable[[], object]] = {many: partial(pool.run, dummy, True), few: partial(pool.run, dummy)}
    medians = median_run_ms(runs, 5, budget_seconds=0.4, warm=False)
    measured = {threads: round(ms, 4) for threads, ms in medians.items()}
    if choose_threads(measured) == few:
        return ThreadPolicy(f"measured at warm-up: {many} threads ran batch 1 no faster than {few}", measured)
    return ThreadPolicy(f"measured at warm-up: {many} threads ran batch 1 faster than {few}; a batch alone in the "
                        f"pool runs on {many}", measured, many)


def measure_throughput(pool: Pool, shape: Sequence[int], sizes: Sequence[int], solo: bool,
                       budget_seconds: float = 0.6) -> dict[int, float]:
    """images/s of one predictor at each batch size, from its median run (see median_run_ms)."""
    runs: dict[int, Callable[[], object]] = {}
    for size in sorted(sizes):
        run = partial(pool.run, zero_batch(shape, size), solo)
        started = time.perf_counter()
        run()  # untimed: oneDNN builds its kernels per shape
        if runs and time.perf_counter() - started > MAX_BATCH_RUN_SECONDS:
            break
        runs[size] = run
    # Largest first: each size then runs after one that has just loaded the same weights, instead of
    # after a large batch that flushed the caches.
    ordered = {size: runs[size] for size in sorted(runs, reverse=True)}
    medians = median_run_ms(ordered, min_runs=3, budget_seconds=budget_seconds, warm=False)
    return {size: round(size * 1000 / medians[size], 1) for size in sorted(medians)}


@dataclass(frozen=True)
class BackendChoice:
    kind: str
    reason: str
    images_per_second: dict[str, dict[int, float]] = field(default_factory=dict)  # kind -> batch -> images/s
    gate: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> the accuracy gate's figures


def measure_backends(backends: dict[str, Backend], shape: Sequence[int], batches: Sequence[int] = (1, 8),
                     budget_seconds: float = 0.6) -> dict[str, dict[int, float]]:
    """images/s of each runtime (loaded on the served thread count) at each batch size, timed in
    turns (see median_run_ms)."""
    runs: dict[tuple[str, int], Callable[[], object]] = {
        (kind, size): partial(backend.run, zero_batch(shape, size)) for kind, backend in backends.items()
        for size in batches}
    medians = median_run_ms(runs, min_runs=3, budget_seconds=budget_seconds)
    return {kind: {size: round(size * 1000 / medians[kind, size], 1) for size in batches} for kind in backends}


# Runtimes within BACKEND_MARGIN of each other at warm-up are taken in this order: served under load
# in predictor processes, ONNX Runtime kept more of its raw speed than the others (docs/performance.md).
BACKEND_PREFERENCE = ("onnxruntime", "paddle", "openvino", "paddle-bf16", "openvino-bf16", "onnxruntime-int8",
                      "openvino-int8")
BACKEND_MARGIN = 1.05


def choose_fastest_backend(measured: dict[str, dict[int, float]]) -> BackendChoice:
    """The runtime with the most images/s at the largest batch measured (the load it must carry), as
    long as its batch 1 is no slower than Paddle Inference's (a lone request must not wait longer);
    one must beat another by BACKEND_MARGIN to displace it, the warm-up's timing being noisy."""
    largest = max(next(iter(measured.values())))
    baseline = measured.get("paddle", {}).get(1, 0.0)
    eligible = {kind: rates for kind, rates in measured.items() if rates[1] >= baseline or kind == "paddle"}
    ordered = sorted(eligible, key=lambda k: BACKEND_PREFERENCE.index(k) if k in BACKEND_PREFERENCE else 99)
    kind = ordered[0]
    for other in ordered[1:]:
        if eligible[other][largest] > BACKEND_MARGIN * eligible[kind][largest]:
            kind = other
    figures = ", ".join(f"{k} {rates[largest]:.0f}" for k, rates in sorted(measured.items()))
    return BackendChoice(kind, f"auto: the most images/s at batch {largest} at warm-up ({figures}), a runtime "
                               f"within {BACKEND_MARGIN - 1:.0%} taken in the order {', '.join(BACKEND_PREFERENCE)}",
                         measured)


def measure_batch_size(pool: Pool, shape: Sequence[int], solo: bool) -> BatchPolicy:
    measured = measure_throughput(pool, shape, BATCH_CANDIDATES, solo)
    size = choose_batch_size(measured)
    return BatchPolicy(size, f"measured at warm-up: batch {size} is the smallest within 95% of the best images/s",
                       measured)
