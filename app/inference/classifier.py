"""One loaded model version: preprocess -> predict -> postprocess, each callable on its own."""

from __future__ import annotations

import asyncio
import io
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from app.inference.manifest import Manifest, load_manifest, preprocessing_recipe, verify_files
from app.inference.postprocess import Prediction, to_probabilities, top_k
from app.inference.predictor import Predictor, PredictorPool, RuntimeOptions
from app.inference.predictor_process import Classified, ProcessPool, classify_inputs
from app.inference.preprocess import Input, Preprocessor, Recipe

log = logging.getLogger(__name__)


BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
K = TypeVar("K")


@dataclass(frozen=True)
class LoadOptions:
    runtime: RuntimeOptions
    predictors: int
    max_image_pixels: int
    device_reason: str = ""
    max_batch_size: int = 0  # 0: measure at warm-up
    model_max_batch_size: dict[str, int] = field(default_factory=dict)  # per model name, wins over the above
    # "process": predictors in child processes (the server's default); "thread": in this process,
    # for scripts and tools that classify a folder and need no event loop kept responsive.
    isolation: Literal["process", "thread"] = "thread"
    # Measure at warm-up whether runtime.solo_threads math threads run one image faster than
    # runtime.cpu_threads (see choose_threads and decide_threads).
    measure_threads: bool = False
    # A predictor process resident above this after a batch (huge images decoded) is replaced.
    predictor_max_rss_mb: float = float("inf")


@dataclass(frozen=True)
class ThreadPolicy:
    """Whether lone batches run on the solo copies; each predictor's own threads are runtime.cpu_threads."""

    reason: str
    batch_one_ms: dict[int, float] = field(default_factory=dict)  # median batch-1 run, by thread count
    solo_threads: int = 0  # for a batch alone in the pool (nothing else running or queued); 0: none


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    reason: str
    measured_images_per_second: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What became of one input: its probabilities, or the error it raised (its bytes are the
    client's fault for the preprocess module's errors, ours for anything else)."""

    probabilities: np.ndarray | None
    error: Exception | None = None
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0  # the model run of the batch it was part of
    model_input: np.ndarray | None = None  # (C, H, W), for an ExplainedImage


INLINE_BATCH_MS = 2.0
# A batch size whose first run takes longer than this is not a candidate, nor are larger ones: its
# requests would wait as long for their answers, and measuring it would take four such runs or more
# (MobileNetV2 on one thread: batch 32 takes ~0.3 s a run, batch 64 ~0.9 s, at a third of the best
# images/s; together they made the warm-up measurement 5.7 s instead of 1.3).
MAX_BATCH_RUN_SECONDS = 0.25
# Encoded images up to this size decode in well under a thread hand-off (thread isolation only).
INLINE_ENCODED_BYTES = 64 * 1024


def probe_image() -> bytes:
    """A dark stroke on light paper, 96x128 px: what any model's preprocessing must turn into an
    input of the model's shape (a digit pipeline finds the stroke; a photo pipeline crops it)."""
    pixels = np.full((128, 96), 235, dtype=np.uint8)
    pixels[24:104, 44:52] = 25
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def check_recipe(preprocessor: Preprocessor) -> None:
    """Run the manifest's preprocessing once, at load: a recipe whose steps do not end at the
    model's input shape, or that yields NaN, fails the load with the reason (the version before
    it keeps serving) instead of failing every request."""
    try:
        array = preprocessor(probe_image())
    except Exception as exc:  # noqa: BLE001 - whatever it is, the recipe is unusable
        raise ValueError(f"the preprocessing fails on a plain test image: {type(exc).__name__}: {exc}") from exc
    if not np.isfinite(array).all():
        raise ValueError("the preprocessing yields NaN or infinite values")


def create_pool(model_file: Path, params_file: Path, options: LoadOptions, name: str,
                recipe: Recipe) -> PredictorPool | ProcessPool:
    if options.isolation == "process":
        return ProcessPool(model_file, params_file, options.runtime, options.predictors, name, recipe,
                           options.predictor_max_rss_mb)
    return PredictorPool(Predictor.create(model_file, params_file, options.runtime), options.predictors)


