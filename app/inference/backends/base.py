"""The backend seam: what every model runtime offers the rest of the service.

A backend runs batches of model inputs, float32 (N, C, H, W), and returns the model's outputs,
float32 (N, K). Where it runs (in the server process or in predictor child processes) is a pool's
choice, not the backend's (see app/inference/pools/); what goes in before it (decoding,
preprocessing) and after it (probabilities, labels) is the handler's (app/inference/handler.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

Device = Literal["cpu", "gpu"]


class DeviceUnavailableError(RuntimeError):
    """APP_DEVICE=gpu was asked for, but this build or this machine cannot provide it."""


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs its model: device, threads, and the CPU runtime's knobs."""

    device: Device = "cpu"
    cpu_threads: int = 1
    onednn: bool = True
    gpu_id: int = 0
    gpu_memory_mb: int = 512  # initial pool; the runtime grows it on demand
    # How long OpenMP's math threads spin after a run before they sleep: milliseconds, "auto" (twice
    # the previous run, 1-200 ms), or None for the runtime's own (see app.inference.cpu.spin_ms).
    omp_blocktime_ms: int | Literal["auto"] | None = None
    # Math threads for a batch that runs alone (nothing else running or queued for its model): above
    # cpu_threads, each predictor holds a second copy of the model on this many threads.
    solo_threads: int = 0

    @property
    def has_solo(self) -> bool:
        """Whether predictors hold the all-cores copy (CPU only, and only with more threads than cpu_threads)."""
        return self.device == "cpu" and self.solo_threads > self.cpu_threads

    def threads_for(self, solo: bool) -> int:
        """Math threads of the copy that `Backend.run(..., solo)` uses."""
        return self.solo_threads if solo and self.has_solo else self.cpu_threads


@dataclass(frozen=True)
class BackendSpec:
    """Everything a backend is built from, as plain values: a predictor's child process receives it
    (pickled) and builds the very same backend. `kind` names an entry of BACKENDS."""

    kind: str
    model_file: Path
    params_file: Path
    options: BackendOptions
    artifacts: dict[str, Path] = field(default_factory=dict)  # format (e.g. "onnx") -> file, from the manifest

    def artifact(self, kind: str) -> Path:
        """The model's file in another format; a ValueError naming the way to make it when there is none."""
        path = self.artifacts.get(kind)
        if path is None:
            raise ValueError(f"the model has no {kind} file: python -m training convert adds one")
        return path


class Backend(Protocol):
    """One loaded copy of a model. Not thread-safe: one caller at a time (its pool ensures it)."""

    input_name: str

    @property
    def spins_between_runs(self) -> bool:
        """Whether the runtime's math threads keep spinning on the cores for a while after a run
        (OpenMP's wait policy), instead of sleeping at once."""
        ...

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """float32 (N, C, H, W) -> float32 (N, K). `solo`: on the all-cores copy, where it has one."""
        ...

    def clone(self) -> Backend:
        """A second copy for another thread, sharing the weights where the runtime can."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the model information reports about the runtime (its name, device, knobs)."""
        ...

    def close(self) -> None:
        """Free what the runtime holds."""
        ...


def run_in_batches(backend: Backend, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Many model inputs through one backend, `batch_size` at a time (bounded memory)."""
    return np.concatenate([backend.run(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
