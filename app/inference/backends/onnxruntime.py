"""ONNX Runtime on CPU, from the ONNX file `python -m training convert` writes beside the Paddle
files (the manifest's `runtimes.onnx`), or from its int8 copy (`runtimes.onnx-int8`, quantised
after training: `onnxruntime-int8`, which `APP_BACKEND=auto` takes only where the accuracy gate
passes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.inference.backends import BACKENDS, runtime_file
from app.inference.backends.base import BackendOptions, BackendSpec

ort.disable_telemetry_events()  # ONNX Runtime's usage events: a server reports nothing it was not asked to


def create_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Its threads sleep between runs instead of spinning: a spinning pool takes the core the HTTP
    # server needs between a small model's batches (as OpenMP's would; see app.inference.cpu).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend:
    """One session on options.cpu_threads, and with solo_threads above that a second on solo_threads
    for a batch that runs alone (as PaddleBackend does)."""

    spins_between_runs = False  # allow_spinning off (create_session)

    def __init__(self, kind: str, path: Path, options: BackendOptions) -> None:
        self.kind = kind  # an entry of BACKENDS, which says the file it reads and its precision
        self.precision = BACKENDS[kind].precision
        self._path = path
        self.options = options
        self._session = create_session(path, options.cpu_threads)
        self._solo = create_session(path, options.solo_threads) if options.has_solo else None
        self.input_name: str = self._session.get_inputs()[0].name

    @classmethod
    def load(cls, spec: BackendSpec) -> OnnxRuntimeBackend:
        return cls(spec.kind, runtime_file(spec), spec.options)

    def clone(self) -> OnnxRuntimeBackend:
        return type(self)(self.kind, self._path, self.options)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        session = self._solo if solo and self._solo is not None else self._session
        outputs = session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs[0], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "backend_version": ort.__version__, "device": "cpu",
                "cpu_threads": self.options.cpu_threads, "precision": self.precision}

    def close(self) -> None:
        """Sessions are freed with their last reference."""