def choose_threads(batch_one_ms: dict[int, float]) -> int:
    """The most threads where they run one image faster than the fewest do; else the fewest. The math
    threads share the cores with the HTTP server and with decoding, and a thread team that does not
    help costs them a core in spinning and wake-ups. Measured on 2 cores: LeNet's batch 1 runs
    0.13 ms on one thread and 0.22 ms on two (at batch 32 two gain 5% for 64% more CPU); served at
    c32, side by side, one thread answered 0.63-0.70 of the HTTP floor's requests/s against
    0.54-0.55 with two. MobileNetV2's batch 1 is 1.27-1.6x faster on two, and one thread costs it
    ~2 ms at c1. No margin beyond "faster": the two cases sit far on either side of 1.0, and the
    warm-up measurement is noisy on a shared machine, so a threshold above it would flip the large
    model's choice on a noisy start."""
    many, few = max(batch_one_ms), min(batch_one_ms)
    return many if batch_one_ms[many] < batch_one_ms[few] else few


def median_run_ms(runs: dict[K, Callable[[], object]], min_runs: int, budget_seconds: float,
                  warm: bool = True) -> dict[K, float]:
    """Each call's median time in ms, after one untimed call each unless `warm` is False (oneDNN
    builds its kernels per shape and per predictor). The calls take turns, pass after pass, until
    each has `min_runs` and the budget is spent: a neighbour busy for part of the measurement then
    slows every candidate alike. Timed one size after another, a burst on this shared machine once
    made MobileNetV2's batch 32 look best (126 images/s against 74-92 for the rest; ~250 at batch 4
    on a quiet start), and the service then ran at 0.59 of the in-process pipeline."""
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
    batch also pays its hand-offs. MobileNetV2 on two one-thread processes measured 198 images/s at
    batch 2 and 216 at 4 (92%); served at c32, batch 4 answered 249-322 images/s against 238-267
    for batch 2, ahead in each of four alternations."""
    best = max(measured.values())
    return min(size for size, rate in measured.items() if rate >= tolerance * best)


@dataclass
class Classifier:
    directory: Path
    manifest: Manifest
    preprocessor: Preprocessor
    pool: PredictorPool | ProcessPool
    options: LoadOptions
    load_seconds: float = 0.0
    warmup_ms: float = 0.0
    batch_policy: BatchPolicy = BatchPolicy(1, "not measured")
    thread_policy: ThreadPolicy = ThreadPolicy("not measured")
    retired: bool = False  # a reload replaced or removed it: it finishes what it holds, takes nothing new
    closed: bool = False

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @classmethod
    def load(cls, directory: Path, options: LoadOptions) -> "Classifier":
        """Validate the manifest, check file hashes, build predictors and warm them up."""
        started = time.perf_counter()
        manifest = load_manifest(directory)
        verify_files(directory, manifest)
        recipe = preprocessing_recipe(manifest, options.max_image_pixels)
        preprocessor = recipe.build()
        check_recipe(preprocessor)
        pool = create_pool(directory / manifest.model_file, directory / manifest.params_file, options,
                           f"{manifest.name}/{manifest.version}", recipe)
        classifier = cls(directory, manifest, preprocessor, pool, options)
        try:
            if pool.input_name != manifest.input.name:
                raise ValueError(f"model input is {pool.input_name!r}, manifest says {manifest.input.name!r}")
            classifier.warmup_ms = classifier.warm_up()
            classifier.thread_policy = classifier.decide_threads()
            classifier.batch_policy = classifier.decide_batch_policy()
        except BaseException:
            pool.close()
            raise
        if isinstance(pool, PredictorPool):
            pool.inline = classifier.runs_inline()
        classifier.load_seconds = time.perf_counter() - started
        return classifier

    def zero_batch(self, size: int) -> np.ndarray:
        """A batch of `size` blank inputs of the model's shape: warm-up and timing runs only."""
        return np.zeros((size, *self.manifest.input.shape[1:]), dtype=np.float32)

    def warm_up(self, start: int = 0) -> float:
        """Run a dummy batch through every predictor from `start` on (and its solo copy) so the
        first client never pays oneDNN's set-up."""
        started = time.perf_counter()
        dummy = self.zero_batch(1)
        outputs = self.pool.run_each(dummy, start=start)
        if self.options.runtime.has_solo:
            outputs += self.pool.run_each(dummy, solo=True, start=start)
        for output in outputs:
            if output.shape != (1, len(self.labels)):
                raise ValueError(f"model outputs {output.shape}, expected (1, {len(self.labels)}) for its labels")
        return (time.perf_counter() - started) * 1000

    def decide_threads(self) -> ThreadPolicy:
        """Whether a batch alone in the pool runs on the predictors' solo copies (all their cores),
        and where it does, one predictor process per core for the batches that run side by side.

        Measured on 2 cores, servers side by side, four alternations: MobileNetV2 at c32 answered
        311-317 images/s from two one-thread processes against 232-254 from one two-thread process,
        while its lone image runs ~1.4x faster on two threads (c1 p50 5.6-6.3 ms both ways). LeNet's
        lone image is no faster on two threads, and its server process is busier than its predictor:
        it keeps one one-thread process."""
        runtime = self.options.runtime
        if runtime.device != "cpu":
            return ThreadPolicy("not used on GPU")
        if not self.options.measure_threads:
            return ThreadPolicy("fixed by APP_CPU_THREADS")
        if not runtime.has_solo:
            return ThreadPolicy("one core per predictor")
        few, many = runtime.cpu_threads, runtime.solo_threads
        dummy = self.zero_batch(1)
        runs = {many: partial(self.pool.run, dummy, True), few: partial(self.pool.run, dummy)}
        # warm_up has just run both copies of every predictor at this shape.
        medians = median_run_ms(runs, 5, budget_seconds=0.4, warm=False)
        measured = {threads: round(ms, 4) for threads, ms in medians.items()}
        if choose_threads(measured) == few:
            return ThreadPolicy(f"measured at warm-up: {many} threads ran batch 1 no faster than {few}", measured)
        if isinstance(self.pool, ProcessPool):
            # In-process predictors share the GIL, which Paddle holds while it runs: more would not
            # run side by side.
            warm = self.pool.size
            self.pool.grow(self.options.predictors * many // few)
            self.warmup_ms += self.warm_up(start=warm)  # only the processes just started
        return ThreadPolicy(f"measured at warm-up: {many} threads ran batch 1 faster than {few}; a batch alone in the "
                            f"pool runs on {many}", measured, many)

    def decide_batch_policy(self) -> BatchPolicy:
        override = self.options.model_max_batch_size.get(self.name)
        if override:
            return BatchPolicy(override, "set for this model by APP_MODEL_MAX_BATCH_SIZE")
        if self.options.max_batch_size:
            return BatchPolicy(self.options.max_batch_size, "set by APP_MAX_BATCH_SIZE")
        measured = self.measure_throughput(BATCH_CANDIDATES)
        size = choose_batch_size(measured)
        return BatchPolicy(size, f"measured at warm-up: batch {size} is the smallest within 95% of the best "
                                 f"images/s", measured)

    def runs_inline(self) -> bool:
        """True for in-process predictors when a full batch takes under INLINE_BATCH_MS: cheaper to
        run on the event loop than to hand to a thread."""
        if not isinstance(self.pool, PredictorPool):
            return False
        policy = self.batch_policy
        rate = policy.measured_images_per_second.get(policy.max_batch_size)
        return bool(rate) and policy.max_batch_size / rate * 1000 < INLINE_BATCH_MS

    def measure_throughput(self, sizes: Sequence[int], budget_seconds: float = 0.6) -> dict[int, float]:
        """images/s of one predictor at each batch size, from its median run (see median_run_ms)."""
        # As batches run under load, when batches form: side by side, unless one predictor does all.
        solo = self.runs_solo(alone=self.pool.size == 1)
        runs: dict[int, Callable[[], object]] = {}
        for size in sorted(sizes):
            run = partial(self.pool.run, self.zero_batch(size), solo)
            started = time.perf_counter()
            run()  # untimed: oneDNN builds its kernels per shape
            if runs and time.perf_counter() - started > MAX_BATCH_RUN_SECONDS:
                break
            runs[size] = run
        # Largest first: each size then runs after one that has just loaded the same weights. After
        # batch 64 had flushed the caches, batch 1 measured 74-138 images/s instead of ~240.
        ordered = {size: runs[size] for size in sorted(runs, reverse=True)}
        medians = median_run_ms(ordered, min_runs=3, budget_seconds=budget_seconds, warm=False)
        return {size: round(size * 1000 / medians[size], 1) for size in sorted(medians)}

    def preprocess(self, data: bytes) -> np.ndarray:
        """Encoded image -> (C, H, W) float32. Raises the preprocess module's client errors."""
        return self.preprocessor(data)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, K) probabilities."""
        return to_probabilities(self.pool.run(batch), self.manifest.output.activation)

    def runs_solo(self, alone: bool) -> bool:
        """Whether a batch runs on the solo copies: it is `alone` (nothing else running or queued)
        and the solo copies were measured faster."""
        return alone and self.thread_policy.solo_threads > 0

    async def classify_async(self, inputs: list[Input], alone: bool = False) -> list[Outcome]:
        """Encoded images and/or model inputs -> one Outcome each, in one model run, without
        blocking the event loop: decoding happens where the predictor runs (its child process, or a
        worker thread). `alone`: nothing else is running or queued for this model (see runs_solo)."""
        solo = self.runs_solo(alone)
        if isinstance(self.pool, ProcessPool):
            classified = await self.pool.classify_async(inputs, solo)
        else:
            run = partial(self.pool.run, solo=solo)
            if self.pool.inline and all(isinstance(x, np.ndarray) or len(x) <= INLINE_ENCODED_BYTES for x in inputs):
                classified = classify_inputs(self.preprocessor, run, inputs)
            else:
                classified = await asyncio.to_thread(classify_inputs, self.preprocessor, run, inputs)
        return self.to_outcomes(classified)

    def to_outcomes(self, classified: Classified) -> list[Outcome]:
        rows = iter(to_probabilities(classified.outputs, self.manifest.output.activation)
                    if len(classified.outputs) else [])
        outcomes = []
        for index, (decode_ms, preprocess_ms) in enumerate(classified.timings):
            error = classified.errors.get(index)
            outcomes.append(Outcome(None if error else next(rows), error, decode_ms, preprocess_ms,
                                    classified.inference_ms, classified.explained.get(index)))
        return outcomes

    def close(self) -> None:
        """Stop this version's predictor processes; requests must no longer reach it."""
        self.closed = True
        self.pool.close()

    def kill(self) -> None:
        """Stop this version's predictor processes now, whatever they are doing."""
        self.closed = True
        self.pool.kill()

    def postprocess(self, probabilities: np.ndarray, k: int) -> list[Prediction]:
        return top_k(probabilities, self.labels, k)

    def runtime_info(self) -> dict[str, Any]:
        runtime = self.options.runtime
        return {
            "backend": "paddle-inference",
            "device": runtime.device,
            "device_reason": self.options.device_reason,
            "cpu_threads": runtime.cpu_threads if runtime.device == "cpu" else None,
            "solo_threads": self.thread_policy.solo_threads or None,
            "cpu_threads_reason": self.thread_policy.reason,
            "batch_one_ms_by_threads": {str(k): v for k, v in sorted(self.thread_policy.batch_one_ms.items())},
            "onednn": runtime.onednn if runtime.device == "cpu" else False,
            "omp_blocktime_ms": runtime.omp_blocktime_ms if runtime.device == "cpu" else None,
            "predictors": self.pool.size,
            "isolation": self.options.isolation,
            "predictor_restarts": self.pool.restarts,
            "load_seconds": round(self.load_seconds, 3),
            "warmup_ms": round(self.warmup_ms, 2),
            "max_batch_size": self.batch_policy.max_batch_size,
            "inference_on_event_loop": self.runs_inline(),
            "batch_size_reason": self.batch_policy.reason,
            "measured_images_per_second": {str(k): v for k, v in self.batch_policy.measured_images_per_second.items()},
        }
