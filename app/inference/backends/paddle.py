"""Paddle Inference: the default backend, on CPU (oneDNN) or on a GPU with a CUDA build. The only
module that touches `paddle.inference`. `paddle-bf16` is the same predictor with oneDNN's bfloat16
kernels (CPU with bf16 instructions): answers no longer equal to rounding, so `APP_BACKEND=auto`
takes it only where the accuracy gate passes (app/inference/samples.py).

Paddle is imported lazily so that importing the app (or unit-testing preprocessing) stays cheap;
predictors are created in the lifespan, never at import.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from app.inference.backends import BACKENDS
from app.inference.backends.base import BackendOptions, BackendSpec, Device, DeviceUnavailableError
from app.inference.cpu import set_omp_blocktime, spin_ms


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


def create_predictor(model_file: Path, params_file: Path, options: BackendOptions, threads: int,
                     bf16: bool = False) -> Any:
    """A native Paddle Inference predictor on `threads` math threads (CPU) or on the GPU; `bf16`:
    oneDNN computes in bfloat16 (CPU only)."""
    from paddle import inference

    config = inference.Config(str(model_file), str(params_file))
    if options.device == "gpu":
        config.enable_use_gpu(options.gpu_memory_mb, options.gpu_id)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(max(1, threads))
        if options.onednn:
            # oneDNN is several times faster for convolutions on AVX-512 CPUs; plain CPU kernels otherwise.
            config.enable_mkldnn()
        if bf16:
            config.enable_mkldnn_bfloat16()
    config.switch_ir_optim(True)
    # Paddle's new executor hands each run to an internal worker thread; between requests that
    # thread sleeps, and waking it costs more than a small model's whole inference. The classic
    # executor runs in the calling thread.
    config.enable_new_executor(False)
    config.disable_glog_info()
    return inference.create_predictor(config)


class PaddleBackend:
    """One Paddle Inference predictor, and with options.solo_threads above cpu_threads a second copy
    of the model on solo_threads math threads, for `run(..., solo=True)`. Paddle applies a
    predictor's thread count at each run, so the two take turns in one thread. Under load,
    one-thread predictors side by side (one per core) run more images/s than one team over all
    cores: the team waits at every layer for its slowest thread, and any other work on a core makes
    that thread slow. A lone image has no neighbour to run beside and gets all the cores."""

    def __init__(self, native: Any, options: BackendOptions, solo: PaddleBackend | None = None,
                 kind: str = "paddle") -> None:
        self._native = native
        self.options = options
        self.kind = kind  # paddle or paddle-bf16 (BACKENDS)
        self.input_name: str = native.get_input_names()[0]
        self._input = native.get_input_handle(self.input_name)
        self._output = native.get_output_handle(native.get_output_names()[0])
        self._last_run_ms = 0.0
        self._solo = solo

    @property
    def spins_between_runs(self) -> bool:
        return self.options.device == "cpu" and self.options.omp_blocktime_ms != 0  # see cpu.spin_ms

    @classmethod
    def load(cls, spec: BackendSpec) -> PaddleBackend:
        import_paddle()
        options = spec.options
        bf16 = BACKENDS[spec.kind].precision == "bf16"  # create_predictor applies it on CPU only
        solo = None
        if options.has_solo:
            solo = cls(create_predictor(spec.model_file, spec.params_file, options, options.solo_threads, bf16),
                       options, kind=spec.kind)
        return cls(create_predictor(spec.model_file, spec.params_file, options, options.cpu_threads, bf16),
                   options, solo, spec.kind)

    @property
    def has_solo(self) -> bool:
        return self._solo is not None

    def clone(self) -> PaddleBackend:
        """A second predictor sharing this one's weights (Paddle's clone), for another thread."""
        return PaddleBackend(self._native.clone(), self.options, self._solo.clone() if self._solo else None, self.kind)

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
        output: np.ndarray = self._output.copy_to_cpu()
        return output

    def describe(self) -> dict[str, Any]:
        cpu = self.options.device == "cpu"
        precision = BACKENDS[self.kind].precision
        return {
            "backend": "paddle-inference" if self.kind == "paddle" else self.kind,
            "device": self.options.device,
            "cpu_threads": self.options.cpu_threads if cpu else None,
            "onednn": self.options.onednn if cpu else False,
            "precision": precision,
            "omp_blocktime_ms": self.options.omp_blocktime_ms if cpu else None,
        }

    def close(self) -> None:
        """Nothing to do: Paddle frees a predictor with its last reference, and a run still in
        another thread keeps its own."""
