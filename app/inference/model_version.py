"""One loaded model version: its manifest, its handler, its pool of predictors, and what warm-up
measured. Loading validates everything first, so a broken version fails here, not on requests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.inference.backends import (
    BACKENDS,
    Backend,
    BackendOptions,
    BackendSpec,
    choose_backend,
    load_backend,
    missing_package,
)
from app.inference.handler import HandlerSpec, ModelHandler, Outcome
from app.inference.manifest import Manifest, load_manifest, verify_files
from app.inference.paddleclas import is_export, manifest_for_export
from app.inference.pools import Isolation, Pool, create_pool
from app.inference.preprocess import Input
from app.inference.samples import gate_backends
from app.inference.tuning import (
    BackendChoice,
    BatchPolicy,
    ThreadPolicy,
    choose_fastest_backend,
    measure_backends,
    measure_batch_size,
    measure_threads,
    zero_batch,
)


@dataclass(frozen=True)
class LoadOptions:
    backend: BackendOptions
    predictors: int
    max_image_pixels: int
    backend_kind: str = "paddle"  # an entry of app.inference.backends.BACKENDS
    model_backend: dict[str, str] = field(default_factory=dict)  # per model name, wins over the above
    device_reason: str = ""
    max_batch_size: int = 0  # 0: measure at warm-up
    model_max_batch_size: dict[str, int] = field(default_factory=dict)  # per model name, wins over the above
    # "process": predictors in child processes (the server's default); "thread": in this process,
    # for scripts and tools that classify a folder and need no event loop kept responsive.
    isolation: Isolation = "thread"
    # Measure at warm-up whether backend.solo_threads math threads run one image faster than
    # backend.cpu_threads (see ModelVersion.decide_threads).
    measure_threads: bool = False
    # A predictor process resident above this after a batch (huge images decoded) is replaced.
    predictor_max_rss_mb: float = float("inf")


@dataclass
class ModelVersion:
    directory: Path
    manifest: Manifest
    handler: ModelHandler
    pool: Pool
    options: LoadOptions
    backend_choice: BackendChoice = BackendChoice("paddle", "the default")
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

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one model input."""
        return tuple(self.manifest.input.shape[1:])

    @classmethod
    def load(cls, directory: Path, options: LoadOptions, recorded_files: dict[str, str] | None = None) -> ModelVersion:
        """Validate the manifest, check file hashes, build predictors and warm them up.
        `recorded_files`: the hashes an earlier load of this version found (see read_manifest)."""
        started = time.perf_counter()
        manifest = read_manifest(directory, recorded_files)
        handler = HandlerSpec.of(manifest, options.max_image_pixels).build()
        handler.check()
        choice = decide_backend(directory, manifest, options)
        backend = backend_spec(choice.kind, directory, manifest, options.backend)
        pool = create_pool(options.isolation, backend, handler, options.predictors,
                           f"{manifest.name}/{manifest.version}", options.predictor_max_rss_mb)
        model = cls(directory, manifest, handler, pool, options, choice)
        try:
            if pool.input_name != manifest.input.name:
                raise ValueError(f"model input is {pool.input_name!r}, manifest says {manifest.input.name!r}")
            model.warmup_ms = model.warm_up()
            model.thread_policy = model.decide_threads()
            if model.thread_policy.solo_threads and pool.side_by_side:
                # Lone batches get all the cores; batches under load run side by side, one
                # predictor process per core.
                model.add_predictors(options.predictors * options.backend.solo_threads // options.backend.cpu_threads)
            model.batch_policy = model.decide_batch_policy()
        except BaseException:
            pool.close()
            raise
        if not pool.side_by_side:
            pool.inline = model.batch_policy.runs_inline()
        model.load_seconds = time.perf_counter() - started
        return model

    def warm_up(self, start: int = 0) -> float:
        """Run a dummy batch through every predictor from `start` on (and its solo copy) so the
        first client never pays oneDNN's set-up; checks the output's shape against the labels."""
        started = time.perf_counter()
        dummy = zero_batch(self.input_shape, 1)
        outputs = self.pool.run_each(dummy, start=start)
        if self.options.backend.has_solo:
            outputs += self.pool.run_each(dummy, solo=True, start=start)
        for output in outputs:
            if output.shape != (1, len(self.labels)):
                raise ValueError(f"model outputs {output.shape}, expected (1, {len(self.labels)}) for its labels")
        return (time.perf_counter() - started) * 1000

    def add_predictors(self, size: int) -> None:
        """Grow the pool to `size` predictors and warm the new ones."""
        warm = self.pool.size
        self.pool.grow(size)
        self.warmup_ms += self.warm_up(start=warm)

    def decide_threads(self) -> ThreadPolicy:
        """Whether a batch alone in the pool runs on the predictors' solo copies (all their cores)."""
        backend = self.options.backend
        if backend.device != "cpu":
            return ThreadPolicy("not used on GPU")
        if not self.options.measure_threads:
            return ThreadPolicy("fixed by APP_CPU_THREADS")
        if not backend.has_solo:
            return ThreadPolicy("one core per predictor")
        # warm_up has just run both copies of every predictor at batch 1.
        return measure_threads(self.pool, self.input_shape, backend.cpu_threads, backend.solo_threads)

    def decide_batch_policy(self) -> BatchPolicy:
        override = self.options.model_max_batch_size.get(self.name)
        if override:
            return BatchPolicy(override, "set for this model by APP_MODEL_MAX_BATCH_SIZE")
        if self.options.max_batch_size:
            return BatchPolicy(self.options.max_batch_size, "set by APP_MAX_BATCH_SIZE")
        # As batches run under load, when batches form: side by side, unless one predictor does all.
        return measure_batch_size(self.pool, self.input_shape, solo=self.runs_solo(alone=self.pool.size == 1))

    def runs_solo(self, alone: bool) -> bool:
        """Whether a batch runs on the solo copies: it is `alone` (nothing else running or queued)
        and the solo copies were measured faster."""
        return alone and self.thread_policy.solo_threads > 0

    def classify(self, inputs: Sequence[Input]) -> list[Outcome]:
        """All four stages in the calling thread, blocking: for scripts, tools and benchmarks."""
        return self.handler.classify(inputs, self.pool.run)

    async def classify_async(self, inputs: list[Input], alone: bool = False) -> list[Outcome]:
        """Encoded images and/or model inputs -> one Outcome each, in one model run, without
        blocking the event loop. `alone`: nothing else is running or queued for this model."""
        classified = await self.pool.classify_async(inputs, self.runs_solo(alone))
        return self.handler.postprocess(classified)

    def close(self) -> None:
        """Stop this version's predictors; requests must no longer reach it."""
        self.closed = True
        self.pool.close()

    def kill(self) -> None:
        """Stop this version's predictors now, whatever they are doing."""
        self.closed = True
        self.pool.kill()

    def describe(self) -> dict[str, Any]:
        """How this server runs the model (the model information's `runtime`)."""
        threads, batches = self.thread_policy, self.batch_policy
        return {
            **self.pool.backend_description,
            "backend_reason": self.backend_choice.reason,
            "backend_images_per_second": {kind: {str(size): rate for size, rate in rates.items()}
                                          for kind, rates in self.backend_choice.images_per_second.items()},
            "backend_accuracy_gate": self.backend_choice.gate,
            "device_reason": self.options.device_reason,
            "solo_threads": threads.solo_threads or None,
            "cpu_threads_reason": threads.reason,
            "batch_one_ms_by_threads": {str(k): v for k, v in sorted(threads.batch_one_ms.items())},
            **self.pool.describe(),
            "load_seconds": round(self.load_seconds, 3),
            "warmup_ms": round(self.warmup_ms, 2),
            "max_batch_size": batches.max_batch_size,
            "batch_size_reason": batches.reason,
            "measured_images_per_second": {str(k): v for k, v in batches.measured_images_per_second.items()},
        }


def read_manifest(directory: Path, recorded_files: dict[str, str] | None = None) -> Manifest:
    """models/<name>/<version>/manifest.json with its files checked; or, for a PaddleClas or PaddleX
    export without one, the manifest its deploy config translates to, whose files must still have
    the hashes `recorded_files` holds from the export's first load in this server."""
    if is_export(directory):
        version = int(directory.name) if directory.name.isdigit() else 1
        return manifest_for_export(directory, directory.parent.name, version, recorded_files=recorded_files)
    manifest = load_manifest(directory)
    verify_files(directory, manifest)
    return manifest


def backend_spec(kind: str, directory: Path, manifest: Manifest, options: BackendOptions) -> BackendSpec:
    return BackendSpec(kind, directory / manifest.model_file, directory / manifest.params_file, options,
                       {name: directory / artifact.file for name, artifact in manifest.runtimes.items()})


NO_OTHER_RUNTIME = "auto: no other runtime is installed, or the model has no file for one"


def decide_backend(directory: Path, manifest: Manifest, options: LoadOptions) -> BackendChoice:
    """The runtime this version runs on: the one asked for (APP_MODEL_BACKEND, else APP_BACKEND)
    where the model can run on it, else Paddle Inference; with `auto`, the fastest of those
    installed, measured here on the model's own shapes. Every runtime but Paddle runs the ONNX file
    that conversion checked against Paddle Inference (fp32: the same answers, to rounding)."""
    requested = options.model_backend.get(manifest.name, options.backend_kind)
    device, artifacts = options.backend.device, set(manifest.runtimes)
    if requested != "auto":
        return BackendChoice(*choose_backend(requested, artifacts, options.backend))
    if device != "cpu":
        return BackendChoice("paddle", "auto: the GPU runs Paddle Inference")
    candidates = [kind for kind in BACKENDS
                  if missing_package(kind) is None and choose_backend(kind, artifacts, options.backend)[0] == kind]
    reduced = [kind for kind in candidates if BACKENDS[kind].precision != "fp32"]
    gate: dict[str, dict[str, Any]] = {}
    if reduced and manifest.samples is None:
        gate = {kind: {"passed": False, "reason": "the model stores no test images to check it on "
                                                  "(python -m training samples adds them)"} for kind in reduced}
        candidates, reduced = [kind for kind in candidates if kind not in reduced], []
    if candidates == ["paddle"]:
        return BackendChoice("paddle", NO_OTHER_RUNTIME + describe_gate(gate), gate=gate)
    served = replace(options.backend, solo_threads=0)  # as predictors run under load
    # Each runtime is loaded once, for the accuracy gate and the timing both.
    backends = {kind: load_backend(backend_spec(kind, directory, manifest, served)) for kind in candidates}
    try:
        gate.update(gate_reduced_precision(directory, manifest, backends, reduced))
        timed = {kind: backend for kind, backend in backends.items() if gate.get(kind, {"passed": True})["passed"]}
        if list(timed) == ["paddle"]:
            return BackendChoice("paddle", NO_OTHER_RUNTIME + describe_gate(gate), gate=gate)
        choice = choose_fastest_backend(measure_backends(timed, manifest.input.shape[1:]))
    finally:
        for backend in backends.values():
            backend.close()
    return replace(choice, reason=choice.reason + describe_gate(gate), gate=gate)


def gate_reduced_precision(directory: Path, manifest: Manifest, backends: dict[str, Backend],
                           reduced: list[str]) -> dict[str, dict[str, Any]]:
    """The accuracy gate's figures for each runtime in `reduced` (below fp32), on the model's stored
    test images against Paddle Inference; fp32 runtimes need none, their conversion was checked."""
    if not reduced:
        return {}
    assert manifest.samples is not None
    results = gate_backends({kind: backends[kind] for kind in reduced}, backends["paddle"],
                            directory / manifest.samples.file)
    return {kind: result.describe() for kind, result in results.items()}


def describe_gate(gate: dict[str, dict[str, Any]]) -> str:
    verdicts = [f"{kind} {'passed' if result['passed'] else 'failed'}"
                + (f" ({result['top1_agreement']:.1%} top-1 agreement on {result['images']} test images)"
                   if "images" in result else f" ({result['reason']})")
                for kind, result in gate.items()]
    return f"; the accuracy gate for reduced precision: {', '.join(verdicts)}" if verdicts else ""
